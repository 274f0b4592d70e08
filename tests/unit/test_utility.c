/*
 * test_utility.c - unit tests for the slow policy's utility and argmax
 * (src/core/utility.c) and for planning one member end to end
 * (src/core/slow_policy.c).
 *
 * The property tests pin the utility's shape (docs/slow-policy.md). Each runs over 10,000
 * deterministic pseudo-random members (fixed seed; half with the default
 * weights, half with random non-negative weights) and over a sweep of the
 * varied parameter, on the default 2-channel grid, and checks what
 * docs/slow-policy.md proves:
 * - raising message_cost never raises the total (or cost-weighted) volume;
 * - a prohibitive cost gives the zero action;
 * - a higher open probability never lowers that channel's volume; without
 *   cross-channel fatigue no engagement increase lowers any volume;
 * - a higher lift never lowers expected opens;
 * - a higher opt-out hazard never raises that channel's volume, and a rise
 *   on every channel never raises the total;
 * - U is concave in each channel's volume on the (unevenly spaced) grid.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "notifd/lib/hash.h"
#include "notifd/core/slow_policy.h"
#include "notifd/core/utility.h"

#define DAY 86400.0
#define HALF_LIFE (28.0 * DAY)
#define NOW 1700000000
#define N_MEMBERS 10000
#define PUSH 0
#define EMAIL 1

static const char *const channels[] = {"push", "email", "in_app"};

static double draw(uint64_t *ctr, double lo, double hi)
{
    return lo + (hi - lo) * hash_to_unit(hash_mix64((*ctr)++));
}

static void random_estimate(member_estimate_t *e, uint64_t *ctr)
{
    memset(e, 0, sizeof(*e));
    e->n_channels = 3;
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++) {
        e->ch[c].available = true;
        e->ch[c].p_open = draw(ctr, 0.005, 0.5);
        e->ch[c].fatigue = draw(ctr, 0.0, 1.0);
        e->ch[c].dismiss_rate = draw(ctr, 0.0, 0.3);
        e->ch[c].unsub_hazard = draw(ctr, 0.0, 0.02);
    }
    e->visit_rate = draw(ctr, 0.0, 3.0);
    e->visits_per_open = draw(ctr, 0.0, 3.0);
    e->lift = draw(ctr, 0.0, 1.5);
}

/* Member m's weights: the defaults for even m, random non-negative for odd. */
static void member_weights(slow_weights_t *w, int m, uint64_t *ctr)
{
    slow_weights_defaults(w);
    if (m % 2 == 0)
        return;
    w->incremental_visit = draw(ctr, 0.2, 2.0);
    w->open = draw(ctr, 0.0, 0.3);
    w->fatigue = draw(ctr, 0.0, 0.05);
    w->cross_fatigue = draw(ctr, 0.0, 2.0);
    w->optout = draw(ctr, 0.0, 20.0);
    w->message_cost = draw(ctr, 0.0, 0.05);
}

static void default_grid(action_grid_t *g)
{
    assert_int_equal(action_grid_defaults(g, PUSH, EMAIL), 0);
}

static double volume(const action_grid_t *g, int action, int k)
{
    return action_grid_value(g, action, k);
}

/* Expected opens per week of an action, computed independently of utility.c. */
static double expected_opens(const member_estimate_t *e, const action_grid_t *g, int a)
{
    double opens = 0;
    for (int k = 0; k < g->n_channels; k++) {
        const channel_estimate_t *ce = &e->ch[g->channel[k]];
        double n = volume(g, a, k);
        double curve = ce->fatigue > 1e-12
                           ? (1 - exp(-ce->fatigue * n)) / (1 - exp(-ce->fatigue))
                           : n;
        opens += ce->p_open * curve;
    }
    return opens;
}

static void test_weight_defaults_pass_check(void **state)
{
    (void)state;
    slow_weights_t w;
    slow_weights_defaults(&w);
    char err[128] = "";
    assert_int_equal(slow_weights_check(&w, err, sizeof(err)), 0);
    w.message_cost = -0.1;
    assert_int_equal(slow_weights_check(&w, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "message_cost"));
    slow_weights_defaults(&w);
    w.channel_cost[3] = NAN;
    assert_int_equal(slow_weights_check(&w, err, sizeof(err)), -1);
}

