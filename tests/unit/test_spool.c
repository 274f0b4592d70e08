/*
 * test_spool.c - unit tests for the event sink's on-disk buffer
 * (src/events/spool.c): segment naming and parsing, replay order (numeric, across
 * reopen, whatever order the directory lists files in), rotation by size,
 * sealing of segments found at open, the size limit, all-or-nothing appends
 * when write(2) fails part-way (provoked with RLIMIT_FSIZE, which makes
 * write return EFBIG exactly like ENOSPC would stop it), the dead-letter
 * file, and replay's line checks: which lines are events (one JSON object
 * within a size bound) and how a segment splits into batches and runs of
 * bad lines, a torn last line included.
 *
 * Each test works in its own fresh temporary directory; nothing touches the
 * network.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "notifd/events/spool.h"

typedef struct fixture {
    char dir[256];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/notifd-spool-test-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    (void)rc;
    free(f);
    return 0;
}

static spool_t *open_spool(const char *dir, uint64_t segment_bytes)
{
    char why[256];
    spool_t *sp = spool_open(dir, segment_bytes, why, sizeof why);
    assert_non_null(sp);
    return sp;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static char *read_segment(spool_t *sp, uint64_t seq)
{
    char *buf;
    size_t len;
    assert_int_equal(spool_read(sp, seq, SIZE_MAX, &buf, &len), 0);
    assert_int_equal(strlen(buf), len);
    return buf;
}

static void test_segment_names_sort_like_their_numbers(void **state)
{
    (void)state;
    char a[SPOOL_SEGMENT_NAME_MAX], b[SPOOL_SEGMENT_NAME_MAX];
    spool_segment_name(a, sizeof a, 9);
    spool_segment_name(b, sizeof b, 10);
    assert_string_equal(a, "events-00000000000000000009.ndjson");
    assert_true(strcmp(a, b) < 0);
    spool_segment_name(a, sizeof a, UINT64_MAX);
    uint64_t seq = 0;
    assert_true(spool_parse_segment_name(a, &seq));
    assert_true(seq == UINT64_MAX);
}

static void test_parse_rejects_other_files(void **state)
{
    (void)state;
    uint64_t seq;
    assert_false(spool_parse_segment_name("dead-letter.ndjson", &seq));
    assert_false(spool_parse_segment_name("events-1.ndjson", &seq));
    assert_false(spool_parse_segment_name("events-0000000000000000000x.ndjson", &seq));
    assert_false(spool_parse_segment_name("events-00000000000000000001.ndjson.tmp", &seq));
    assert_false(spool_parse_segment_name("quarantine-events-00000000000000000001.ndjson", &seq));
    /* 20 digits that overflow 64 bits */
    assert_false(spool_parse_segment_name("events-99999999999999999999.ndjson", &seq));
    assert_true(spool_parse_segment_name("events-00000000000000000042.ndjson", &seq));
    assert_int_equal(seq, 42);
}

static void test_open_creates_missing_parent_directories(void **state)
{
    fixture_t *f = *state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/var/spool", f->dir);
    spool_t *sp = open_spool(dir, 1024);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(spool_segments(sp), 0);
    spool_close(sp);
}

static void test_existing_segments_replay_in_numeric_order_and_new_ones_follow(void **state)
{
    fixture_t *f = *state;
    /* Created out of order, with a gap, plus files that are not segments. */
    write_file(f->dir, "events-00000000000000000010.ndjson", "{\"n\":10}\n");
    write_file(f->dir, "events-00000000000000000002.ndjson", "{\"n\":2}\n");
    write_file(f->dir, "events-00000000000000000007.ndjson", "{\"n\":7}\n");
    write_file(f->dir, "dead-letter.ndjson", "{\"n\":0}\n");
    write_file(f->dir, "notes.txt", "hello\n");
    spool_t *sp = open_spool(f->dir, 1024);
    assert_int_equal(spool_segments(sp), 3);
    assert_int_equal(spool_bytes(sp), 3 * 8 + 1);
    assert_int_equal(spool_append(sp, "{\"n\":11}\n", 9, false, -1), 0);

    uint64_t expect[] = {2, 7, 10, 11};
    for (size_t i = 0; i < 4; i++) {
        uint64_t seq;
        assert_true(spool_oldest(sp, &seq));
        assert_int_equal(seq, expect[i]);
        char *buf = read_segment(sp, seq);
        char want[32];
        snprintf(want, sizeof want, "{\"n\":%llu}\n", (unsigned long long)expect[i]);
        assert_string_equal(buf, want);
        free(buf);
        assert_int_equal(spool_remove(sp, seq), 0);
    }
    uint64_t seq;
    assert_false(spool_oldest(sp, &seq));
    assert_int_equal(spool_bytes(sp), 0);
    spool_close(sp);
}

