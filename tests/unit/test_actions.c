/*
 * test_actions.c - unit tests for the action grid (src/core/actions.c): the
 * default 80-action grid, the mixed-radix index layout that plans store,
 * lookups in both directions, filling a plan, and every validation rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "notifd/core/actions.h"

static void test_default_grid_has_80_actions(void **state)
{
    (void)state;
    action_grid_t g;
    assert_int_equal(action_grid_defaults(&g, 0, 1), 0);
    assert_int_equal(g.n_channels, 2);
    assert_int_equal(g.n_actions, 80);
    assert_int_equal(g.planned_mask, 0x3);
    assert_string_equal(g.name[0], "push");
    assert_string_equal(g.name[1], "email");
}

static void test_default_values_are_known_by_channel_name(void **state)
{
    (void)state;
    int n = -1;
    const double *push = action_grid_default_values("push", &n);
    assert_non_null(push);
    assert_int_equal(n, 10);
    assert_float_equal(push[1], 0.5, 0);
    assert_float_equal(push[9], 14, 0);
    const double *email = action_grid_default_values("email", &n);
    assert_non_null(email);
    assert_int_equal(n, 8);
    assert_float_equal(email[1], 0.5, 0);
    assert_float_equal(email[7], 7, 0);
    assert_null(action_grid_default_values("in_app", &n));
    assert_int_equal(n, 0);
}

static void test_defaults_reject_equal_channels(void **state)
{
    (void)state;
    action_grid_t g;
    assert_int_equal(action_grid_defaults(&g, 1, 1), -1);
    assert_int_equal(action_grid_defaults(&g, 0, NOTIFD_MAX_CHANNELS), -1);
}

static void test_index_is_mixed_radix_with_first_channel_most_significant(void **state)
{
    (void)state;
    action_grid_t g;
    action_grid_defaults(&g, 0, 1);
    /* push index 4 (3/week), email index 3 (2/week): 4 * 8 + 3 */
    assert_float_equal(action_grid_value(&g, 35, 0), 3, 0);
    assert_float_equal(action_grid_value(&g, 35, 1), 2, 0);
    assert_float_equal(action_grid_value(&g, 0, 0), 0, 0);
    assert_float_equal(action_grid_value(&g, 0, 1), 0, 0);
    assert_float_equal(action_grid_value(&g, 9, 0), 0.5, 0);
    assert_float_equal(action_grid_value(&g, 9, 1), 0.5, 0);
    assert_float_equal(action_grid_value(&g, 79, 0), 14, 0);
    assert_float_equal(action_grid_value(&g, 79, 1), 7, 0);
}

static void test_vector_and_total_agree(void **state)
{
    (void)state;
    action_grid_t g;
    action_grid_defaults(&g, 0, 1);
    for (int a = 0; a < g.n_actions; a++) {
        double v[ACTION_GRID_MAX_CHANNELS];
        action_grid_vector(&g, a, v);
        assert_float_equal(v[0], action_grid_value(&g, a, 0), 0);
        assert_float_equal(v[1], action_grid_value(&g, a, 1), 0);
        assert_float_equal(action_grid_total(&g, a), v[0] + v[1], 0);
    }
    assert_float_equal(action_grid_total(&g, 79), 21, 0);
}

static void test_find_round_trips_every_action(void **state)
{
    (void)state;
    action_grid_t g;
    action_grid_defaults(&g, 0, 1);
    for (int a = 0; a < g.n_actions; a++) {
        double v[ACTION_GRID_MAX_CHANNELS];
        action_grid_vector(&g, a, v);
        assert_int_equal(action_grid_find(&g, v), a);
    }
}

static void test_find_returns_minus_one_off_the_grid(void **state)
{
    (void)state;
    action_grid_t g;
    action_grid_defaults(&g, 0, 1);
    const double six_push[] = {6, 1};
    const double eight_email[] = {1, 8};
    assert_int_equal(action_grid_find(&g, six_push), -1);
    assert_int_equal(action_grid_find(&g, eight_email), -1);
}

static void test_fill_plan_sets_channels_by_configured_index(void **state)
{
    (void)state;
    action_grid_t g;
    /* push is configured channel 2 and email channel 0 here. */
    action_grid_defaults(&g, 2, 0);
    plan_t p;
    memset(&p, 0, sizeof(p));
    p.version = 7;
    p.per_week[1] = 99; /* an unplanned channel: cleared */
    action_grid_fill_plan(&g, 35, &p); /* push index 4 (3), email index 3 (2) */
    assert_int_equal(p.action, 35);
    assert_int_equal(p.planned_mask, (1u << 2) | (1u << 0));
    assert_float_equal(p.per_week[2], 3, 0);
    assert_float_equal(p.per_week[0], 2, 0);
    assert_float_equal(p.per_week[1], 0, 0);
    assert_int_equal(p.version, 7);
}