static void test_zero_action_has_zero_utility(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 1;
    for (int m = 0; m < 1000; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        assert_true(utility_evaluate(&w, &e, &g, 0) == 0.0);
    }
}

static void test_argmax_agrees_with_evaluate_and_brute_force(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 2;
    for (int m = 0; m < 2000; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        double u[ACTION_GRID_MAX_ACTIONS];
        int chosen = utility_argmax(&w, &e, &g, u);
        double best = -INFINITY;
        for (int a = 0; a < g.n_actions; a++) {
            double ev = utility_evaluate(&w, &e, &g, a);
            assert_true(u[a] == ev); /* bit for bit */
            best = fmax(best, ev);
        }
        int expect = -1;
        for (int a = 0; a < g.n_actions; a++)
            if (u[a] >= best - UTILITY_TIE_EPS &&
                (expect < 0 || g.total[a] < g.total[expect]))
                expect = a;
        assert_int_equal(chosen, expect);
        assert_int_equal(utility_argmax(&w, &e, &g, NULL), chosen);
    }
}

static void test_ties_go_to_the_zero_action_when_nothing_matters(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    slow_weights_t w;
    memset(&w, 0, sizeof(w)); /* every action has U = 0 */
    member_estimate_t e;
    uint64_t ctr = 3;
    random_estimate(&e, &ctr);
    double u[ACTION_GRID_MAX_ACTIONS];
    assert_int_equal(utility_argmax(&w, &e, &g, u), 0);
    assert_true(u[62] == 0.0);
}

static void test_ties_at_equal_volume_go_to_the_lower_index(void **state)
{
    (void)state;
    /* Two identical channels on {0,1} x {0,1}: U(1,0) == U(0,1) > U(0,0),
     * and strong cross-channel fatigue makes (1,1) worse. (0,1) is index 1,
     * (1,0) index 2. */
    const double v[] = {0, 1};
    const action_channel_spec_t s[] = {{0, "a", v, 2}, {1, "b", v, 2}};
    action_grid_t g;
    assert_int_equal(action_grid_build(&g, s, 2, NULL, 0), 0);
    member_estimate_t e;
    memset(&e, 0, sizeof(e));
    for (int c = 0; c < 2; c++) {
        e.ch[c].available = true;
        e.ch[c].p_open = 0.5;
        e.ch[c].fatigue = 0.5;
    }
    e.lift = 1;
    slow_weights_t w;
    slow_weights_defaults(&w);
    w.fatigue = 1;
    w.cross_fatigue = 0.8;
    double u[4];
    int a = utility_argmax(&w, &e, &g, u);
    assert_true(u[1] == u[2]);
    assert_true(u[1] > u[0] && u[1] > u[3]);
    assert_int_equal(a, 1);
}

static void test_raising_message_cost_never_raises_total_volume(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 4;
    int changed = 0;
    for (int m = 0; m < N_MEMBERS; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        double prev = INFINITY;
        for (int step = 0; step <= 40; step++) {
            w.message_cost = 0.005 * step;
            double total = g.total[utility_argmax(&w, &e, &g, NULL)];
            assert_true(total <= prev);
            if (total < prev && step > 0)
                changed++;
            prev = total;
        }
    }
    assert_true(changed > N_MEMBERS); /* the sweep does move plans */
}

static void test_raising_message_cost_never_raises_cost_weighted_volume(void **state)
{
    (void)state;
    /* With unequal per-channel multipliers the guarantee is on
     * sum_c m_c * n_c, the volume the cost term measures. */
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 5;
    for (int m = 0; m < N_MEMBERS; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        w.channel_cost[PUSH] = draw(&ctr, 0.2, 3.0);
        w.channel_cost[EMAIL] = draw(&ctr, 0.2, 3.0);
        double prev = INFINITY;
        for (int step = 0; step <= 40; step++) {
            w.message_cost = 0.005 * step;
            int a = utility_argmax(&w, &e, &g, NULL);
            double weighted = w.channel_cost[PUSH] * volume(&g, a, 0) +
                              w.channel_cost[EMAIL] * volume(&g, a, 1);
            assert_true(weighted <= prev + 1e-12);
            prev = weighted;
        }
    }
}

