/*
 * test_cadence.c - the planner's cadence (src/core/cadence.c): phases,
 * the next time a phase comes round, plan validity, which stored plans a
 * pass keeps, and the windows of consecutive passes, which must cover
 * every phase exactly once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/core/cadence.h"

#define WEEK 604800

static void phases_are_stable_and_spread(void **state)
{
    (void)state;
    int buckets[10] = {0};
    for (int i = 0; i < 10000; i++) {
        char m[32];
        int n = snprintf(m, sizeof m, "m%08d", i);
        double u = cadence_phase(m, (size_t)n);
        assert_true(u >= 0.0 && u < 1.0);
        assert_true(u == cadence_phase(m, (size_t)n));
        buckets[(int)(u * 10)]++;
    }
    for (int b = 0; b < 10; b++)
        assert_in_range(buckets[b], 850, 1150);
}

/* Golden phases, computed once: a member's phase must be the same in the
 * next release, or every plan's valid_until and every partition pass moves
 * (the loop above only compares one build with itself). */
static void phases_match_golden_values(void **state)
{
    (void)state;
    assert_true(cadence_phase("m00000000", 9) == 0x1.c6abc1f9bafe2p-1); /* exact hex floats */
    assert_true(cadence_phase("member-1", 8) == 0x1.c0ad6d1c3b488p-3);
}

static void next_is_strictly_after_and_at_the_phase(void **state)
{
    (void)state;
    double u = 0.25; /* offset 151200 s into each week */
    int64_t cycle = 2800LL * WEEK;
    assert_int_equal(cadence_next(u, WEEK, cycle), cycle + 151200);
    assert_int_equal(cadence_next(u, WEEK, cycle + 151199), cycle + 151200);
    assert_int_equal(cadence_next(u, WEEK, cycle + 151200), cycle + WEEK + 151200);
    assert_int_equal(cadence_next(u, WEEK, cycle + 151201), cycle + WEEK + 151200);
    assert_int_equal(cadence_next(0.0, WEEK, cycle), cycle + WEEK);
    /* Before 1970 too (simulated times are free). */
    assert_int_equal(cadence_next(u, WEEK, -WEEK), -WEEK + 151200);
}

static void a_plan_lasts_until_the_phase_after_half_an_interval_plus_grace(void **state)
{
    (void)state;
    int64_t cycle = 2800LL * WEEK;
    double u = 0.25;
    int64_t at_phase = cycle + 151200;
    /* Computed as the phase comes round (the steady state): one interval. */
    assert_int_equal(cadence_valid_until(u, WEEK, 0.0, at_phase), at_phase + WEEK);
    /* A little late: still one interval from when it was computed. */
    assert_int_equal(cadence_valid_until(u, WEEK, 0.0, at_phase + 60), at_phase + 60 + WEEK);
    /* Off the phase (a join, a replan): until the phase after half an interval. */
    int64_t early = at_phase - WEEK / 4;
    assert_int_equal(cadence_valid_until(u, WEEK, 0.0, early), at_phase + WEEK);
    int64_t late = at_phase + WEEK / 4;
    assert_int_equal(cadence_valid_until(u, WEEK, 0.0, late), late + WEEK);
    /* The grace is added on top. */
    assert_int_equal(cadence_valid_until(u, WEEK, 0.05, at_phase), at_phase + WEEK + 30240);
    /* Always between one and one and a half intervals (without grace). */
    for (int64_t t = cycle; t < cycle + 2 * WEEK; t += 3607) {
        int64_t v = cadence_valid_until(0.7, WEEK, 0.0, t);
        assert_true(v >= t + WEEK && v <= t + WEEK + WEEK / 2);
    }
}

static void recent_plans_in_force_are_kept(void **state)
{
    (void)state;
    int64_t t = 1700000000;
    assert_true(cadence_plan_current(WEEK, t - 3600, t + WEEK, t));
    assert_false(cadence_plan_current(WEEK, t - WEEK / 2, t + WEEK, t)); /* half a cadence old */
    assert_false(cadence_plan_current(WEEK, t - WEEK, t, t));            /* the steady state */
    assert_false(cadence_plan_current(WEEK, t - 3600, t, t));            /* no longer in force */
    assert_true(cadence_plan_current(WEEK, t + 3600, t + WEEK, t));      /* computed ahead */
}

static double parse_bound(const char *s, bool *exclusive)
{
    *exclusive = s[0] == '(';
    const char *p = *exclusive ? s + 1 : s;
    if (strcmp(p, "-inf") == 0)
        return -1e300;
    if (strcmp(p, "+inf") == 0)
        return 1e300;
    return strtod(p, NULL);
}

