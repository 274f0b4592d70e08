/*
 * test_plan_explore.c - plan-level exploration (src/core/plan_explore.c and
 * slow_plan_member_explore): which actions are neighbours, the logged
 * propensities, how often each is drawn, and what the plan carries.
 */
#include <math.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/core/plan_explore.h"
#include "notifd/core/slow_policy.h"
#include "notifd/lib/rng.h"

enum { PUSH = 0, EMAIL = 1 };

/* The grid these tests walk, fixed here so that a change of the default
 * grid does not move them: push 9 values x email 7. */
static int whole_grid(action_grid_t *g, int push, int email)
{
    static const double push_values[] = {0, 1, 2, 3, 4, 5, 7, 10, 14};
    static const double email_values[] = {0, 1, 2, 3, 4, 5, 7};
    const action_channel_spec_t specs[2] = {{push, "push", push_values, 9},
                                            {email, "email", email_values, 7}};
    return action_grid_build(g, specs, 2, NULL, 0);
}

/* The action with push value index ip and email value index ie on it. */
static int act(int ip, int ie)
{
    return ip * 7 + ie;
}

static void test_neighbours_move_one_channel_one_step(void **state)
{
    (void)state;
    action_grid_t g;
    assert_int_equal(whole_grid(&g, PUSH, EMAIL), 0);
    int nb[PLAN_EXPLORE_MAX_NEIGHBOURS];
    /* (push 2, email 1): push 1 and 3, email 0 and 2. */
    int k = plan_explore_neighbours(&g, act(2, 1), NULL, nb);
    assert_int_equal(k, 4);
    assert_int_equal(nb[0], act(1, 1));
    assert_int_equal(nb[1], act(3, 1));
    assert_int_equal(nb[2], act(2, 0));
    assert_int_equal(nb[3], act(2, 2));
    /* The grid's values, not +-1 message: push 7 sits between 5 and 10. */
    k = plan_explore_neighbours(&g, act(6, 0), NULL, nb);
    assert_int_equal(k, 3);
    assert_true(action_grid_value(&g, nb[0], 0) == 5.0);
    assert_true(action_grid_value(&g, nb[1], 0) == 10.0);
    assert_true(action_grid_value(&g, nb[2], 1) == 1.0);
    /* The zero action has only the two steps up; the top corner the two down. */
    assert_int_equal(plan_explore_neighbours(&g, 0, NULL, nb), 2);
    assert_int_equal(plan_explore_neighbours(&g, g.n_actions - 1, NULL, nb), 2);
    assert_int_equal(plan_explore_neighbours(&g, -1, NULL, nb), 0);
    assert_int_equal(plan_explore_neighbours(&g, g.n_actions, NULL, nb), 0);
}

static void test_neighbours_never_send_on_an_opted_out_channel(void **state)
{
    (void)state;
    action_grid_t g;
    assert_int_equal(whole_grid(&g, PUSH, EMAIL), 0);
    double u[ACTION_GRID_MAX_ACTIONS];
    for (int a = 0; a < g.n_actions; a++)
        u[a] = action_grid_value(&g, a, 1) > 0 ? -INFINITY : 1.0; /* email opted out */
    int nb[PLAN_EXPLORE_MAX_NEIGHBOURS];
    int k = plan_explore_neighbours(&g, act(3, 0), u, nb);
    assert_int_equal(k, 2);
    for (int j = 0; j < k; j++)
        assert_true(action_grid_value(&g, nb[j], 1) == 0.0);
    /* A NaN utility is no neighbour either. */
    u[act(2, 0)] = NAN;
    assert_int_equal(plan_explore_neighbours(&g, act(3, 0), u, nb), 1);
}

static void test_propensities_of_greedy_and_neighbours_sum_to_one(void **state)
{
    (void)state;
    action_grid_t g;
    assert_int_equal(whole_grid(&g, PUSH, EMAIL), 0);
    const double eps[] = {0.01, 0.1, 0.3, 0.5};
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) {
        for (int greedy = 0; greedy < g.n_actions; greedy++) {
            plan_choice_t c;
            plan_explore_choose(&g, greedy, NULL, eps[i], 0.99, 0.0, &c);
            assert_int_equal(c.action, greedy);
            double total = c.propensity;
            int nb[PLAN_EXPLORE_MAX_NEIGHBOURS];
            int k = plan_explore_neighbours(&g, greedy, NULL, nb);
            assert_int_equal(c.neighbours, k);
            for (int j = 0; j < k; j++) {
                plan_explore_choose(&g, greedy, NULL, eps[i], 0.0, (j + 0.5) / k, &c);
                assert_int_equal(c.action, nb[j]);
                assert_int_equal(c.greedy, greedy);
                total += c.propensity;
            }
            assert_true(fabs(total - 1.0) < 1e-12);
        }
    }
}