static void test_prohibitive_cost_gives_the_zero_action(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 6;
    for (int m = 0; m < N_MEMBERS; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        w.message_cost = 1e3;
        assert_int_equal(utility_argmax(&w, &e, &g, NULL), 0);
    }
}

static void test_more_open_probability_never_lowers_own_channel_volume(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 7;
    int changed = 0;
    for (int m = 0; m < N_MEMBERS; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        for (int k = 0; k < g.n_channels; k++) {
            member_estimate_t x = e;
            double prev = -1;
            for (int step = 0; step <= 20; step++) {
                x.ch[g.channel[k]].p_open = 0.005 + 0.03 * step;
                double n = volume(&g, utility_argmax(&w, &x, &g, NULL), k);
                assert_true(n >= prev);
                if (n > prev && step > 0)
                    changed++;
                prev = n;
            }
        }
    }
    assert_true(changed > N_MEMBERS);
}

static void test_more_lift_never_lowers_expected_opens(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 8;
    for (int m = 0; m < N_MEMBERS; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        double prev = -1;
        for (int step = 0; step <= 20; step++) {
            e.lift = 0.1 * step;
            double opens = expected_opens(&e, &g, utility_argmax(&w, &e, &g, NULL));
            assert_true(opens >= prev - 1e-12);
            prev = opens;
        }
    }
}

static void test_without_cross_fatigue_more_engagement_never_lowers_any_volume(void **state)
{
    (void)state;
    /* With cross_fatigue = 0 the utility separates by channel, so the
     * guarantee is per channel and for the total, for p and for lift. */
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 9;
    for (int m = 0; m < N_MEMBERS; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        w.cross_fatigue = 0;
        double prev[2] = {-1, -1};
        for (int step = 0; step <= 15; step++) {
            member_estimate_t x = e;
            x.lift = 0.1 * step;
            int a = utility_argmax(&w, &x, &g, NULL);
            for (int k = 0; k < 2; k++) {
                assert_true(volume(&g, a, k) >= prev[k]);
                prev[k] = volume(&g, a, k);
            }
        }
        double prev_total = -1;
        for (int step = 0; step <= 15; step++) {
            member_estimate_t x = e;
            x.ch[PUSH].p_open = 0.005 + 0.03 * step;
            double total = g.total[utility_argmax(&w, &x, &g, NULL)];
            assert_true(total >= prev_total);
            prev_total = total;
        }
    }
}

static void test_higher_optout_hazard_never_raises_own_channel_volume(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 10;
    int changed = 0;
    for (int m = 0; m < N_MEMBERS; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        for (int k = 0; k < g.n_channels; k++) {
            member_estimate_t x = e;
            double prev = INFINITY;
            for (int step = 0; step <= 20; step++) {
                x.ch[g.channel[k]].unsub_hazard = 0.0025 * step;
                double n = volume(&g, utility_argmax(&w, &x, &g, NULL), k);
                assert_true(n <= prev);
                if (n < prev && step > 0)
                    changed++;
                prev = n;
            }
        }
    }
    assert_true(changed > N_MEMBERS / 2);
}

static void test_higher_optout_hazard_everywhere_never_raises_total_volume(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 11;
    for (int m = 0; m < N_MEMBERS; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        double prev = INFINITY;
        for (int step = 0; step <= 20; step++) {
            member_estimate_t x = e;
            for (int k = 0; k < g.n_channels; k++)
                x.ch[g.channel[k]].unsub_hazard += 0.0025 * step;
            double total = g.total[utility_argmax(&w, &x, &g, NULL)];
            assert_true(total <= prev);
            prev = total;
        }
    }
}

