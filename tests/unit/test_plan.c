/*
 * test_plan.c - unit tests for the plan rules of src/core/plan.c: when a
 * plan is in force, and how the channels a plan leaves out are paced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdbool.h>
#include <string.h>

#include "notifd/core/plan.h"

#define DAY 86400

static void test_a_plan_is_in_force_until_valid_until(void **state)
{
    (void)state;
    plan_t p = {.computed_at = 1000, .valid_until = 1000 + 7 * DAY};
    assert_true(plan_in_force(&p, 1000));
    assert_true(plan_in_force(&p, 1000 + 7 * DAY - 1));
    assert_false(plan_in_force(&p, 1000 + 7 * DAY));
    p.valid_until = 0; /* never expires */
    assert_true(plan_in_force(&p, 1000 + 700 * DAY));
}

static void test_a_plan_computed_far_after_ts_is_not_in_force(void **state)
{
    (void)state;
    const int64_t ts = 1800000000;
    plan_t p = {.computed_at = ts + PLAN_MAX_AHEAD_S, .valid_until = ts + 60 * DAY};
    assert_true(plan_in_force(&p, ts)); /* a writer's clock a month ahead */
    p.computed_at = ts + PLAN_MAX_AHEAD_S + 1;
    assert_false(plan_in_force(&p, ts));
    p.computed_at = 32503680000; /* year 3000, valid until then */
    p.valid_until = 32503680000 + 7 * DAY;
    assert_false(plan_in_force(&p, ts));
}

static void test_complete_fills_left_out_channels_and_marks_them(void **state)
{
    (void)state;
    /* Channels 0 push, 1 email (planned), 2 in_app (outside the grid). */
    const double defaults[3] = {1.0, 0.5, 0.0};
    const double unplanned[3] = {7.0, 7.0, 4.0};
    plan_t p = {.planned_mask = 0x1, .per_week = {2.0}};
    plan_complete(&p, 0x7, 0x3, defaults, unplanned, 0);
    assert_int_equal(p.planned_mask, 0x7);
    assert_int_equal(p.defaulted_mask, 0x6);
    assert_true(p.per_week[0] == 2.0); /* the plan's own value stays */
    assert_true(p.per_week[1] == 0.5); /* the default plan's */
    assert_true(p.per_week[2] == 4.0); /* fast.unplanned_per_week */

    /* An unpaced channel stays out; a complete plan is left alone. */
    plan_t q = {.planned_mask = 0x3, .per_week = {2.0, 1.0}};
    plan_complete(&q, 0x7, 0x3, defaults, unplanned, 0x4);
    assert_int_equal(q.planned_mask, 0x3);
    assert_int_equal(q.defaulted_mask, 0);
    /* Channels not configured are not touched. */
    plan_t r = {.planned_mask = 0x1, .per_week = {2.0}};
    plan_complete(&r, 0x1, 0x3, defaults, unplanned, 0);
    assert_int_equal(r.planned_mask, 0x1);
}

static bool parse(plan_t *p, const char *const *f, const char *const *v, size_t n)
{
    static const char *const channels[] = {"push", "email"};
    size_t fl[16], vl[16];
    for (size_t i = 0; i < n; i++) {
        fl[i] = strlen(f[i]);
        vl[i] = strlen(v[i]);
    }
    return plan_parse_hash(p, channels, 2, 100.0, f, fl, v, vl, n, NULL);
}

static void test_a_drawn_plan_reads_back_its_propensity_and_greedy_plan(void **state)
{
    (void)state;
    const char *f[] = {"push_per_week", "email_per_week", "propensity", "neighbours", "greedy_push"};
    const char *v[] = {"3", "1", "0.025", "4", "2"};
    plan_t p;
    assert_true(parse(&p, f, v, 5));
    assert_int_equal(p.explore_neighbours, 4);
    assert_true(plan_action_propensity(&p) == 0.025);
    assert_true(plan_greedy_per_week(&p, 0) == 2.0);
    assert_true(plan_greedy_per_week(&p, 1) == 1.0); /* not moved: its own */
    assert_int_equal(p.n_gaps, 0); /* no gaps field */

    const char *fg[] = {"push_per_week", "propensity", "neighbours", "gaps"};
    const char *vg[] = {"3", "0.05", "3", "0.01,2.5e-05,0"};
    assert_true(parse(&p, fg, vg, 4));
    assert_int_equal(p.n_gaps, 3);
    assert_true(p.utility_gap[0] == 0.01 && p.utility_gap[1] == 2.5e-05 && p.utility_gap[2] == 0);
    /* Not one gap per neighbour, or an unusable entry: no gaps. */
    const char *bad[] = {"0.01,0.02", "0.01,x,0", "0.01,,0", "1,2,3,4,5,6,7,8,9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vg[3] = bad[i];
        assert_true(parse(&p, fg, vg, 4));
        assert_int_equal(p.n_gaps, 0);
        assert_true(plan_action_propensity(&p) == 0.05);
    }
}

static void test_a_plan_without_a_whole_logged_choice_is_certain(void **state)
{
    (void)state;
    plan_t p;
    const char *f1[] = {"push_per_week", "propensity"};
    const char *v1[] = {"3", "0.5"};
    assert_true(parse(&p, f1, v1, 2));
    assert_true(plan_action_propensity(&p) == 1.0); /* no K: not a drawn plan */
    assert_true(plan_greedy_per_week(&p, 0) == 3.0);
    const char *f2[] = {"push_per_week", "propensity", "neighbours"};
    const char *bad[][2] = {{"0", "4"}, {"1.5", "4"}, {"nan", "4"}, {"0.5", "0"}, {"0.5", "9"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *v2[] = {"3", bad[i][0], bad[i][1]};
        assert_true(parse(&p, f2, v2, 3)); /* still a plan ... */
        assert_true(plan_action_propensity(&p) == 1.0); /* ... read as certain */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_plan_is_in_force_until_valid_until),
        cmocka_unit_test(test_a_plan_computed_far_after_ts_is_not_in_force),
        cmocka_unit_test(test_complete_fills_left_out_channels_and_marks_them),
        cmocka_unit_test(test_a_drawn_plan_reads_back_its_propensity_and_greedy_plan),
        cmocka_unit_test(test_a_plan_without_a_whole_logged_choice_is_certain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
