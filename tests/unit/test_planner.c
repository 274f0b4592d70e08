/*
 * test_planner.c - unit tests for the planner's pure helpers
 * (src/slow/planner.c): valid_until by the member's phase, the plan TTL, the plan-write
 * argument layout shared by the worker and the replan op, and the
 * planner.poll_s config key. The worker itself (thread, leases, pipeline)
 * runs against a real Redis in tests/integration/test_planner.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"

#include "notifd/core/cadence.h"
#include "notifd/config/config.h"
#include "notifd/slow/planner.h"


static void valid_until_follows_the_members_phase_plus_the_grace(void **state)
{
    (void)state;
    config_t *cfg = test_load_config("{\"planner\": {\"interval_s\": 100000, \"jitter\": 0.1}}", NULL);
    assert_non_null(cfg);
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (int i = 0; i < 2000; i++) {
        char m[32];
        int n = snprintf(m, sizeof m, "member-%d", i);
        int64_t v = planner_valid_until(cfg, m, (size_t)n, 5000);
        /* One to one and a half intervals, plus 10% of one as grace. */
        assert_true(v >= 5000 + 100000 + 10000);
        assert_true(v <= 5000 + 150000 + 10000);
        assert_int_equal(v, cadence_valid_until(cadence_phase(m, (size_t)n), 100000, 0.1, 5000));
        assert_int_equal(v, planner_valid_until(cfg, m, (size_t)n, 5000));
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    /* Spread by phase over the half interval after the first. */
    assert_true(hi - lo > 45000);
    config_release(cfg);
}

static void no_grace_on_the_phase_means_exactly_one_interval(void **state)
{
    (void)state;
    config_t *cfg = test_load_config("{\"planner\": {\"interval_s\": 604800, \"jitter\": 0}}", NULL);
    assert_non_null(cfg);
    /* Computed as "a"'s phase comes round: valid for exactly one interval. */
    int64_t at = cadence_next(cadence_phase("a", 1), 604800, 1700000000);
    assert_int_equal(planner_valid_until(cfg, "a", 1, at), at + 604800);
    assert_int_equal(planner_plan_ttl_s(cfg, at, at + 604800), 2 * 604800);
    config_release(cfg);
}

static void write_args_hold_every_contract_field(void **state)
{
    (void)state;
    config_t *cfg = test_load_config("{}", NULL);
    assert_non_null(cfg);
    plan_t plan;
    memset(&plan, 0, sizeof plan);
    plan.version = 12;
    plan.action = 30;
    plan.computed_at = 1700000000;
    plan.valid_until = 1700604800;
    int push = config_channel_index(cfg, "push", 4), email = config_channel_index(cfg, "email", 5);
    plan.planned_mask = (1u << push) | (1u << email);
    plan.per_week[push] = 4;
    plan.per_week[email] = 2.5;
    planner_write_args_t wa;
    planner_write_args_build(&wa, cfg, "p:plan:{a}", 10, &plan, 1209600, 0);
    /* key, version, ttl, then field/value pairs */
    assert_int_equal(wa.argc, 3 + 2 * 6);
    assert_memory_equal(wa.argv[0], "p:plan:{a}", 10);
    assert_string_equal(wa.argv[1], "12");
    assert_string_equal(wa.argv[2], "1209600");
    const char *want[][2] = {{"action", "30"},          {"computed_at", "1700000000"},
                             {"valid_until", "1700604800"}, {"source", "planner"},
                             {"push_per_week", "4"},    {"email_per_week", "2.5"}};
    for (int i = 0; i < 6; i++) {
        int found = 0;
        for (int k = 3; k + 1 < wa.argc; k += 2)
            if (wa.lens[k] == strlen(want[i][0]) && memcmp(wa.argv[k], want[i][0], wa.lens[k]) == 0) {
                assert_int_equal(wa.lens[k + 1], strlen(want[i][1]));
                assert_memory_equal(wa.argv[k + 1], want[i][1], wa.lens[k + 1]);
                found = 1;
            }
        assert_true(found);
    }
    config_release(cfg);
}

static void the_ttl_is_set_ahead_and_left_while_long_enough(void **state)
{
    (void)state;
    config_t *cfg = test_load_config("{\"planner\": {\"interval_s\": 1000}}", NULL);
    assert_non_null(cfg);
    /* Needed: valid_until + one interval; set: two intervals more. */
    assert_int_equal(planner_plan_ttl_s(cfg, 0, 1100), 2100);
    assert_int_equal(planner_plan_ttl_set_s(cfg, 0, 1100), 4100);
    int64_t now = 1700000000;
    assert_true(planner_ttl_long_enough(cfg, now + 2100, 0, 1100, now));
    assert_false(planner_ttl_long_enough(cfg, now + 2099, 0, 1100, now));
    assert_false(planner_ttl_long_enough(cfg, 0, 0, 1100, now)); /* none stored */
    /* Set at one pass, left at the next, set again at the third. */
    int64_t expires = now + planner_plan_ttl_set_s(cfg, 0, 1100);
    assert_true(planner_ttl_long_enough(cfg, expires, 0, 1100, now + 1000));
    assert_true(planner_ttl_long_enough(cfg, expires, 0, 1100, now + 2000));
    assert_false(planner_ttl_long_enough(cfg, expires, 0, 1100, now + 3000));
    /* The field goes out only with a TTL. */
    plan_t plan;
    memset(&plan, 0, sizeof plan);
    planner_write_args_t wa;
    planner_write_args_build(&wa, cfg, "k", 1, &plan, 4100, expires);
    int found = 0;
    for (int k = 3; k + 1 < wa.argc; k += 2)
        if (wa.lens[k] == 10 && memcmp(wa.argv[k], "expires_at", 10) == 0) {
            assert_int_equal(strtoll(wa.argv[k + 1], NULL, 10), expires);
            found++;
        }
    assert_int_equal(found, 1);
    planner_write_args_build(&wa, cfg, "k", 1, &plan, 4100, 0);
    for (int k = 3; k + 1 < wa.argc; k += 2)
        assert_false(wa.lens[k] == 10 && memcmp(wa.argv[k], "expires_at", 10) == 0);
    config_release(cfg);
}

static void poll_s_has_a_default_and_a_range(void **state)
{
    (void)state;
    config_t *cfg = test_load_config("{}", NULL);
    assert_non_null(cfg);
    assert_int_equal(cfg->planner.poll_s, 60);
    config_release(cfg);
    cfg = test_load_config("{\"planner\": {\"poll_s\": 5}}", NULL);
    assert_non_null(cfg);
    assert_int_equal(cfg->planner.poll_s, 5);
    config_release(cfg);
    config_errors_t errs;
    config_errors_init(&errs);
    assert_null(config_load_string("{\"planner\": {\"poll_s\": 0}}", 1, &errs));
    assert_int_equal(errs.count, 1);
    assert_non_null(strstr(errs.items[0], "planner.poll_s"));
    config_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_until_follows_the_members_phase_plus_the_grace),
        cmocka_unit_test(no_grace_on_the_phase_means_exactly_one_interval),
        cmocka_unit_test(write_args_hold_every_contract_field),
        cmocka_unit_test(the_ttl_is_set_ahead_and_left_while_long_enough),
        cmocka_unit_test(poll_s_has_a_default_and_a_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