static void test_segments_found_at_open_are_never_appended_to(void **state)
{
    fixture_t *f = *state;
    /* A crash left a torn last line: appending after it would glue two
     * events into one invalid line. */
    write_file(f->dir, "events-00000000000000000003.ndjson", "{\"a\":1}\n{\"b\":");
    spool_t *sp = open_spool(f->dir, 1 << 20);
    assert_int_equal(spool_append(sp, "{\"c\":3}\n", 8, false, -1), 0);
    assert_int_equal(spool_segments(sp), 2);
    char *old = read_segment(sp, 3);
    assert_string_equal(old, "{\"a\":1}\n{\"b\":");
    free(old);
    char *fresh = read_segment(sp, 4);
    assert_string_equal(fresh, "{\"c\":3}\n");
    free(fresh);
    spool_close(sp);
}

static void test_append_rotates_once_a_segment_reaches_its_size(void **state)
{
    fixture_t *f = *state;
    spool_t *sp = open_spool(f->dir, 20);
    const char *batch = "{\"x\":1}\n{\"x\":2}\n"; /* 16 bytes */
    for (int i = 0; i < 4; i++)
        assert_int_equal(spool_append(sp, batch, 16, true, -1), 0);
    /* 16 < 20: the second batch goes in the same segment, then it is full. */
    assert_int_equal(spool_segments(sp), 2);
    assert_int_equal(spool_bytes(sp), 64);
    uint64_t seq;
    assert_true(spool_oldest(sp, &seq));
    char *buf = read_segment(sp, seq);
    assert_int_equal(strlen(buf), 32);
    free(buf);
    spool_close(sp);

    /* Reopened: same index, and new segments continue the numbering. */
    sp = open_spool(f->dir, 20);
    assert_int_equal(spool_segments(sp), 2);
    assert_int_equal(spool_bytes(sp), 64);
    assert_int_equal(spool_append(sp, batch, 16, false, -1), 0);
    assert_true(spool_oldest(sp, &seq));
    assert_int_equal(seq, 1);
    assert_int_equal(spool_remove(sp, 1), 0);
    assert_int_equal(spool_remove(sp, 2), 0);
    assert_true(spool_oldest(sp, &seq));
    assert_int_equal(seq, 3);
    spool_close(sp);
}

static void test_oldest_seals_the_active_segment(void **state)
{
    fixture_t *f = *state;
    spool_t *sp = open_spool(f->dir, 1 << 20);
    assert_int_equal(spool_append(sp, "{\"a\":1}\n", 8, false, -1), 0);
    uint64_t seq;
    assert_true(spool_oldest(sp, &seq));
    assert_int_equal(seq, 1);
    /* The replayer reads segment 1 whole; what comes next must not land in
     * it, or it would be removed unsent. */
    assert_int_equal(spool_append(sp, "{\"b\":2}\n", 8, false, -1), 0);
    assert_int_equal(spool_segments(sp), 2);
    char *buf = read_segment(sp, 1);
    assert_string_equal(buf, "{\"a\":1}\n");
    free(buf);
    spool_close(sp);
}

static void test_size_limit_refuses_without_writing(void **state)
{
    fixture_t *f = *state;
    spool_t *sp = open_spool(f->dir, 1 << 20);
    assert_int_equal(spool_append(sp, "0123456789\n", 11, false, 20), 0);
    assert_int_equal(spool_append(sp, "0123456789\n", 11, false, 20), SPOOL_FULL);
    assert_int_equal(spool_bytes(sp), 11);
    assert_int_equal(spool_append(sp, "012345678\n", 10, false, 21), 0); /* exactly at the limit */
    assert_int_equal(spool_bytes(sp), 21);
    /* 0 means no spooling at all. */
    assert_int_equal(spool_append(sp, "x\n", 2, false, 0), SPOOL_FULL);
    spool_close(sp);
}

/* Lowers the file size limit so that write(2) fails part-way with EFBIG,
 * as it would with ENOSPC on a full disk. */
