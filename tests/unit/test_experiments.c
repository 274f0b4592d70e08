/*
 * test_experiments.c - arm assignment (shares, stability, independence of
 * the two layers) and the experiments config section.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"

#include "notifd/config/config.h"
#include "notifd/core/experiments.h"
#include "notifd/core/slow_policy.h"

#define N_MEMBERS 100000

static void test_shares_hold_within_two_percent_over_100k_members(void **state)
{
    const double shares[] = {0.25, 0.10, 0.40};
    int counts[4] = {0};
    char id[32];
    for (int i = 0; i < N_MEMBERS; i++) {
        int n = snprintf(id, sizeof id, "member-%d", i);
        int arm = experiments_assign("salt-a", shares, 3, id, (size_t)n);
        counts[arm + 1]++;
    }
    assert_true(fabs(counts[1] / (double)N_MEMBERS - 0.25) < 0.02);
    assert_true(fabs(counts[2] / (double)N_MEMBERS - 0.10) < 0.02);
    assert_true(fabs(counts[3] / (double)N_MEMBERS - 0.40) < 0.02);
    assert_true(fabs(counts[0] / (double)N_MEMBERS - 0.25) < 0.02); /* control */
}

static void test_assignment_is_stable_and_depends_on_the_salt(void **state)
{
    const double shares[] = {0.5};
    int moved = 0;
    char id[32];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(id, sizeof id, "m%d", i);
        int a1 = experiments_assign("s1", shares, 1, id, (size_t)n);
        int a2 = experiments_assign("s1", shares, 1, id, (size_t)n);
        assert_int_equal(a1, a2);
        moved += a1 != experiments_assign("s2", shares, 1, id, (size_t)n);
    }
    assert_in_range(moved, 400, 600); /* another salt reshuffles about half */
}

/* Golden assignments, computed once: a member's arm must survive an
 * upgrade, or a running experiment's arms get reshuffled mid-flight (the
 * test above compares one build with itself, which cannot see that). */
static void test_holdout_share_is_kept_and_only_grows(void **state)
{
    (void)state;
    int in5 = 0, in10 = 0;
    char id[32];
    for (int i = 0; i < N_MEMBERS; i++) {
        int n = snprintf(id, sizeof id, "member-%d", i);
        bool a = experiments_in_holdout("hold-1", 0.05, id, (size_t)n);
        bool b = experiments_in_holdout("hold-1", 0.10, id, (size_t)n);
        assert_true(a == experiments_in_holdout("hold-1", 0.05, id, (size_t)n));
        assert_false(a && !b); /* raising the share only adds members */
        assert_false(experiments_in_holdout("hold-1", 0.0, id, (size_t)n));
        in5 += a;
        in10 += b;
    }
    assert_true(fabs(in5 / (double)N_MEMBERS - 0.05) < 0.005);
    assert_true(fabs(in10 / (double)N_MEMBERS - 0.10) < 0.005);
    /* Golden: the holdout must survive an upgrade. */
    assert_true(experiments_position("s1", "m1", 2) < 0.52);
    assert_true(experiments_in_holdout("s1", 0.52, "m1", 2));
    assert_false(experiments_in_holdout("s1", 0.51, "m1", 2));
}

static void test_assignment_matches_golden_values(void **state)
{
    (void)state;
    assert_true(experiments_position("s1", "m1", 2) == 0x1.0687305cce80ap-1); /* exact */
    const double shares[] = {0.25, 0.10, 0.40};
    /* Arms of m0..m39 under salt "s1"; -1 is control. */
    static const int golden[40] = {2, 2, 1, 2, -1, 0, 2, 0, -1, 1, 0, 0, -1, 2, 2, 2, 0, 2, 0, 2,
                                   -1, -1, 2, -1, 0, 2, 0, -1, 0, 1, 2, 2, 1, 2, 2, -1, 2, -1, -1,
                                   2};
    char id[32];
    for (int i = 0; i < 40; i++) {
        int n = snprintf(id, sizeof id, "m%d", i);
        assert_int_equal(experiments_assign("s1", shares, 3, id, (size_t)n), golden[i]);
    }
}

static void test_layers_with_different_salts_are_independent(void **state)
{
    /* P(fast arm | slow arm) must equal P(fast arm): cross-tabulate. */
    const double half[] = {0.5};
    int table[2][2] = {{0}};
    char id[32];
    for (int i = 0; i < N_MEMBERS; i++) {
        int n = snprintf(id, sizeof id, "u%d", i);
        int s = experiments_assign("slow-salt", half, 1, id, (size_t)n) + 1;
        int f = experiments_assign("fast-salt", half, 1, id, (size_t)n) + 1;
        table[s][f]++;
    }
    for (int s = 0; s < 2; s++) {
        double row = table[s][0] + table[s][1];
        assert_true(fabs(table[s][1] / row - 0.5) < 0.02);
    }
}