static bool in_range(const cadence_range_t *r, double u)
{
    bool lx, hx;
    double lo = parse_bound(r->min, &lx), hi = parse_bound(r->max, &hx);
    return (lx ? u > lo : u >= lo) && (hx ? u < hi : u <= hi);
}

static int windows_containing(const cadence_range_t *r, int n, double u)
{
    int hits = 0;
    for (int i = 0; i < n; i++)
        hits += in_range(&r[i], u);
    return hits;
}

static void consecutive_windows_cover_every_phase_once_per_cycle(void **state)
{
    (void)state;
    cadence_range_t r[2];
    /* No cursor, or a whole interval since: everything, outer ends open. */
    assert_int_equal(cadence_window(false, 0, 1700000000, WEEK, r), 1);
    assert_string_equal(r[0].min, "-inf");
    assert_string_equal(r[0].max, "+inf");
    assert_int_equal(cadence_window(true, 1700000000, 1700000000 + WEEK, WEEK, r), 1);
    assert_string_equal(r[0].min, "-inf");
    /* Nothing new: as_of at or before the cursor. */
    assert_int_equal(cadence_window(true, 1700000000, 1700000000, WEEK, r), 0);
    assert_int_equal(cadence_window(true, 1700000000, 1699999000, WEEK, r), 0);

    /* Passes at irregular steps over two cycles: each phase is walked once
     * per cycle (and the first window, from a cursor a cycle back, once). */
    enum { N = 2000 };
    static double phases[N];
    static int seen[N];
    for (int i = 0; i < N; i++) {
        phases[i] = (double)i / N + 0.5 / N;
        seen[i] = 0;
    }
    phases[0] = 0.0; /* the cycle's very start */
    int64_t start = 2800LL * WEEK + 12345, t = start;
    int steps = 0;
    while (t < start + 2 * WEEK) {
        int64_t next = t + 3600 + (steps * 7919) % 50000;
        if (next > start + 2 * WEEK)
            next = start + 2 * WEEK;
        int n = cadence_window(true, t, next, WEEK, r);
        assert_true(n >= 1 && n <= 2);
        for (int i = 0; i < N; i++)
            seen[i] += windows_containing(r, n, phases[i]);
        t = next;
        steps++;
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 2);
    /* A phase on the very bound of two windows falls in the later one only. */
    int n1 = cadence_window(true, start, start + 1000, WEEK, r);
    double edge = (double)((start + 1000) % WEEK) / WEEK;
    assert_int_equal(windows_containing(r, n1, edge), 1);
    int n2 = cadence_window(true, start + 1000, start + 2000, WEEK, r);
    assert_int_equal(windows_containing(r, n2, edge), 0);
}

static bool cursor(const char *s, int64_t *out) { return cadence_cursor_parse(s, strlen(s), out); }

/* Only a time a pass could have written is a cursor: anything else is
 * treated as none, so the whole cadence is walked rather than hidden. */
static void only_sane_times_are_cursors(void **state)
{
    (void)state;
    int64_t v = -1;
    assert_true(cursor("0", &v));
    assert_int_equal(v, 0);
    assert_true(cursor("1700000060", &v));
    assert_int_equal(v, 1700000060);
    assert_true(cursor("99999999999", &v)); /* the largest ts a request may give */
    assert_int_equal(v, 99999999999LL);
    v = 7;
    const char *garbage[] = {"", "oops", "100000000000", "999999999999999",
                             "99999999999999999999999", "-5", "+5", " 5", "5 ", "1e9",
                             "1700000060.5", "0x10"};
    for (size_t i = 0; i < sizeof garbage / sizeof *garbage; i++)
        assert_false(cursor(garbage[i], &v));
    assert_false(cadence_cursor_parse("17000\00060", 11, &v)); /* an embedded NUL */
    assert_int_equal(v, 7); /* untouched on failure */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(phases_are_stable_and_spread),
        cmocka_unit_test(phases_match_golden_values),
        cmocka_unit_test(next_is_strictly_after_and_at_the_phase),
        cmocka_unit_test(a_plan_lasts_until_the_phase_after_half_an_interval_plus_grace),
        cmocka_unit_test(recent_plans_in_force_are_kept),
        cmocka_unit_test(consecutive_windows_cover_every_phase_once_per_cycle),
        cmocka_unit_test(only_sane_times_are_cursors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