static void with_file_size_limit(rlim_t limit, struct rlimit *saved)
{
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, saved), 0);
    struct rlimit rl = *saved;
    rl.rlim_cur = limit;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void test_failed_write_leaves_no_partial_line(void **state)
{
    fixture_t *f = *state;
    spool_t *sp = open_spool(f->dir, 1 << 20);
    assert_int_equal(spool_append(sp, "{\"a\":1}\n", 8, false, -1), 0);
    struct rlimit saved;
    with_file_size_limit(12, &saved);
    int rc = spool_append(sp, "{\"b\":2}\n", 8, true, -1);
    setrlimit(RLIMIT_FSIZE, &saved);
    assert_int_equal(rc, -EFBIG);
    assert_int_equal(spool_bytes(sp), 8);
    uint64_t seq;
    assert_true(spool_oldest(sp, &seq));
    char *buf = read_segment(sp, seq);
    assert_string_equal(buf, "{\"a\":1}\n"); /* truncated back: no "{\"b\"" */
    free(buf);
    /* The spool keeps working once there is room again. */
    assert_int_equal(spool_append(sp, "{\"c\":3}\n", 8, true, -1), 0);
    assert_int_equal(spool_bytes(sp), 16);
    spool_close(sp);
}

static void test_failed_first_write_leaves_no_empty_segment(void **state)
{
    fixture_t *f = *state;
    spool_t *sp = open_spool(f->dir, 1 << 20);
    struct rlimit saved;
    with_file_size_limit(4, &saved);
    int rc = spool_append(sp, "{\"b\":2}\n", 8, false, -1);
    setrlimit(RLIMIT_FSIZE, &saved);
    assert_int_equal(rc, -EFBIG);
    assert_int_equal(spool_segments(sp), 0);
    spool_close(sp);
    sp = open_spool(f->dir, 1 << 20); /* nothing on disk either */
    assert_int_equal(spool_segments(sp), 0);
    assert_int_equal(spool_append(sp, "{\"c\":3}\n", 8, false, -1), 0);
    uint64_t seq;
    assert_true(spool_oldest(sp, &seq));
    assert_int_equal(seq, 1);
    spool_close(sp);
}

static void test_dead_letters_append_and_do_not_count_as_spool(void **state)
{
    fixture_t *f = *state;
    spool_t *sp = open_spool(f->dir, 1 << 20);
    assert_int_equal(spool_dead_letter(sp, "{\"a\":1}\n", 8, true), 0);
    assert_int_equal(spool_dead_letter(sp, "{\"b\":2}\n", 8, false), 0);
    assert_int_equal(spool_bytes(sp), 0);
    assert_int_equal(spool_segments(sp), 0);
    spool_close(sp);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", f->dir, SPOOL_DEAD_LETTER_NAME);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char buf[64] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    assert_int_equal(n, 16);
    assert_string_equal(buf, "{\"a\":1}\n{\"b\":2}\n");
}

