/*
 * test_framing.c - unit tests for the request line framer (src/net/framing.c):
 * complete and partial lines, CRLF, empty lines, the max_line boundary, the
 * over-long line that is reported once and skipped up to its newline (fed in
 * small pieces and all at once), bounded memory while a huge line streams
 * in, shrinking back afterwards, and framer_buffered accounting.
 *
 * Bytes go in through framer_feed, which takes only what fits; the helper
 * feed_all() drains with framer_next whenever it takes less, exactly as the
 * server's read loop does, and records every result in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/net/framing.h"

#define MAX_EVENTS 64

/* What framer_next produced: a line (copied) or a too-long report. */
typedef struct event {
    framer_result_t kind;
    char line[512];
    size_t len;
} event_t;

typedef struct events {
    event_t items[MAX_EVENTS];
    int count;
} events_t;

/* Takes every complete line out of the framer and records it. */
static void drain(framer_t *f, events_t *ev)
{
    for (;;) {
        const char *line = NULL;
        size_t len = 0;
        framer_result_t r = framer_next(f, &line, &len);
        if (r == FRAMER_NEED_MORE)
            return;
        assert_true(ev->count < MAX_EVENTS);
        event_t *e = &ev->items[ev->count++];
        e->kind = r;
        e->len = 0;
        e->line[0] = '\0';
        if (r == FRAMER_LINE) {
            /* Long lines keep their length; only a prefix is copied. */
            size_t copy = len < sizeof e->line ? len : sizeof e->line - 1;
            memcpy(e->line, line, copy);
            e->line[copy] = '\0';
            e->len = len;
        }
    }
}

/* Feeds all of data, draining whenever framer_feed takes less than offered. */
static void feed_all(framer_t *f, const char *data, size_t n, events_t *ev)
{
    size_t done = 0;
    int stalls = 0;
    while (done < n) {
        size_t took = framer_feed(f, data + done, n - done);
        done += took;
        drain(f, ev);
        /* Once drained, the framer must always take more. */
        stalls = took == 0 ? stalls + 1 : 0;
        assert_true(stalls < 2);
    }
    drain(f, ev);
}

static void feed_str(framer_t *f, const char *s, events_t *ev) { feed_all(f, s, strlen(s), ev); }