static void test_arm_overrides_apply_to_their_layer_only(void **state)
{
    config_errors_t errs;
    config_t *cfg = test_load_config(
        "{\"experiments\":{"
        "\"slow\":{\"salt\":\"s\",\"arms\":[{\"name\":\"cost_x2\",\"share\":0.25,"
        "\"set\":{\"slow.message_cost\":0.4,\"slow.weights.optout\":9}}]},"
        "\"fast\":{\"salt\":\"f\",\"arms\":[{\"name\":\"soft\",\"share\":0.5,"
        "\"set\":{\"fast.pacing\":\"uniform\",\"fast.ranker.push.score\":3}}]}}}",
        &errs);
    assert_non_null(cfg);
    const policy_config_t *pc = &cfg->policy;
    assert_int_equal(pc->slow_layer.n_arms, 1);
    assert_string_equal(pc->slow_layer.names[0], "cost_x2");
    assert_true(pc->slow_arms[0].weights.message_cost == 0.4);
    assert_true(pc->slow_arms[0].weights.optout == 9);
    assert_true(pc->slow.weights.message_cost != 0.4); /* the base is untouched */
    assert_int_equal(pc->fast_arms[0].pacing.strategy, PACING_UNIFORM);
    assert_true(pc->fast_arms[0].ranker[0].w_score == 3);
    assert_true(pc->fast.ranker[0].w_score == 1);
    assert_int_not_equal(pc->fast.pacing.strategy, PACING_UNIFORM); /* the base keeps its default */

    int arm;
    const char *name;
    int in_arm = 0;
    char id[32];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(id, sizeof id, "x%d", i);
        const slow_config_t *s = policy_slow_for(pc, id, (size_t)n, &arm, &name);
        if (arm == 0) {
            in_arm++;
            assert_ptr_equal(s, &pc->slow_arms[0]);
            assert_string_equal(name, "cost_x2");
        } else {
            assert_ptr_equal(s, &pc->slow);
            assert_string_equal(name, "control");
        }
    }
    assert_in_range(in_arm, 400, 600);
    config_release(cfg);
    config_errors_free(&errs);
}

static void test_invalid_arms_are_reported_with_paths(void **state)
{
    config_errors_t errs;
    config_t *cfg = test_load_config(
        "{\"experiments\":{"
        "\"slow\":{\"salt\":\"same\",\"arms\":[{\"name\":\"a\",\"share\":0.7,\"set\":"
        "{\"fast.pacing\":\"uniform\"}},{\"name\":\"b\",\"share\":0.6,\"set\":{}}]},"
        "\"fast\":{\"salt\":\"same\",\"arms\":[{\"name\":\"c\",\"share\":0.2,\"set\":"
        "{\"fast.pacing\":\"sometimes\",\"fast.bogus\":1}}]}}}",
        &errs);
    assert_null(cfg);
    /* a key of the wrong layer */
    assert_true(test_has_error(&errs, "experiments.slow.arms[0].set.fast.pacing: a slow arm may only"));
    assert_true(test_has_error(&errs, "shares sum to 1.3"));
    assert_true(test_has_error(&errs, "experiments.fast.arms[0].set.fast.pacing"));
    assert_true(test_has_error(&errs, "experiments.fast.arms[0].set.fast.bogus: unknown key"));
    assert_true(test_has_error(&errs, "different salts"));
    config_errors_free(&errs);
}

static void test_quality_quantile_is_configured_and_validated(void **state)
{
    (void)state;
    config_errors_t errs;
    config_t *cfg = test_load_config("{}", &errs);
    assert_non_null(cfg);
    assert_int_equal(cfg->policy.fast.pacing.quality_quantile, PACING_QUANTILE_BUDGET);
    assert_int_equal(cfg->policy.fast.pacing.quality_min_history, 5);
    config_release(cfg);
    config_errors_free(&errs);

    cfg = test_load_config("{\"fast\":{\"quality_quantile\":\"rate\"},\"experiments\":{\"fast\":"
               "{\"salt\":\"f\",\"arms\":[{\"name\":\"r\",\"share\":0.5,\"set\":"
               "{\"fast.quality_quantile\":\"budget\"}}]}}}",
               &errs);
    assert_non_null(cfg);
    assert_int_equal(cfg->policy.fast.pacing.quality_quantile, PACING_QUANTILE_RATE);
    assert_int_equal(cfg->policy.fast_arms[0].pacing.quality_quantile, PACING_QUANTILE_BUDGET);
    config_release(cfg);
    config_errors_free(&errs);

    cfg = test_load_config("{\"fast\":{\"quality_quantile\":\"sometimes\"}}", &errs);
    assert_null(cfg);
    assert_true(test_has_error(&errs, "fast.quality_quantile: must be \"rate\" or \"budget\""));
    config_errors_free(&errs);
}

