/* Unit tests: which feedback write errors are outages, and queued ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/core/feedback_retry.h"

static bool outage(const char *s) { return feedback_error_is_outage(s, strlen(s)); }

static void test_outages_are_kept(void **state)
{
    (void)state;
    assert_true(outage("OOM command not allowed when used memory > 'maxmemory'."));
    assert_true(outage("MISCONF Redis is configured to save RDB snapshots, but ..."));
    assert_true(outage("LOADING Redis is loading the dataset in memory"));
    assert_true(outage("BUSY Redis is busy running a script."));
    assert_true(outage("READONLY You can't write against a read only replica."));
    assert_true(outage("NOAUTH Authentication required."));
    assert_true(outage("OOM"));
    assert_true(feedback_error_is_outage(NULL, 0));
}

static void test_data_errors_are_not(void **state)
{
    (void)state;
    assert_false(outage("ERR Error running script (call to f_x): @user_script:3: bad"));
    assert_false(outage("WRONGTYPE Operation against a key holding the wrong kind of value"));
    assert_false(outage("OOMX not a code we know"));
    assert_false(outage("ERR OOM in the middle is not the code"));
    assert_false(outage(""));
}

static void test_queued_ids_are_unique_and_bounded(void **state)
{
    (void)state;
    char a[FEEDBACK_QUEUED_ID_MAX], b[FEEDBACK_QUEUED_ID_MAX];
    feedback_queued_event_id(a, sizeof a, 0xabcdefULL, 1);
    feedback_queued_event_id(b, sizeof b, 0xabcdefULL, 2);
    assert_string_equal(a, "q:0000000000abcdef:1");
    assert_string_not_equal(a, b);
    feedback_queued_event_id(a, sizeof a, UINT64_MAX, UINT64_MAX);
    assert_string_equal(a, "q:ffffffffffffffff:18446744073709551615");
    assert_true(strlen(a) < FEEDBACK_QUEUED_ID_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outages_are_kept),
        cmocka_unit_test(test_data_errors_are_not),
        cmocka_unit_test(test_queued_ids_are_unique_and_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