static void assert_line(const events_t *ev, int i, const char *expected)
{
    assert_true(i < ev->count);
    assert_int_equal(ev->items[i].kind, FRAMER_LINE);
    assert_int_equal(ev->items[i].len, strlen(expected));
    assert_string_equal(ev->items[i].line, expected);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_complete_line_is_returned_without_newline(void **state)
{
    (void)state;
    framer_t f;
    framer_init(&f, 1024);
    events_t ev = {0};
    feed_str(&f, "{\"op\":\"health\"}\n", &ev);
    assert_int_equal(ev.count, 1);
    assert_line(&ev, 0, "{\"op\":\"health\"}");
    framer_free(&f);
}

static void test_line_without_newline_is_not_returned(void **state)
{
    (void)state;
    framer_t f;
    framer_init(&f, 1024);
    events_t ev = {0};
    feed_str(&f, "{\"op\":\"health\"}", &ev);
    assert_int_equal(ev.count, 0);
    assert_int_equal(framer_buffered(&f), 15);
    framer_free(&f);
}

static void test_several_lines_in_one_read_come_out_in_order(void **state)
{
    (void)state;
    framer_t f;
    framer_init(&f, 1024);
    events_t ev = {0};
    feed_str(&f, "one\ntwo\nthree\n", &ev);
    assert_int_equal(ev.count, 3);
    assert_line(&ev, 0, "one");
    assert_line(&ev, 1, "two");
    assert_line(&ev, 2, "three");
    framer_free(&f);
}

static void test_line_split_at_every_byte_position(void **state)
{
    (void)state;
    const char *input = "{\"id\":1}\r\n{\"id\":22}\n";
    size_t n = strlen(input);
    for (size_t cut = 0; cut <= n; cut++) {
        framer_t f;
        framer_init(&f, 1024);
        events_t ev = {0};
        feed_all(&f, input, cut, &ev);
        feed_all(&f, input + cut, n - cut, &ev);
        assert_int_equal(ev.count, 2);
        assert_line(&ev, 0, "{\"id\":1}");
        assert_line(&ev, 1, "{\"id\":22}");
        assert_int_equal(framer_buffered(&f), 0);
        framer_free(&f);
    }
}

static void test_line_fed_one_byte_at_a_time(void **state)
{
    (void)state;
    const char *input = "alpha\nbeta\r\n";
    framer_t f;
    framer_init(&f, 1024);
    events_t ev = {0};
    for (size_t i = 0; input[i] != '\0'; i++)
        feed_all(&f, input + i, 1, &ev);
    assert_int_equal(ev.count, 2);
    assert_line(&ev, 0, "alpha");
    assert_line(&ev, 1, "beta");
    framer_free(&f);
}

static void test_crlf_is_stripped(void **state)
{
    (void)state;
    framer_t f;
    framer_init(&f, 1024);
    events_t ev = {0};
    feed_str(&f, "abc\r\n", &ev);
    assert_int_equal(ev.count, 1);
    assert_line(&ev, 0, "abc");
    framer_free(&f);
}

static void test_lone_cr_inside_a_line_is_kept(void **state)
{
    (void)state;
    framer_t f;
    framer_init(&f, 1024);
    events_t ev = {0};
    feed_str(&f, "a\rb\n", &ev);
    assert_int_equal(ev.count, 1);
    assert_line(&ev, 0, "a\rb");
    framer_free(&f);
}

static void test_empty_line_has_length_zero(void **state)
{
    (void)state;
    framer_t f;
    framer_init(&f, 1024);
    events_t ev = {0};
    feed_str(&f, "\n\r\nx\n", &ev);
    assert_int_equal(ev.count, 3);
    assert_line(&ev, 0, "");
    assert_line(&ev, 1, "");
    assert_line(&ev, 2, "x");
    framer_free(&f);
}

static void test_line_of_exactly_max_line_bytes_is_accepted(void **state)
{
    (void)state;
    const size_t max = 300;
    char *body = repeat('a', max);
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    feed_all(&f, body, max, &ev);
    feed_str(&f, "\n", &ev);
    assert_int_equal(ev.count, 1);
    assert_int_equal(ev.items[0].kind, FRAMER_LINE);
    assert_int_equal(ev.items[0].len, max);
    framer_free(&f);
    free(body);
}

static void test_line_of_max_line_bytes_with_crlf_is_accepted(void **state)
{
    (void)state;
    const size_t max = 300;
    char *body = repeat('a', max);
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    feed_all(&f, body, max, &ev);
    feed_str(&f, "\r\n", &ev);
    assert_int_equal(ev.count, 1);
    assert_int_equal(ev.items[0].kind, FRAMER_LINE);
    assert_int_equal(ev.items[0].len, max);
    framer_free(&f);
    free(body);
}

static void test_line_of_max_line_bytes_with_cr_and_lf_in_separate_reads(void **state)
{
    (void)state;
    /* Until the '\n' arrives, a trailing '\r' may still be the terminator,
     * so max_line + 1 pending bytes are not yet too long. */
    const size_t max = 300;
    char *body = repeat('a', max + 1);
    body[max] = '\r';
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    feed_all(&f, body, max + 1, &ev);
    assert_int_equal(ev.count, 0);
    feed_str(&f, "\n", &ev);
    assert_int_equal(ev.count, 1);
    assert_int_equal(ev.items[0].kind, FRAMER_LINE);
    assert_int_equal(ev.items[0].len, max);
    framer_free(&f);
    free(body);
}

static void test_line_of_max_line_plus_one_bytes_is_too_long(void **state)
{
    (void)state;
    const size_t max = 300;
    char *body = repeat('a', max + 1);
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    feed_all(&f, body, max + 1, &ev);
    feed_str(&f, "\nok\n", &ev);
    assert_int_equal(ev.count, 2);
    assert_int_equal(ev.items[0].kind, FRAMER_TOO_LONG);
    assert_line(&ev, 1, "ok");
    framer_free(&f);
    free(body);
}

static void test_overlong_line_at_once_is_reported_once_and_next_line_intact(void **state)
{
    (void)state;
    const size_t max = 300;
    const size_t big = 10000; /* larger than the initial buffer too */
    char *data = malloc(big + 64);
    assert_non_null(data);
    memset(data, 'x', big);
    strcpy(data + big, "\n{\"id\":\"after\"}\n");
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    feed_all(&f, data, strlen(data), &ev);
    assert_int_equal(ev.count, 2);
    assert_int_equal(ev.items[0].kind, FRAMER_TOO_LONG);
    assert_line(&ev, 1, "{\"id\":\"after\"}");
    framer_free(&f);
    free(data);
}

static void test_overlong_line_in_buffer_with_newline_is_reported_once(void **state)
{
    (void)state;
    /* Shorter than the buffer: the whole line and its newline arrive in one
     * framer_feed, so the length check happens at the newline. */
    const size_t max = 300;
    char *body = repeat('y', 1000);
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    char data[1100];
    snprintf(data, sizeof data, "%s\nnext\n", body);
    size_t took = framer_feed(&f, data, strlen(data));
    assert_int_equal(took, strlen(data));
    drain(&f, &ev);
    assert_int_equal(ev.count, 2);
    assert_int_equal(ev.items[0].kind, FRAMER_TOO_LONG);
    assert_line(&ev, 1, "next");
    framer_free(&f);
    free(body);
}

static void test_overlong_line_in_small_pieces_is_reported_once(void **state)
{
    (void)state;
    const size_t max = 300;
    char *body = repeat('z', 5000);
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    feed_str(&f, "before\n", &ev);
    for (size_t off = 0; off < 5000; off += 7) {
        size_t k = 5000 - off < 7 ? 5000 - off : 7;
        feed_all(&f, body + off, k, &ev);
    }
    feed_str(&f, "\r\nafter\n", &ev);
    assert_int_equal(ev.count, 3);
    assert_line(&ev, 0, "before");
    assert_int_equal(ev.items[1].kind, FRAMER_TOO_LONG);
    assert_line(&ev, 2, "after");
    framer_free(&f);
    free(body);
}

static void test_newline_of_overlong_line_in_its_own_read(void **state)
{
    (void)state;
    /* The discard state must survive an empty buffer: the newline that ends
     * the over-long line arrives alone and must not produce an empty line. */
    const size_t max = 300;
    char *body = repeat('w', 2000);
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    feed_all(&f, body, 2000, &ev);
    assert_int_equal(ev.count, 1);
    assert_int_equal(ev.items[0].kind, FRAMER_TOO_LONG);
    assert_int_equal(framer_buffered(&f), 0);
    feed_str(&f, "\n", &ev);
    assert_int_equal(ev.count, 1);
    feed_str(&f, "good\n", &ev);
    assert_int_equal(ev.count, 2);
    assert_line(&ev, 1, "good");
    framer_free(&f);
    free(body);
}

static void test_two_overlong_lines_are_reported_separately(void **state)
{
    (void)state;
    const size_t max = 300;
    char *body = repeat('q', 3000);
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    feed_all(&f, body, 3000, &ev);
    feed_str(&f, "\n", &ev);
    feed_all(&f, body, 3000, &ev);
    feed_str(&f, "\nend\n", &ev);
    assert_int_equal(ev.count, 3);
    assert_int_equal(ev.items[0].kind, FRAMER_TOO_LONG);
    assert_int_equal(ev.items[1].kind, FRAMER_TOO_LONG);
    assert_line(&ev, 2, "end");
    framer_free(&f);
    free(body);
}

static void test_memory_stays_bounded_while_streaming_huge_line(void **state)
{
    (void)state;
    const size_t max = 65536;
    const size_t total = 10u * 1024 * 1024;
    const size_t piece = 4096;
    char *chunk = repeat('m', piece);
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    size_t max_cap = 0;
    for (size_t sent = 0; sent < total; sent += piece) {
        feed_all(&f, chunk, piece, &ev);
        if (f.cap > max_cap)
            max_cap = f.cap;
        assert_true(framer_buffered(&f) <= max + 1 + piece);
    }
    assert_int_equal(ev.count, 1);
    assert_int_equal(ev.items[0].kind, FRAMER_TOO_LONG);
    assert_true(max_cap > 0);
    assert_true(max_cap <= max + 32 * 1024);
    feed_str(&f, "\nafter\n", &ev);
    assert_int_equal(ev.count, 2);
    assert_line(&ev, 1, "after");
    framer_free(&f);
    free(chunk);
}

static void test_buffer_shrinks_back_after_a_big_line(void **state)
{
    (void)state;
    const size_t max = 1024 * 1024;
    const size_t big = 500 * 1024;
    char *data = repeat('b', big + 1);
    data[big] = '\n';
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    feed_all(&f, data, big + 1, &ev);
    assert_int_equal(ev.count, 1);
    assert_int_equal(ev.items[0].kind, FRAMER_LINE);
    assert_int_equal(ev.items[0].len, big);
    size_t cap_after_big = f.cap;
    assert_true(cap_after_big >= big);
    feed_str(&f, "small\n", &ev);
    assert_int_equal(ev.count, 2);
    assert_line(&ev, 1, "small");
    assert_true(f.cap <= 64 * 1024);
    framer_free(&f);
    free(data);
}

static void test_buffered_counts_unreturned_bytes(void **state)
{
    (void)state;
    framer_t f;
    framer_init(&f, 1024);
    assert_int_equal(framer_buffered(&f), 0);
    assert_int_equal(framer_feed(&f, "abc\nde", 6), 6);
    assert_int_equal(framer_buffered(&f), 6);
    const char *line;
    size_t len;
    assert_int_equal(framer_next(&f, &line, &len), FRAMER_LINE);
    assert_int_equal(framer_buffered(&f), 2);
    assert_int_equal(framer_next(&f, &line, &len), FRAMER_NEED_MORE);
    assert_int_equal(framer_buffered(&f), 2);
    assert_int_equal(framer_feed(&f, "f\n", 2), 2);
    assert_int_equal(framer_buffered(&f), 4);
    assert_int_equal(framer_next(&f, &line, &len), FRAMER_LINE);
    assert_int_equal(len, 3);
    assert_memory_equal(line, "def", 3);
    assert_int_equal(framer_buffered(&f), 0);
    framer_free(&f);
}

static void test_buffered_is_zero_while_discarding(void **state)
{
    (void)state;
    const size_t max = 300;
    char *body = repeat('d', 1000);
    framer_t f;
    framer_init(&f, max);
    events_t ev = {0};
    feed_all(&f, body, 1000, &ev);
    assert_int_equal(ev.items[0].kind, FRAMER_TOO_LONG);
    assert_int_equal(framer_buffered(&f), 0);
    feed_all(&f, body, 500, &ev);
    assert_int_equal(framer_buffered(&f), 0);
    assert_int_equal(ev.count, 1);
    framer_free(&f);
    free(body);
}

static void test_write_space_and_commit_read_in_place(void **state)
{
    (void)state;
    framer_t f;
    framer_init(&f, 1024);
    size_t avail = 0;
    char *space = framer_write_space(&f, &avail);
    assert_non_null(space);
    assert_true(avail >= 8);
    memcpy(space, "in\nplace", 8);
    framer_commit(&f, 8);
    const char *line;
    size_t len;
    assert_int_equal(framer_next(&f, &line, &len), FRAMER_LINE);
    assert_int_equal(len, 2);
    assert_memory_equal(line, "in", 2);
    assert_int_equal(framer_buffered(&f), 5);
    framer_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_line_is_returned_without_newline),
        cmocka_unit_test(test_line_without_newline_is_not_returned),
        cmocka_unit_test(test_several_lines_in_one_read_come_out_in_order),
        cmocka_unit_test(test_line_split_at_every_byte_position),
        cmocka_unit_test(test_line_fed_one_byte_at_a_time),
        cmocka_unit_test(test_crlf_is_stripped),
        cmocka_unit_test(test_lone_cr_inside_a_line_is_kept),
        cmocka_unit_test(test_empty_line_has_length_zero),
        cmocka_unit_test(test_line_of_exactly_max_line_bytes_is_accepted),
        cmocka_unit_test(test_line_of_max_line_bytes_with_crlf_is_accepted),
        cmocka_unit_test(test_line_of_max_line_bytes_with_cr_and_lf_in_separate_reads),
        cmocka_unit_test(test_line_of_max_line_plus_one_bytes_is_too_long),
        cmocka_unit_test(test_overlong_line_at_once_is_reported_once_and_next_line_intact),
        cmocka_unit_test(test_overlong_line_in_buffer_with_newline_is_reported_once),
        cmocka_unit_test(test_overlong_line_in_small_pieces_is_reported_once),
        cmocka_unit_test(test_newline_of_overlong_line_in_its_own_read),
        cmocka_unit_test(test_two_overlong_lines_are_reported_separately),
        cmocka_unit_test(test_memory_stays_bounded_while_streaming_huge_line),
        cmocka_unit_test(test_buffer_shrinks_back_after_a_big_line),
        cmocka_unit_test(test_buffered_counts_unreturned_bytes),
        cmocka_unit_test(test_buffered_is_zero_while_discarding),
        cmocka_unit_test(test_write_space_and_commit_read_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