static void test_utility_is_concave_in_each_channel_volume(void **state)
{
    (void)state;
    /* Marginal utility per message between consecutive grid values never
     * rises, for every channel and every value of the other channel. */
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 12;
    for (int m = 0; m < N_MEMBERS; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        double u[ACTION_GRID_MAX_ACTIONS];
        utility_argmax(&w, &e, &g, u);
        const int n_push = g.n_values[0], n_email = g.n_values[1];
        for (int j = 0; j < n_email; j++) { /* push varies */
            double prev_slope = INFINITY;
            for (int i = 0; i + 1 < n_push; i++) {
                double slope = (u[(i + 1) * n_email + j] - u[i * n_email + j]) /
                               (g.values[0][i + 1] - g.values[0][i]);
                assert_true(slope <= prev_slope + 1e-12);
                prev_slope = slope;
            }
        }
        for (int i = 0; i < n_push; i++) { /* email varies */
            double prev_slope = INFINITY;
            for (int j = 0; j + 1 < n_email; j++) {
                double slope = (u[i * n_email + j + 1] - u[i * n_email + j]) /
                               (g.values[1][j + 1] - g.values[1][j]);
                assert_true(slope <= prev_slope + 1e-12);
                prev_slope = slope;
            }
        }
    }
}

static void test_opted_out_channel_gets_no_messages(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 13;
    for (int m = 0; m < 1000; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        w.message_cost = 0; /* sending anywhere else is attractive */
        e.ch[EMAIL].available = false;
        double u[ACTION_GRID_MAX_ACTIONS];
        int a = utility_argmax(&w, &e, &g, u);
        assert_float_equal(volume(&g, a, 1), 0, 0);
        assert_true(isinf(u[1]) && u[1] < 0);
    }
}

/* The parts the explain op shows add up to the utility the planner
 * maximises, the total is that utility bit for bit, and each part has the
 * sign its name promises; checked against an independent computation of
 * the reward terms. */
static void test_parts_add_up_to_the_utility(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 21;
    for (int m = 0; m < 2000; m++) {
        member_estimate_t e;
        slow_weights_t w;
        random_estimate(&e, &ctr);
        member_weights(&w, m, &ctr);
        double u[ACTION_GRID_MAX_ACTIONS];
        (void)utility_argmax(&w, &e, &g, u);
        for (int a = 0; a < g.n_actions; a++) {
            utility_parts_t p;
            utility_parts(&w, &e, &g, a, &p);
            assert_true(p.total == u[a]); /* bit for bit */
            double sum = p.visits + p.opens + p.fatigue + p.cross_fatigue + p.optout + p.cost;
            assert_float_equal(sum, p.total, 1e-9 * (1.0 + fabs(p.total)));
            assert_true(p.visits >= 0 && p.opens >= 0);
            assert_true(p.fatigue <= 0 && p.cross_fatigue <= 0 && p.optout <= 0 && p.cost <= 0);
            assert_false(p.optout_blocked);
            double opens = expected_opens(&e, &g, a);
            assert_float_equal(p.opens, w.open * opens, 1e-9);
            assert_float_equal(p.visits, w.incremental_visit * e.lift * opens, 1e-9);
            double n = 0;
            for (int k = 0; k < g.n_channels; k++)
                n += volume(&g, a, k) * w.channel_cost[g.channel[k]];
            assert_float_equal(p.cost, -w.message_cost * n, 1e-12);
        }
        utility_parts_t zero;
        utility_parts(&w, &e, &g, 0, &zero);
        assert_true(zero.total == 0.0 && zero.visits == 0.0 && zero.cost == 0.0);
    }
}

static void test_parts_of_an_opted_out_channel(void **state)
{
    (void)state;
    action_grid_t g;
    default_grid(&g);
    uint64_t ctr = 22;
    member_estimate_t e;
    slow_weights_t w;
    random_estimate(&e, &ctr);
    slow_weights_defaults(&w);
    e.ch[EMAIL].available = false;
    for (int a = 0; a < g.n_actions; a++) {
        utility_parts_t p;
        utility_parts(&w, &e, &g, a, &p);
        assert_true(p.total == utility_evaluate(&w, &e, &g, a));
        assert_true(p.optout_blocked == (volume(&g, a, 1) > 0));
        if (p.optout_blocked)
            assert_true(isinf(p.total) && p.total < 0);
    }
}