static void test_default_plan_is_the_planners_plan_for_a_new_member(void **state)
{
    (void)state;
    /* A member the planner has not seen yet gets the default plan, and the
     * planner's first plan for a member without history is that same plan,
     * so the first pass changes nothing. */
    config_errors_t errs;
    config_t *cfg = test_load_config("{}", &errs);
    assert_non_null(cfg);
    const slow_config_t *s = &cfg->policy.slow;
    member_features_t f;
    features_init(&f);
    f.n_channels = cfg->n_channels;
    plan_t plan;
    assert_true(slow_plan_member(&s->weights, &s->priors, &s->grid, &f, 1700000000,
                                 cfg->policy.half_life_s, &plan) >= 0);
    for (int k = 0; k < s->grid.n_channels; k++) {
        int c = s->grid.channel[k];
        assert_true(s->default_mask & (1u << c));
        assert_true(plan.per_week[c] == s->default_per_week[c]);
    }
    config_release(cfg);
    config_errors_free(&errs);
}

/* The priors alone, at the default message cost, are worth less than a
 * message: without the new-member rule a member without history would be
 * planned nothing until the planner saw their scores. With it they get the
 * default plan; anything stored about them (one visit) returns them to the
 * argmax, and a default plan the grid does not hold leaves every member to
 * the argmax. */
static void test_only_a_member_without_history_is_planned_the_default(void **state)
{
    (void)state;
    config_errors_t errs;
    config_t *cfg = test_load_config("{}", &errs);
    assert_non_null(cfg);
    const slow_config_t *s = &cfg->policy.slow;
    const int64_t now = 1700000000;
    int push = config_channel_index(cfg, "push", 4);
    assert_true(push >= 0);
    assert_true(s->grid.new_member_action >= 0);

    member_features_t f;
    features_init(&f);
    f.n_channels = cfg->n_channels;
    member_estimate_t e;
    plan_t plan;
    int a = slow_plan_member(&s->weights, &s->priors, &s->grid, &f, now,
                             cfg->policy.half_life_s, &plan);
    assert_int_equal(a, s->grid.new_member_action);
    assert_true(plan.per_week[push] == 0.5);

    action_grid_t argmax_only = s->grid;
    argmax_only.new_member_action = -1;
    double u[ACTION_GRID_MAX_ACTIONS];
    int greedy = slow_member_utilities(&s->weights, &s->priors, &argmax_only, &f, now,
                                       cfg->policy.half_life_s, &e, u);
    assert_true(greedy >= 0);
    assert_true(action_grid_total(&argmax_only, greedy) == 0.0);
    assert_true(u[greedy] > u[s->grid.new_member_action]);

    /* One organic visit is history: the argmax again. */
    f.visit_org = 1.0;
    a = slow_plan_member(&s->weights, &s->priors, &s->grid, &f, now, cfg->policy.half_life_s,
                         &plan);
    assert_int_equal(a, slow_member_utilities(&s->weights, &s->priors, &argmax_only, &f, now,
                                              cfg->policy.half_life_s, &e, NULL));
    assert_true(a != s->grid.new_member_action);
    config_release(cfg);
    config_errors_free(&errs);

    /* A default plan off the grid: no new-member action. */
    cfg = test_load_config("{\"slow\":{\"default_plan\":{\"push\":0.7}}}", &errs);
    assert_non_null(cfg);
    assert_int_equal(cfg->policy.slow.grid.new_member_action, -1);
    features_init(&f);
    f.n_channels = cfg->n_channels;
    s = &cfg->policy.slow;
    a = slow_plan_member(&s->weights, &s->priors, &s->grid, &f, now, cfg->policy.half_life_s,
                         &plan);
    assert_true(action_grid_total(&s->grid, a) == 0.0);
    config_release(cfg);
    config_errors_free(&errs);

    /* Another default on the grid is the new member's plan. */
    cfg = test_load_config("{\"slow\":{\"default_plan\":{\"push\":1,\"email\":0.5}}}",
                           &errs);
    assert_non_null(cfg);
    s = &cfg->policy.slow;
    a = slow_plan_member(&s->weights, &s->priors, &s->grid, &f, now, cfg->policy.half_life_s,
                         &plan);
    assert_true(plan.per_week[push] == 1.0);
    assert_true(plan.per_week[config_channel_index(cfg, "email", 5)] == 0.5);
    config_release(cfg);
    config_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shares_hold_within_two_percent_over_100k_members),
        cmocka_unit_test(test_assignment_is_stable_and_depends_on_the_salt),
        cmocka_unit_test(test_assignment_matches_golden_values),
        cmocka_unit_test(test_holdout_share_is_kept_and_only_grows),
        cmocka_unit_test(test_layers_with_different_salts_are_independent),
        cmocka_unit_test(test_arm_overrides_apply_to_their_layer_only),
        cmocka_unit_test(test_invalid_arms_are_reported_with_paths),
        cmocka_unit_test(test_quality_quantile_is_configured_and_validated),
        cmocka_unit_test(test_default_plan_is_the_planners_plan_for_a_new_member),
        cmocka_unit_test(test_only_a_member_without_history_is_planned_the_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