static void test_quarantine_moves_a_segment_aside(void **state)
{
    fixture_t *f = *state;
    write_file(f->dir, "events-00000000000000000001.ndjson", "{}\n");
    spool_t *sp = open_spool(f->dir, 1 << 20);
    assert_int_equal(spool_quarantine(sp, 1), 0);
    assert_int_equal(spool_segments(sp), 0);
    spool_close(sp);
    char path[512];
    snprintf(path, sizeof path, "%s/quarantine-events-00000000000000000001.ndjson", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    sp = open_spool(f->dir, 1 << 20);
    assert_int_equal(spool_segments(sp), 0);
    spool_close(sp);
}

static void test_read_refuses_a_segment_over_the_bound_without_reading_it(void **state)
{
    fixture_t *f = *state;
    spool_t *sp = open_spool(f->dir, 1 << 20);
    assert_int_equal(spool_append(sp, "{\"a\":1}\n{}\n", 11, false, -1), 0);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(spool_read(sp, 1, 10, &buf, &len), -EFBIG);
    assert_null(buf);
    assert_int_equal(spool_read(sp, 1, 11, &buf, &len), 0);
    assert_int_equal(len, 11);
    free(buf);
    spool_close(sp);
}

/* Thousands of pieces (more than one writev(2) takes) land whole and in
 * order; a write that fails part-way through them leaves nothing. */
static void test_appendv_writes_many_pieces_in_order_or_nothing(void **state)
{
    fixture_t *f = *state;
    spool_t *sp = open_spool(f->dir, 1 << 20);
    enum { N = 3000 };
    static char lines[N][16];
    struct iovec iov[2 * N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        int n = snprintf(lines[i], sizeof lines[i], "{\"i\":%d}", i);
        iov[2 * i] = (struct iovec){lines[i], (size_t)n};
        iov[2 * i + 1] = (struct iovec){"\n", 1};
        total += (size_t)n + 1;
    }
    assert_int_equal(spool_appendv(sp, iov, 2 * N, false, -1), 0);
    assert_int_equal(spool_bytes(sp), total);
    uint64_t seq;
    assert_true(spool_oldest(sp, &seq));
    char *buf = read_segment(sp, seq);
    const char *p = buf;
    for (int i = 0; i < N; i++) {
        size_t n = strlen(lines[i]);
        assert_memory_equal(p, lines[i], n);
        assert_int_equal(p[n], '\n');
        p += n + 1;
    }
    free(buf);

    /* Again into a fresh segment, with room for about half of it. */
    for (int i = 0; i < N; i++) {
        iov[2 * i] = (struct iovec){lines[i], strlen(lines[i])};
        iov[2 * i + 1] = (struct iovec){"\n", 1};
    }
    struct rlimit saved;
    with_file_size_limit(total / 2, &saved);
    int rc = spool_appendv(sp, iov, 2 * N, true, -1);
    setrlimit(RLIMIT_FSIZE, &saved);
    assert_int_equal(rc, -EFBIG);
    assert_int_equal(spool_bytes(sp), total);
    spool_close(sp);
    /* On disk too: the first segment, and no trace of the failed one. */
    sp = open_spool(f->dir, 1 << 20);
    assert_int_equal(spool_segments(sp), 1);
    assert_int_equal(spool_bytes(sp), total);
    spool_close(sp);
}

static void test_a_spool_line_must_be_one_json_object(void **state)
{
    (void)state;
    static const char *const good[] = {"{}", "{\"type\":\"decision\",\"n\":[1,2]}", " {} \r"};
    static const char *const bad[] = {
        "", "   ", "[]", "42", "\"text\"", "null", "{", "{\"a\":1", "{} {}", "{}x",
        "{\"a\":\"\xff\xfe\"}", /* invalid UTF-8 */
        "garbage",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(spool_line_is_event(good[i], strlen(good[i]), 1024));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(spool_line_is_event(bad[i], strlen(bad[i]), 1024));
    /* A NUL byte inside the line is not the end of it. */
    assert_false(spool_line_is_event("{}\0{}", 5, 1024));
    /* The size bound counts the line without its newline. */
    assert_true(spool_line_is_event("{\"a\":1}", 7, 7));
    assert_false(spool_line_is_event("{\"a\":1}", 7, 6));
}

static void test_a_spool_line_nested_too_deep_is_not_an_event(void **state)
{
    (void)state;
    enum { DEPTH = 100000 };
    char *line = malloc(2 * DEPTH + 16);
    size_t n = 0;
    line[n++] = '{';
    line[n++] = '"';
    line[n++] = 'a';
    line[n++] = '"';
    line[n++] = ':';
    for (int i = 0; i < DEPTH; i++)
        line[n++] = '[';
    for (int i = 0; i < DEPTH; i++)
        line[n++] = ']';
    line[n++] = '}';
    assert_false(spool_line_is_event(line, n, 1 << 20));
    free(line);
}

static const spool_run_limits_t WIDE = {100, 1 << 20, 1 << 20};

static void test_runs_split_valid_lines_by_count_and_bytes(void **state)
{
    (void)state;
    const char *buf = "{}\n{\"a\":1}\n{\"bb\":22}\n{}\n";
    size_t len = strlen(buf), end, n;
    spool_run_limits_t lim = {3, 1 << 20, 1 << 20};
    assert_int_equal(spool_next_run(buf, len, 0, &lim, &end, &n), SPOOL_RUN_EVENTS);
    assert_int_equal(n, 3);
    assert_int_equal(end, 21); /* after {"bb":22}\n */
    assert_int_equal(spool_next_run(buf, len, end, &lim, &end, &n), SPOOL_RUN_EVENTS);
    assert_int_equal(n, 1);
    assert_int_equal(end, len);
    assert_int_equal(spool_next_run(buf, len, end, &lim, &end, &n), SPOOL_RUN_END);
    assert_int_equal(n, 0);

    /* By bytes: 11 bytes hold "{}\n{\"a\":1}\n" (3 + 8) but not the third line. */
    lim = (spool_run_limits_t){100, 11, 1 << 20};
    assert_int_equal(spool_next_run(buf, len, 0, &lim, &end, &n), SPOOL_RUN_EVENTS);
    assert_int_equal(n, 2);
    assert_int_equal(end, 11);
    /* A first line longer than the batch bound is still a batch of one. */
    lim = (spool_run_limits_t){100, 2, 1 << 20};
    assert_int_equal(spool_next_run(buf, len, 3, &lim, &end, &n), SPOOL_RUN_EVENTS);
    assert_int_equal(n, 1);
    assert_int_equal(end, 11);
}

static void test_runs_set_bad_lines_apart_from_the_valid_ones(void **state)
{
    (void)state;
    const char *buf = "{\"i\":1}\n{\"i\":2}\nnot json\n[1]\n{\"i\":3}\n";
    size_t len = strlen(buf), end, n;
    assert_int_equal(spool_next_run(buf, len, 0, &WIDE, &end, &n), SPOOL_RUN_EVENTS);
    assert_int_equal(n, 2);
    assert_int_equal(end, 16);
    /* Consecutive bad lines make one run, newlines included. */
    assert_int_equal(spool_next_run(buf, len, end, &WIDE, &end, &n), SPOOL_RUN_BAD);
    assert_int_equal(n, 2);
    assert_int_equal(end, 29);
    assert_memory_equal(buf + 16, "not json\n[1]\n", 13);
    assert_int_equal(spool_next_run(buf, len, end, &WIDE, &end, &n), SPOOL_RUN_EVENTS);
    assert_int_equal(n, 1);
    assert_int_equal(end, len);
}

static void test_runs_treat_an_oversized_line_as_bad(void **state)
{
    (void)state;
    const char *buf = "{}\n{\"pad\":\"xxxxxxxxxxxxxxxx\"}\n{}\n";
    size_t len = strlen(buf), end, n;
    spool_run_limits_t lim = {100, 1 << 20, 10};
    assert_int_equal(spool_next_run(buf, len, 0, &lim, &end, &n), SPOOL_RUN_EVENTS);
    assert_int_equal(n, 1);
    assert_int_equal(spool_next_run(buf, len, end, &lim, &end, &n), SPOOL_RUN_BAD);
    assert_int_equal(n, 1);
    assert_int_equal(spool_next_run(buf, len, end, &lim, &end, &n), SPOOL_RUN_EVENTS);
    assert_int_equal(end, len);
}

static void test_runs_judge_an_unterminated_last_line_like_any_other(void **state)
{
    (void)state;
    /* A crash mid-append leaves a torn tail: bad. */
    const char *torn = "{}\n{\"type\":\"dec";
    size_t len = strlen(torn), end, n;
    assert_int_equal(spool_next_run(torn, len, 0, &WIDE, &end, &n), SPOOL_RUN_EVENTS);
    assert_int_equal(end, 3);
    assert_int_equal(spool_next_run(torn, len, end, &WIDE, &end, &n), SPOOL_RUN_BAD);
    assert_int_equal(n, 1);
    assert_int_equal(end, len);
    /* A whole event that only lacks its newline is delivered. */
    const char *whole = "{}\n{\"a\":1}";
    len = strlen(whole);
    assert_int_equal(spool_next_run(whole, len, 0, &WIDE, &end, &n), SPOOL_RUN_EVENTS);
    assert_int_equal(n, 2);
    assert_int_equal(end, len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_segment_names_sort_like_their_numbers),
        cmocka_unit_test(test_parse_rejects_other_files),
        cmocka_unit_test_setup_teardown(test_open_creates_missing_parent_directories, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_existing_segments_replay_in_numeric_order_and_new_ones_follow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segments_found_at_open_are_never_appended_to, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_append_rotates_once_a_segment_reaches_its_size,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_oldest_seals_the_active_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_limit_refuses_without_writing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_leaves_no_partial_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_first_write_leaves_no_empty_segment, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_append_and_do_not_count_as_spool, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_quarantine_moves_a_segment_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_read_refuses_a_segment_over_the_bound_without_reading_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_appendv_writes_many_pieces_in_order_or_nothing,
                                        setup, teardown),
        cmocka_unit_test(test_a_spool_line_must_be_one_json_object),
        cmocka_unit_test(test_a_spool_line_nested_too_deep_is_not_an_event),
        cmocka_unit_test(test_runs_split_valid_lines_by_count_and_bytes),
        cmocka_unit_test(test_runs_set_bad_lines_apart_from_the_valid_ones),
        cmocka_unit_test(test_runs_treat_an_oversized_line_as_bad),
        cmocka_unit_test(test_runs_judge_an_unterminated_last_line_like_any_other),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