/* slow_member_utilities() is what slow_plan_member() plans from. */
static void test_member_utilities_pick_the_planned_action(void **state)
{
    (void)state;
    slow_weights_t w;
    slow_priors_t p;
    action_grid_t g;
    slow_weights_defaults(&w);
    slow_priors_defaults(&p, channels, 3);
    default_grid(&g);
    member_features_t f;
    features_init(&f);
    member_estimate_t e;
    double u[ACTION_GRID_MAX_ACTIONS];
    int a = slow_member_utilities(&w, &p, &g, &f, NOW, HALF_LIFE, &e, u);
    plan_t plan;
    memset(&plan, 0, sizeof plan);
    assert_int_equal(slow_plan_member(&w, &p, &g, &f, NOW, HALF_LIFE, &plan), a);
    for (int b = 0; b < g.n_actions; b++)
        assert_true(u[b] <= u[a] + UTILITY_TIE_EPS);
    assert_true(u[a] == utility_evaluate(&w, &e, &g, a));
}

/* Steady-state decayed features of a member who, for a year, got push_wk and
 * email_wk messages a week, opened them at open_rate, dismissed pushes at
 * dismiss_rate, opted out at unsub_rate per message, visited visits_day
 * times a day organically, and after an open came back `caused` times, a
 * visit that counts only when no organic one was due within the day
 * (e^(-visits_day)): a frequent visitor's caused visits mostly replace visits
 * they would have made anyway. */
static void steady_member(member_features_t *f, double push_wk, double email_wk,
                          double open_rate, double dismiss_rate, double unsub_rate,
                          double visits_day, double caused)
{
    const char *fields[] = {"push_sent", "push_open", "push_dismiss", "push_unsub_n",
                            "email_sent", "email_open", "visit_org", "visit_attr",
                            "first_seen", "updated_at"};
    double tau = HALF_LIFE / log(2.0) / DAY; /* decayed days per year ~ tau */
    double ps = push_wk / 7 * tau, es = email_wk / 7 * tau;
    double opens = (ps + es) * open_rate;
    double vals[10] = {ps, ps * open_rate, ps * dismiss_rate, ps * unsub_rate, es,
                       es * open_rate, fmax(0, visits_day * (tau - opens)),
                       opens * (caused * exp(-visits_day) + visits_day), NOW - 365 * DAY, NOW};
    char buf[10][64];
    const char *values[10];
    size_t flens[10], vlens[10];
    for (int i = 0; i < 10; i++) {
        snprintf(buf[i], sizeof(buf[i]), "%.17g", vals[i]);
        values[i] = buf[i];
        flens[i] = strlen(fields[i]);
        vlens[i] = strlen(buf[i]);
    }
    features_init(f);
    assert_int_equal(features_parse_hash(f, channels, 3, fields, flens, values, vlens, 10), 0);
}

static void defaults(slow_weights_t *w, slow_priors_t *p, action_grid_t *g)
{
    slow_weights_defaults(w);
    slow_priors_defaults(p, channels, 3);
    default_grid(g);
}

static void test_typical_member_gets_a_plan_that_is_neither_zero_nor_max(void **state)
{
    (void)state;
    slow_weights_t w;
    slow_priors_t p;
    action_grid_t g;
    defaults(&w, &p, &g);
    member_features_t f;
    steady_member(&f, 3, 3, 0.15, 0.1, 0.002, 0.3, 0.3);
    plan_t plan;
    int a = slow_plan_member(&w, &p, &g, &f, NOW, HALF_LIFE, &plan);
    assert_true(a > 0 && a < g.n_actions - 1);
    assert_true(plan.per_week[PUSH] < 14 || plan.per_week[EMAIL] < 7);
    /* A member who opens a quarter of both channels gets both, as does one
     * who opens 15% (half a message a week each, above); at 9% a message
     * is worth less than it costs under the default message cost. */
    steady_member(&f, 3, 3, 0.25, 0.1, 0.002, 0.3, 0.3);
    a = slow_plan_member(&w, &p, &g, &f, NOW, HALF_LIFE, &plan);
    assert_true(a > 0 && a < g.n_actions - 1);
    assert_true(plan.per_week[PUSH] > 0 && plan.per_week[EMAIL] > 0);

    steady_member(&f, 3, 3, 0.09, 0.1, 0.002, 0.3, 0.3);
    assert_int_equal(slow_plan_member(&w, &p, &g, &f, NOW, HALF_LIFE, &plan), 0);

    /* and so is a member with no history at all, on the priors alone: the
     * priors' first message is worth less than the default message cost.
     * (The configured grid plans such a member the default plan instead:
     * new_member_action, test_experiments.c.) */
    features_init(&f);
    assert_int_equal(g.new_member_action, -1);
    assert_int_equal(slow_plan_member(&w, &p, &g, &f, NOW, HALF_LIFE, &plan), 0);
    /* Well below that cost the priors plan them something, but not the
     * most. */
    w.message_cost = 0.02;
    a = slow_plan_member(&w, &p, &g, &f, NOW, HALF_LIFE, &plan);
    assert_true(a > 0 && a < g.n_actions - 1);
    assert_true(g.total[a] >= 0.5 && g.total[a] <= 10);
}