static void test_no_exploration_or_no_neighbour_is_certain(void **state)
{
    (void)state;
    action_grid_t g;
    assert_int_equal(whole_grid(&g, PUSH, EMAIL), 0);
    plan_choice_t c;
    plan_explore_choose(&g, act(2, 2), NULL, 0.0, 0.0, 0.0, &c);
    assert_int_equal(c.action, act(2, 2));
    assert_true(c.propensity == 1.0);
    /* Every neighbour opted out: the greedy action with certainty. */
    double u[ACTION_GRID_MAX_ACTIONS];
    for (int a = 0; a < g.n_actions; a++)
        u[a] = a == 0 ? 0.0 : -INFINITY;
    plan_explore_choose(&g, 0, u, 0.5, 0.0, 0.0, &c);
    assert_int_equal(c.action, 0);
    assert_int_equal(c.neighbours, 0);
    assert_true(c.propensity == 1.0);
    /* u_pick at the top of [0, 1) stays on the last neighbour. */
    plan_explore_choose(&g, act(2, 2), NULL, 0.5, 0.0, 0.9999999999999999, &c);
    assert_int_equal(c.action, act(2, 3));
}

/* Drawn with plan_explore_draws over many members, each action comes up as
 * often as its logged propensity says: the log is honest. */
static void test_draw_frequencies_match_the_logged_propensities(void **state)
{
    (void)state;
    action_grid_t g;
    assert_int_equal(whole_grid(&g, PUSH, EMAIL), 0);
    const int greedy = act(2, 1);
    const double eps = 0.2;
    const int n = 200000;
    int counts[ACTION_GRID_MAX_ACTIONS] = {0};
    double propensity[ACTION_GRID_MAX_ACTIONS] = {0};
    for (int i = 0; i < n; i++) {
        char member[32];
        int len = snprintf(member, sizeof member, "m%d", i);
        double ue, up;
        plan_explore_draws(7, member, (size_t)len, 1800000000, &ue, &up);
        assert_true(ue >= 0.0 && ue < 1.0 && up >= 0.0 && up < 1.0);
        plan_choice_t c;
        plan_explore_choose(&g, greedy, NULL, eps, ue, up, &c);
        counts[c.action]++;
        propensity[c.action] = c.propensity;
    }
    int drawn = 0;
    for (int a = 0; a < g.n_actions; a++) {
        if (counts[a] == 0)
            continue;
        drawn++;
        double share = (double)counts[a] / n;
        double sd = sqrt(propensity[a] * (1 - propensity[a]) / n);
        assert_true(fabs(share - propensity[a]) < 5 * sd);
    }
    assert_int_equal(drawn, 5); /* the greedy action and its 4 neighbours */
}

static void test_draws_depend_on_seed_member_and_time_only(void **state)
{
    (void)state;
    double a, b, c, d;
    plan_explore_draws(1, "ann", 3, 1800000000, &a, &b);
    plan_explore_draws(1, "ann", 3, 1800000000, &c, &d);
    assert_true(a == c && b == d);
    plan_explore_draws(1, "ann", 3, 1800000000 + 604800, &c, &d);
    assert_false(a == c && b == d); /* next week, a new draw */
    plan_explore_draws(2, "ann", 3, 1800000000, &c, &d);
    assert_false(a == c && b == d);
    plan_explore_draws(1, "bob", 3, 1800000000, &c, &d);
    assert_false(a == c && b == d);
}

/* Golden values: a change of the draw between releases would silently
 * re-randomise every member's plans and break a running evaluation. */
static void test_draws_are_pinned(void **state)
{
    (void)state;
    double a, b;
    plan_explore_draws(1, "ann", 3, 1800000000, &a, &b);
    assert_true(fabs(a - 0.33279834833592237) < 1e-15);
    assert_true(fabs(b - 0.3171570349012014) < 1e-15);
}

