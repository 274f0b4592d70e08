/*
 * test_log.c - unit tests for logging (src/log.c): level names parse and
 * print back, unknown names are rejected, the process-wide level is kept,
 * and the per-call-site rate limiter lets a burst through, drops the rest of
 * the window, and reports how many it dropped on the first line after the
 * window closes.
 *
 * The limiter reads the monotonic clock. The tests that need a window to
 * stay open use a long interval; the one that needs it to close uses a
 * 20 ms window and sleeps 60 ms, and re-runs its burst if the machine
 * stalled for a whole window in the middle of it, so a loaded machine
 * cannot make it fail.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "notifd/log.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void test_level_names_round_trip(void **state)
{
    (void)state;
    static const log_level_t levels[] = {LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR};
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(log_level_name(levels[i]), names[i]);
        assert_int_equal(log_level_parse(names[i]), levels[i]);
        assert_int_equal(log_level_parse(log_level_name(levels[i])), levels[i]);
    }
}

static void test_unknown_level_names_are_rejected(void **state)
{
    (void)state;
    assert_int_equal(log_level_parse(""), -1);
    assert_int_equal(log_level_parse("INFO"), -1);
    assert_int_equal(log_level_parse("warning"), -1);
    assert_int_equal(log_level_parse("info "), -1);
    assert_int_equal(log_level_parse("trace"), -1);
}

static void test_out_of_range_level_has_placeholder_name(void **state)
{
    (void)state;
    assert_string_equal(log_level_name((log_level_t)4), "?");
    assert_string_equal(log_level_name((log_level_t)-1), "?");
}

static void test_set_level_is_read_back(void **state)
{
    (void)state;
    log_level_t before = log_get_level();
    log_set_level(LOG_ERROR);
    assert_int_equal(log_get_level(), LOG_ERROR);
    log_set_level(LOG_DEBUG);
    assert_int_equal(log_get_level(), LOG_DEBUG);
    log_set_level(before);
}

static void test_ratelimit_allows_burst_then_suppresses(void **state)
{
    (void)state;
    log_ratelimit_t rl = LOG_RATELIMIT_INIT(3600 * 1000, 3);
    assert_int_equal(log_ratelimit_allow(&rl), 0);
    assert_int_equal(log_ratelimit_allow(&rl), 0);
    assert_int_equal(log_ratelimit_allow(&rl), 0);
    assert_int_equal(log_ratelimit_allow(&rl), -1);
    assert_int_equal(log_ratelimit_allow(&rl), -1);
    assert_int_equal(rl.suppressed, 2);
}

static void test_ratelimit_burst_of_one_allows_only_the_first(void **state)
{
    (void)state;
    log_ratelimit_t rl = LOG_RATELIMIT_INIT(3600 * 1000, 1);
    assert_int_equal(log_ratelimit_allow(&rl), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(log_ratelimit_allow(&rl), -1);
    assert_int_equal(rl.suppressed, 10);
}

static void test_ratelimit_reports_suppressed_count_after_window(void **state)
{
    (void)state;
    const uint32_t interval = 20;
    log_ratelimit_t rl;
    int r[5];
    int attempts = 0;
    for (;;) {
        rl = (log_ratelimit_t)LOG_RATELIMIT_INIT(interval, 2);
        uint64_t t0 = now_ms();
        for (int i = 0; i < 5; i++)
            r[i] = log_ratelimit_allow(&rl);
        /* All five calls fell in one window unless the machine stalled. */
        if (now_ms() - t0 < interval)
            break;
        assert_true(++attempts < 50);
    }
    assert_int_equal(r[0], 0);
    assert_int_equal(r[1], 0);
    assert_int_equal(r[2], -1);
    assert_int_equal(r[3], -1);
    assert_int_equal(r[4], -1);

    sleep_ms(3 * (long)interval);
    assert_int_equal(log_ratelimit_allow(&rl), 3);
}

static void test_ratelimit_reports_suppressed_count_only_once(void **state)
{
    (void)state;
    const uint32_t interval = 20;
    log_ratelimit_t rl = LOG_RATELIMIT_INIT(interval, 1);
    assert_int_equal(log_ratelimit_allow(&rl), 0);
    int r = log_ratelimit_allow(&rl);
    sleep_ms(3 * (long)interval);
    int expected = r == -1 ? 1 : 0; /* 0 if a stall already closed the window */
    assert_int_equal(log_ratelimit_allow(&rl), expected);
    assert_int_equal(rl.suppressed, 0);
    sleep_ms(3 * (long)interval);
    /* Nothing was dropped in the window that just closed. */
    assert_int_equal(log_ratelimit_allow(&rl), 0);
}

static void test_ratelimit_allows_lines_again_after_window(void **state)
{
    (void)state;
    const uint32_t interval = 20;
    log_ratelimit_t rl = LOG_RATELIMIT_INIT(interval, 1);
    assert_int_equal(log_ratelimit_allow(&rl), 0);
    sleep_ms(3 * (long)interval);
    assert_int_equal(log_ratelimit_allow(&rl), 0);
    assert_int_equal(rl.emitted, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_names_round_trip),
        cmocka_unit_test(test_unknown_level_names_are_rejected),
        cmocka_unit_test(test_out_of_range_level_has_placeholder_name),
        cmocka_unit_test(test_set_level_is_read_back),
        cmocka_unit_test(test_ratelimit_allows_burst_then_suppresses),
        cmocka_unit_test(test_ratelimit_burst_of_one_allows_only_the_first),
        cmocka_unit_test(test_ratelimit_reports_suppressed_count_after_window),
        cmocka_unit_test(test_ratelimit_reports_suppressed_count_only_once),
        cmocka_unit_test(test_ratelimit_allows_lines_again_after_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