static void test_engaged_member_gets_a_larger_plan_than_a_fatigued_one(void **state)
{
    (void)state;
    slow_weights_t w;
    slow_priors_t p;
    action_grid_t g;
    defaults(&w, &p, &g);
    member_features_t engaged, fatigued;
    steady_member(&engaged, 5, 5, 0.25, 0.05, 0.001, 0.1, 0.6);
    steady_member(&fatigued, 5, 5, 0.03, 0.4, 0.02, 0.1, 0.3);
    plan_t pe, pf;
    slow_plan_member(&w, &p, &g, &engaged, NOW, HALF_LIFE, &pe);
    slow_plan_member(&w, &p, &g, &fatigued, NOW, HALF_LIFE, &pf);
    assert_true(pe.per_week[PUSH] > pf.per_week[PUSH]);
    assert_true(pe.per_week[PUSH] + pe.per_week[EMAIL] >
                pf.per_week[PUSH] + pf.per_week[EMAIL]);
}

static void test_casual_member_gets_a_larger_plan_than_a_daily_visitor(void **state)
{
    (void)state;
    /* Same response to messages; the daily visitor would come anyway. */
    slow_weights_t w;
    slow_priors_t p;
    action_grid_t g;
    defaults(&w, &p, &g);
    member_features_t casual, daily;
    steady_member(&casual, 3, 3, 0.12, 0.1, 0.002, 1.0 / 30, 0.5);
    steady_member(&daily, 3, 3, 0.12, 0.1, 0.002, 1.5, 0.5);
    plan_t pc, pd;
    slow_plan_member(&w, &p, &g, &casual, NOW, HALF_LIFE, &pc);
    slow_plan_member(&w, &p, &g, &daily, NOW, HALF_LIFE, &pd);
    assert_true(pc.per_week[PUSH] + pc.per_week[EMAIL] >
                pd.per_week[PUSH] + pd.per_week[EMAIL]);
}

static void test_plan_member_fills_the_plan_and_leaves_caller_fields(void **state)
{
    (void)state;
    slow_weights_t w;
    slow_priors_t p;
    action_grid_t g;
    defaults(&w, &p, &g);
    member_features_t f;
    steady_member(&f, 3, 3, 0.09, 0.1, 0.002, 0.3, 0.3);
    plan_t plan;
    memset(&plan, 0, sizeof(plan));
    plan.version = 42;
    plan.valid_until = 99;
    snprintf(plan.source, sizeof(plan.source), "caller");
    plan.per_week[2] = 5; /* in_app: not planned */
    member_estimate_t e;
    int a = slow_plan_member_ex(&w, &p, &g, &f, NOW, HALF_LIFE, &plan, &e);
    assert_int_equal(plan.action, a);
    assert_int_equal(plan.planned_mask, 0x3);
    assert_float_equal(plan.per_week[PUSH], volume(&g, a, 0), 0);
    assert_float_equal(plan.per_week[EMAIL], volume(&g, a, 1), 0);
    assert_float_equal(plan.per_week[2], 0, 0);
    assert_int_equal(plan.version, 42);
    assert_int_equal(plan.valid_until, 99);
    assert_string_equal(plan.source, "caller");
    assert_int_equal(utility_argmax(&w, &e, &g, NULL), a);
}