static void test_accepts_fractional_values(void **state)
{
    (void)state;
    const double v[] = {0, 0.5, 1, 2.5};
    const action_channel_spec_t s[] = {{0, "push", v, 4}};
    action_grid_t g;
    char err[128];
    assert_int_equal(action_grid_build(&g, s, 1, err, sizeof(err)), 0);
    assert_int_equal(g.n_actions, 4);
    assert_float_equal(action_grid_total(&g, 1), 0.5, 0);
}

/* Builds a one- or two-channel grid and expects failure with `needle` in the
 * message. */
static void expect_error(const action_channel_spec_t *s, int n, const char *needle)
{
    action_grid_t g;
    char err[160] = "";
    assert_int_equal(action_grid_build(&g, s, n, err, sizeof(err)), -1);
    if (strstr(err, needle) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

static void test_rejects_values_not_strictly_increasing(void **state)
{
    (void)state;
    const double v[] = {0, 1, 7, 5};
    const action_channel_spec_t s[] = {{1, "email", v, 4}};
    expect_error(s, 1, "email: values must be strictly increasing (5 after 7)");
    const double dup[] = {0, 1, 1};
    const action_channel_spec_t d[] = {{1, "email", dup, 3}};
    expect_error(d, 1, "strictly increasing");
}

static void test_rejects_negative_or_non_finite_values(void **state)
{
    (void)state;
    const double neg[] = {0, -1};
    const action_channel_spec_t s[] = {{0, "push", neg, 2}};
    expect_error(s, 1, "push: value -1");
    const double nan_v[] = {0, NAN};
    const action_channel_spec_t n[] = {{0, "push", nan_v, 2}};
    expect_error(n, 1, "push: value");
    const double huge[] = {0, 5000};
    const action_channel_spec_t h[] = {{0, "push", huge, 2}};
    expect_error(h, 1, "push: value 5000");
}

static void test_rejects_a_first_value_other_than_zero(void **state)
{
    (void)state;
    const double v[] = {1, 2};
    const action_channel_spec_t s[] = {{0, "push", v, 2}};
    expect_error(s, 1, "first value must be 0");
}

static void test_rejects_more_than_max_actions(void **state)
{
    (void)state;
    double v[ACTION_GRID_MAX_VALUES];
    for (int i = 0; i < ACTION_GRID_MAX_VALUES; i++)
        v[i] = i;
    const action_channel_spec_t s[] = {{0, "a", v, 32}, {1, "b", v, 32}, {2, "c", v, 2}};
    expect_error(s, 3, "more than 1024 actions");
    /* exactly 1024 is fine */
    action_grid_t g;
    assert_int_equal(action_grid_build(&g, s, 2, NULL, 0), 0);
    assert_int_equal(g.n_actions, 1024);
    assert_float_equal(action_grid_total(&g, 1023), 62, 0);
}

static void test_rejects_bad_channel_lists(void **state)
{
    (void)state;
    const double v[] = {0, 1};
    const action_channel_spec_t twice[] = {{0, "push", v, 2}, {0, "push", v, 2}};
    expect_error(twice, 2, "push: channel planned twice");
    const action_channel_spec_t out[] = {{NOTIFD_MAX_CHANNELS, "x", v, 2}};
    expect_error(out, 1, "x: channel index");
    const action_channel_spec_t empty[] = {{0, "push", v, 0}};
    expect_error(empty, 1, "push: needs at least one value");
    const action_channel_spec_t five[] = {
        {0, "a", v, 2}, {1, "b", v, 2}, {2, "c", v, 2}, {3, "d", v, 2}, {4, "e", v, 2}};
    expect_error(five, 5, "at most 4 planned channels");
    expect_error(five, 0, "at least one planned channel");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_grid_has_80_actions),
        cmocka_unit_test(test_default_values_are_known_by_channel_name),
        cmocka_unit_test(test_defaults_reject_equal_channels),
        cmocka_unit_test(test_index_is_mixed_radix_with_first_channel_most_significant),
        cmocka_unit_test(test_vector_and_total_agree),
        cmocka_unit_test(test_find_round_trips_every_action),
        cmocka_unit_test(test_find_returns_minus_one_off_the_grid),
        cmocka_unit_test(test_fill_plan_sets_channels_by_configured_index),
        cmocka_unit_test(test_accepts_fractional_values),
        cmocka_unit_test(test_rejects_values_not_strictly_increasing),
        cmocka_unit_test(test_rejects_negative_or_non_finite_values),
        cmocka_unit_test(test_rejects_a_first_value_other_than_zero),
        cmocka_unit_test(test_rejects_more_than_max_actions),
        cmocka_unit_test(test_rejects_bad_channel_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