static void test_slow_plan_carries_propensity_and_greedy(void **state)
{
    (void)state;
    action_grid_t g;
    assert_int_equal(whole_grid(&g, PUSH, EMAIL), 0);
    slow_weights_t w;
    slow_weights_defaults(&w);
    slow_priors_t p;
    static const char *const names[] = {"push", "email"};
    slow_priors_defaults(&p, names, 2);
    member_features_t f;
    features_init(&f);
    const int64_t now = 1800000000;

    plan_t greedy_plan, plan;
    memset(&greedy_plan, 0, sizeof greedy_plan);
    int greedy = slow_plan_member(&w, &p, &g, &f, now, 28 * 86400.0, &greedy_plan);
    assert_true(greedy >= 0);

    /* explore_prob 0 is exactly the greedy planner. */
    memset(&plan, 0, sizeof plan);
    assert_int_equal(slow_plan_member_explore(&w, &p, &g, &f, now, 28 * 86400.0, 0.0, 0.0, 0.0,
                                              &plan, NULL, NULL),
                     greedy);
    assert_int_equal(plan.explore_neighbours, 0);
    assert_true(plan_action_propensity(&plan) == 1.0);
    assert_true(memcmp(plan.per_week, greedy_plan.per_week, sizeof plan.per_week) == 0);

    /* Not exploring this time: the greedy plan, propensity 1 - e. */
    plan_choice_t c;
    memset(&plan, 0, sizeof plan);
    assert_int_equal(slow_plan_member_explore(&w, &p, &g, &f, now, 28 * 86400.0, 0.1, 0.5, 0.0,
                                              &plan, NULL, &c),
                     greedy);
    assert_true(fabs(plan_action_propensity(&plan) - 0.9) < 1e-12);
    assert_true(plan.explore_neighbours == c.neighbours && c.neighbours > 0);

    /* Exploring: a neighbour, propensity e / K, the greedy plan kept. */
    memset(&plan, 0, sizeof plan);
    int a = slow_plan_member_explore(&w, &p, &g, &f, now, 28 * 86400.0, 0.1, 0.05, 0.0, &plan,
                                     NULL, &c);
    assert_true(a != greedy);
    assert_int_equal(c.greedy, greedy);
    assert_true(fabs(plan_action_propensity(&plan) - 0.1 / c.neighbours) < 1e-12);
    double moved = 0;
    for (int ch = 0; ch < 2; ch++) {
        assert_true(plan_greedy_per_week(&plan, ch) == greedy_plan.per_week[ch]);
        moved += plan.per_week[ch] != greedy_plan.per_week[ch];
    }
    assert_true(moved == 1.0); /* one channel moved */

    /* The gaps are U(greedy) - U(neighbour), in neighbour order: none
     * negative (greedy is the argmax), and the drawn one among them. */
    member_estimate_t e;
    memset(&plan, 0, sizeof plan);
    slow_plan_member_explore(&w, &p, &g, &f, now, 28 * 86400.0, 0.1, 0.05, 0.0, &plan, &e, &c);
    double u[ACTION_GRID_MAX_ACTIONS];
    utility_argmax(&w, &e, &g, u);
    int nb[PLAN_EXPLORE_MAX_NEIGHBOURS];
    int k = plan_explore_neighbours(&g, greedy, u, nb);
    assert_int_equal(plan.n_gaps, k);
    bool drawn_found = false;
    for (int j = 0; j < k; j++) {
        assert_true(plan.utility_gap[j] >= 0.0);
        assert_true(fabs(plan.utility_gap[j] - (u[greedy] - u[nb[j]])) < 1e-12);
        drawn_found |= nb[j] == c.action;
    }
    assert_true(drawn_found);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_neighbours_move_one_channel_one_step),
        cmocka_unit_test(test_neighbours_never_send_on_an_opted_out_channel),
        cmocka_unit_test(test_propensities_of_greedy_and_neighbours_sum_to_one),
        cmocka_unit_test(test_no_exploration_or_no_neighbour_is_certain),
        cmocka_unit_test(test_draw_frequencies_match_the_logged_propensities),
        cmocka_unit_test(test_draws_depend_on_seed_member_and_time_only),
        cmocka_unit_test(test_draws_are_pinned),
        cmocka_unit_test(test_slow_plan_carries_propensity_and_greedy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