static void test_plan_member_decays_a_copy_of_the_raw_features(void **state)
{
    (void)state;
    slow_weights_t w;
    slow_priors_t p;
    action_grid_t g;
    defaults(&w, &p, &g);
    member_features_t raw;
    steady_member(&raw, 3, 3, 0.3, 0.05, 0.001, 0.05, 0.6);
    raw.updated_at = NOW - 3 * (int64_t)HALF_LIFE; /* read long after writing */
    member_features_t before = raw;
    plan_t plan;
    member_estimate_t e;
    slow_plan_member_ex(&w, &p, &g, &raw, NOW, HALF_LIFE, &plan, &e);
    assert_memory_equal(&raw, &before, sizeof(raw));

    member_features_t decayed = raw;
    features_decay_to(&decayed, NOW, HALF_LIFE);
    member_estimate_t expect;
    estimate_member(&expect, &decayed, &p, NOW, HALF_LIFE);
    assert_float_equal(e.ch[PUSH].p_open, expect.ch[PUSH].p_open, 0);
    assert_float_equal(e.visit_rate, expect.visit_rate, 0);
    /* decayed 8x, the history weighs less than undecayed */
    member_estimate_t fresh;
    estimate_member(&fresh, &raw, &p, NOW, HALF_LIFE);
    assert_true(e.ch[PUSH].data_weight < fresh.ch[PUSH].data_weight);
}

static void test_plan_member_rejects_an_empty_grid(void **state)
{
    (void)state;
    slow_weights_t w;
    slow_priors_t p;
    action_grid_t g;
    defaults(&w, &p, &g);
    memset(&g, 0, sizeof(g));
    member_features_t f;
    features_init(&f);
    plan_t plan;
    assert_int_equal(slow_plan_member(&w, &p, &g, &f, NOW, HALF_LIFE, &plan), -1);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weight_defaults_pass_check),
        cmocka_unit_test(test_zero_action_has_zero_utility),
        cmocka_unit_test(test_argmax_agrees_with_evaluate_and_brute_force),
        cmocka_unit_test(test_ties_go_to_the_zero_action_when_nothing_matters),
        cmocka_unit_test(test_ties_at_equal_volume_go_to_the_lower_index),
        cmocka_unit_test(test_raising_message_cost_never_raises_total_volume),
        cmocka_unit_test(test_raising_message_cost_never_raises_cost_weighted_volume),
        cmocka_unit_test(test_prohibitive_cost_gives_the_zero_action),
        cmocka_unit_test(test_more_open_probability_never_lowers_own_channel_volume),
        cmocka_unit_test(test_more_lift_never_lowers_expected_opens),
        cmocka_unit_test(test_without_cross_fatigue_more_engagement_never_lowers_any_volume),
        cmocka_unit_test(test_higher_optout_hazard_never_raises_own_channel_volume),
        cmocka_unit_test(test_higher_optout_hazard_everywhere_never_raises_total_volume),
        cmocka_unit_test(test_utility_is_concave_in_each_channel_volume),
        cmocka_unit_test(test_opted_out_channel_gets_no_messages),
        cmocka_unit_test(test_parts_add_up_to_the_utility),
        cmocka_unit_test(test_parts_of_an_opted_out_channel),
        cmocka_unit_test(test_member_utilities_pick_the_planned_action),
        cmocka_unit_test(test_typical_member_gets_a_plan_that_is_neither_zero_nor_max),
        cmocka_unit_test(test_engaged_member_gets_a_larger_plan_than_a_fatigued_one),
        cmocka_unit_test(test_casual_member_gets_a_larger_plan_than_a_daily_visitor),
        cmocka_unit_test(test_plan_member_fills_the_plan_and_leaves_caller_fields),
        cmocka_unit_test(test_plan_member_decays_a_copy_of_the_raw_features),
        cmocka_unit_test(test_plan_member_rejects_an_empty_grid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
