/*
 * test_pacing.c - unit tests for the pacing coin (src/core/pacing.c): the
 * probability each strategy gives, day-of-week shaping, budget exhaustion,
 * the hard cap arithmetic, the opportunities EWMA, the quality quantile rule,
 * and a seeded simulation of four weeks comparing the strategies.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "test_util.h"

#include "notifd/core/pacing.h"
#include "notifd/lib/rng.h"
#include "notifd/core/types.h"

#define DAY 86400

static pacing_params_t params_for(pacing_strategy_t strategy)
{
    pacing_params_t p;
    pacing_params_defaults(&p);
    p.strategy = strategy;
    return p;
}

/* A plan of 5/week for a member with 70 opportunities/week, at `s` seconds
 * into the week, nothing sent yet. */
static pacing_input_t input_at(int64_t s)
{
    pacing_input_t in = {0};
    in.per_week = 5.0;
    in.expected_opportunities = 70.0;
    in.seconds_into_week = s;
    return in;
}

static void set_profile(pacing_params_t *p, const double w[7])
{
    p->has_profile = true;
    for (int d = 0; d < 7; d++)
        p->profile[d] = w[d];
}

static void test_strategy_names_round_trip(void **state)
{
    (void)state;
    for (int s = PACING_UNIFORM; s <= PACING_QUALITY; s++)
        assert_int_equal(pacing_strategy_parse(pacing_strategy_name((pacing_strategy_t)s)), s);
    assert_int_equal(pacing_strategy_parse("budget"), PACING_BUDGET);
    assert_int_equal(pacing_strategy_parse("Budget"), -1);
    assert_int_equal(pacing_strategy_parse(NULL), -1);
}

static void test_quantile_names_round_trip(void **state)
{
    (void)state;
    for (int q = PACING_QUANTILE_RATE; q <= PACING_QUANTILE_BUDGET; q++)
        assert_int_equal(pacing_quantile_parse(pacing_quantile_name((pacing_quantile_t)q)), q);
    assert_int_equal(pacing_quantile_parse("rate"), PACING_QUANTILE_RATE);
    assert_int_equal(pacing_quantile_parse("quality"), -1);
    assert_int_equal(pacing_quantile_parse(NULL), -1);
    pacing_params_t p = params_for(PACING_QUALITY);
    assert_int_equal(p.quality_quantile, PACING_QUANTILE_BUDGET);
    p.quality_quantile = (pacing_quantile_t)7;
    assert_non_null(pacing_params_check(&p));
}

static void test_defaults_pass_check_and_bad_params_fail(void **state)
{
    (void)state;
    pacing_params_t p = params_for(PACING_BUDGET);
    assert_null(pacing_params_check(&p));
    p.prior_opportunities_per_week = 0.0;
    assert_non_null(pacing_params_check(&p));
    p = params_for(PACING_BUDGET);
    p.ewma_alpha = 1.5;
    assert_non_null(pacing_params_check(&p));
    p = params_for(PACING_BUDGET);
    set_profile(&p, (const double[7]){0, 0, 0, 0, 0, 0, 0});
    assert_non_null(pacing_params_check(&p));
    set_profile(&p, (const double[7]){1, -1, 1, 1, 1, 1, 1});
    assert_non_null(pacing_params_check(&p));
}

static void test_uniform_sends_when_the_schedule_is_ahead_of_the_week(void **state)
{
    (void)state;
    const pacing_params_t p = params_for(PACING_UNIFORM);
    /* Phase 0.3, plan 5: the n-th send is due once 5 * F passes n - 0.3,
     * F the share of the week elapsed: at F = 0.14, 0.34, 0.54, ... */
    pacing_input_t in = input_at(0);
    in.member_phase = 0.3;
    in.week_index = 2900;
    const int64_t due1 = (int64_t)(0.14 * NOTIFD_SECONDS_PER_WEEK);
    in.seconds_into_week = due1 - 60;
    assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
    in.seconds_into_week = due1 + 60;
    assert_close(pacing_send_probability(&p, &in), 1.0, 0.0);
    in.sent_this_week = 1; /* that send went out: nothing more is due */
    assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
    /* Held back until Thursday (quiet hours, no opportunity): it sends at
     * once until the week has caught up, and never ahead of it. */
    in.seconds_into_week = 3 * DAY + 12 * 3600; /* F = 0.5: 2 due */
    assert_close(pacing_uniform_due(&p, 5.0, 2900, in.seconds_into_week, 0.3), 2.0, 0.0);
    assert_close(pacing_send_probability(&p, &in), 1.0, 0.0);
    in.sent_this_week = 2;
    assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
    /* Expected opportunities do not matter: the schedule is in time. */
    in.expected_opportunities = 1e6;
    in.sent_this_week = 1;
    assert_close(pacing_send_probability(&p, &in), 1.0, 0.0);
}

static void test_uniform_week_counts_are_the_plan(void **state)
{
    (void)state;
    const pacing_params_t p = params_for(PACING_UNIFORM);
    /* Whatever the phase, a whole plan is due in full every week, and a
     * fractional one alternates around its mean (0.5: every other week). */
    const double plans[] = {5.0, 1.0, 0.5, 1.5, 2.25};
    for (size_t k = 0; k < sizeof plans / sizeof plans[0]; k++) {
        for (int ph = 0; ph < 10; ph++) {
            double total = 0.0;
            for (int64_t w = 2900; w < 2940; w++) {
                double due = pacing_uniform_due(&p, plans[k], w, NOTIFD_SECONDS_PER_WEEK - 1,
                                                ph / 10.0 + 0.05);
                assert_true(due == floor(plans[k]) || due == ceil(plans[k]));
                total += due;
            }
            assert_close(total / 40.0, plans[k], 1.0 / 40.0 + 1e-12);
        }
    }
    /* Sends due by the week's end, then: the schedule is played out by
     * opportunities every 2.4 hours, each sending when one is due. */
    pacing_input_t in = input_at(0);
    in.member_phase = 0.77;
    for (int64_t w = 2900; w < 2904; w++) {
        in.week_index = w;
        in.sent_this_week = 0;
        for (int64_t s = 0; s < NOTIFD_SECONDS_PER_WEEK; s += 8640) {
            in.seconds_into_week = s;
            if (pacing_send_probability(&p, &in) >= 1.0)
                in.sent_this_week++;
        }
        assert_int_equal(in.sent_this_week, 5);
    }
}

static void test_unknown_opportunities_use_the_prior(void **state)
{
    (void)state;
    pacing_params_t p = params_for(PACING_BUDGET);
    p.prior_opportunities_per_week = 20.0;
    pacing_input_t in = input_at(0);
    in.expected_opportunities = 0.0;
    assert_close(pacing_send_probability(&p, &in), 5.0 / 20.0, 1e-15);
    in.expected_opportunities = NAN;
    assert_close(pacing_send_probability(&p, &in), 5.0 / 20.0, 1e-15);
}

static void test_budget_clamps_to_one(void **state)
{
    (void)state;
    const pacing_params_t p = params_for(PACING_BUDGET);
    pacing_input_t in = input_at(0);
    in.per_week = 14.0;
    in.expected_opportunities = 7.0;
    assert_close(pacing_send_probability(&p, &in), 1.0, 0.0);
}

static void test_empty_or_invalid_plan_never_sends(void **state)
{
    (void)state;
    for (int s = PACING_UNIFORM; s <= PACING_QUALITY; s++) {
        const pacing_params_t p = params_for((pacing_strategy_t)s);
        pacing_input_t in = input_at(0);
        in.per_week = 0.0;
        assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
        in.per_week = -3.0;
        assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
        in.per_week = NAN;
        assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
    }
}

static void test_profile_zero_weight_day_gets_no_sends(void **state)
{
    (void)state;
    for (int s = PACING_UNIFORM; s <= PACING_QUALITY; s++) {
        pacing_params_t p = params_for((pacing_strategy_t)s);
        set_profile(&p, (const double[7]){1, 1, 1, 1, 1, 1, 0}); /* no Sundays */
        const pacing_input_t sunday = input_at(6 * DAY + 3600);
        const pacing_input_t saturday = input_at(5 * DAY + 3600);
        assert_close(pacing_send_probability(&p, &sunday), 0.0, 0.0);
        assert_true(pacing_send_probability(&p, &saturday) > 0.0);
    }
}

static void test_profile_is_normalised_to_mean_one(void **state)
{
    (void)state;
    /* The plain weighted coin: quality's rate without a score history. */
    pacing_params_t a = params_for(PACING_QUALITY);
    a.quality_quantile = PACING_QUANTILE_RATE;
    pacing_params_t b = a;
    set_profile(&a, (const double[7]){2, 1, 1, 1, 1, 1, 1});
    set_profile(&b, (const double[7]){20, 10, 10, 10, 10, 10, 10});
    assert_close(pacing_day_weight(&a, 0), 2.0 * 7.0 / 8.0, 1e-15);
    assert_close(pacing_day_weight(&a, 3), 7.0 / 8.0, 1e-15);
    const pacing_input_t monday = input_at(3600);
    assert_close(pacing_send_probability(&a, &monday), 5.0 / 70.0 * 1.75, 1e-15);
    assert_close(pacing_send_probability(&a, &monday), pacing_send_probability(&b, &monday),
                 1e-15);
}

static void test_fraction_elapsed_is_linear_without_profile(void **state)
{
    (void)state;
    const pacing_params_t p = params_for(PACING_BUDGET);
    assert_close(pacing_week_fraction_elapsed(&p, 0), 0.0, 0.0);
    assert_close(pacing_week_fraction_elapsed(&p, NOTIFD_SECONDS_PER_WEEK / 2), 0.5, 1e-15);
    assert_close(pacing_week_fraction_elapsed(&p, DAY + DAY / 4), 1.25 / 7.0, 1e-15);
}

static void test_fraction_elapsed_follows_profile_within_a_day(void **state)
{
    (void)state;
    pacing_params_t p = params_for(PACING_BUDGET);
    set_profile(&p, (const double[7]){1, 0, 0, 0, 0, 0, 1}); /* Mondays and Sundays */
    assert_close(pacing_week_fraction_elapsed(&p, DAY / 2), 0.25, 1e-15);
    assert_close(pacing_week_fraction_elapsed(&p, 3 * DAY), 0.5, 1e-15);
    assert_close(pacing_week_fraction_elapsed(&p, 6 * DAY + DAY / 2), 0.75, 1e-15);
}

static void test_budget_is_remaining_over_remaining_opportunities(void **state)
{
    (void)state;
    const pacing_params_t p = params_for(PACING_BUDGET);
    pacing_input_t in = input_at(0);
    assert_close(pacing_send_probability(&p, &in), 5.0 / 70.0, 1e-15);
    in = input_at(NOTIFD_SECONDS_PER_WEEK / 2); /* half way, 2 sent: 3 left in 35 */
    in.sent_this_week = 2;
    assert_close(pacing_send_probability(&p, &in), 3.0 / 35.0, 1e-15);
}

static void test_budget_exhausted_gives_zero(void **state)
{
    (void)state;
    const pacing_params_t p = params_for(PACING_BUDGET);
    pacing_input_t in = input_at(DAY);
    in.sent_this_week = 5;
    assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
    in.sent_this_week = 9; /* over-sent (e.g. plan lowered mid-week) */
    assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
}

static void test_budget_spends_leftover_at_end_of_week(void **state)
{
    (void)state;
    /* Last second of the week with budget left: fewer than one opportunity
     * is expected, so the floor of one makes p = remaining, clamped to 1. */
    const pacing_params_t p = params_for(PACING_BUDGET);
    pacing_input_t in = input_at(NOTIFD_SECONDS_PER_WEEK - 1);
    in.sent_this_week = 4;
    assert_close(pacing_send_probability(&p, &in), 1.0, 0.0);
}

static void test_extra_share_is_the_fraction_plus_what_the_balance_owes(void **state)
{
    (void)state;
    assert_close(pacing_extra_share(0.5, 0.0), 0.5, 1e-15);
    assert_close(pacing_extra_share(2.5, 0.2), 0.6, 1e-15);
    assert_close(pacing_extra_share(0.5, 1.0), PACING_MAX_WEEK_SHARE, 0.0);
    assert_close(pacing_extra_share(0.5, -1.0), 0.0, 0.0);
    assert_close(pacing_extra_share(0.5, NAN), 0.5, 1e-15);
    /* Whole plans (float noise included) have no extra to share. */
    assert_close(pacing_extra_share(2.0, 1.0), 0.0, 0.0);
    assert_close(pacing_extra_share(2.9999999999, 1.0), 0.0, 0.0);
    assert_close(pacing_extra_share(0.0, 1.0), 0.0, 0.0);
    assert_close(pacing_extra_share(NAN, 1.0), 0.0, 0.0);
}

static void test_balance_owes_the_fraction_and_is_repaid_by_extra_sends(void **state)
{
    (void)state;
    assert_close(pacing_balance_update(0.0, 0.5, 0.0, 1.0), 0.5, 1e-15);
    assert_close(pacing_balance_update(0.5, 0.5, 1.0, 1.0), 0.0, 1e-15);
    assert_close(pacing_balance_update(0.0, 2.5, 3.0, 1.0), -0.5, 1e-15);
    assert_close(pacing_balance_update(0.0, 2.5, 2.0, 1.0), 0.5, 1e-15);
    /* A first week seen in part owes its share. */
    assert_close(pacing_balance_update(0.0, 0.5, 0.0, 0.5), 0.25, 1e-15);
    /* Bounded both ways, whatever a week or the store says. */
    assert_close(pacing_balance_update(1.9, 0.5, 0.0, 1.0), PACING_BALANCE_LIMIT, 0.0);
    assert_close(pacing_balance_update(-1.9, 0.5, 5.0, 1.0), -PACING_BALANCE_LIMIT, 0.0);
    assert_close(pacing_balance_update(NAN, 0.5, 0.0, 1.0), 0.5, 1e-15);
    /* A whole plan keeps no balance. */
    assert_close(pacing_balance_update(1.5, 3.0, 0.0, 1.0), 0.0, 0.0);
}

static void test_budget_fraction_is_a_chance_never_forced_by_the_week_end(void **state)
{
    (void)state;
    const pacing_params_t p = params_for(PACING_BUDGET);
    pacing_input_t in = input_at(0);
    in.per_week = 0.5;
    /* Half the weeks get the send, spread evenly over the week: the hazard
     * of a uniform first send, g / E / (1 - g F). */
    assert_close(pacing_send_probability(&p, &in), 0.5 / 70.0, 1e-15);
    const int64_t last = NOTIFD_SECONDS_PER_WEEK - 1;
    const double f_last = pacing_week_fraction_elapsed(&p, last);
    in.seconds_into_week = last;
    /* The last opportunity of a week without a send: still a chance. */
    assert_close(pacing_send_probability(&p, &in), 0.5 / 70.0 / (1.0 - 0.5 * f_last), 1e-15);
    assert_true(pacing_send_probability(&p, &in) < 0.02);
    in.sent_this_week = 1; /* the week's extra is spent */
    assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
    /* A balance owed raises the chance: 0.5 + 0.5 / 2 of weeks. */
    in.sent_this_week = 0;
    in.seconds_into_week = 0;
    in.fraction_balance = 0.5;
    assert_close(pacing_send_probability(&p, &in), 0.75 / 70.0, 1e-15);
    /* Blocked by the 7-day cap until mid-week: the week's chance is spread
     * over its second half. */
    in.fraction_balance = 0.0;
    in.seconds_into_week = NOTIFD_SECONDS_PER_WEEK * 3 / 4;
    in.unblocked_from = 0.5;
    assert_close(pacing_send_probability(&p, &in), 0.5 / 70.0 / (0.5 - 0.5 * 0.25), 1e-15);
    in.unblocked_from = 0.0;
    /* The whole part is still spent by the week's end. */
    in.seconds_into_week = last;
    in.per_week = 2.5;
    in.sent_this_week = 1;
    assert_close(pacing_send_probability(&p, &in), 1.0, 0.0);
    in.sent_this_week = 2;
    assert_close(pacing_send_probability(&p, &in), 0.5 / 70.0 / (1.0 - 0.5 * f_last), 1e-15);
    in.sent_this_week = 3;
    assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
}

/* Plays `weeks` weeks of 70 opportunities for one member with plan
 * per_week, best scores uniform in [0, 1) ranked against the last 100,
 * folding each week into the balance: the mean weekly count, the most in a
 * week and the mean sent score. */
static void simulate_fraction(const pacing_params_t *p, double per_week, int weeks,
                              uint64_t seed, double *mean, unsigned *most, double *score)
{
    rng_t r;
    rng_seed(&r, seed);
    double recent[100];
    size_t n_recent = 0, next = 0;
    unsigned long total = 0, sends = 0;
    double score_sum = 0.0, balance = 0.0;
    *most = 0;
    for (int w = 0; w < weeks; w++) {
        pacing_input_t in = input_at(0);
        in.per_week = per_week;
        in.fraction_balance = balance;
        for (int k = 0; k < 70; k++) {
            in.seconds_into_week = (int64_t)((k + 0.5) * NOTIFD_SECONDS_PER_WEEK / 70);
            in.best_score = rng_next_unit(&r);
            in.recent_best_scores = recent;
            in.n_recent = n_recent;
            if (rng_next_unit(&r) < pacing_send_probability(p, &in)) {
                in.sent_this_week++;
                score_sum += in.best_score;
                sends++;
            }
            recent[next] = in.best_score;
            next = (next + 1) % 100;
            n_recent += n_recent < 100;
        }
        total += in.sent_this_week;
        *most = in.sent_this_week > *most ? in.sent_this_week : *most;
        balance = pacing_balance_update(balance, per_week, in.sent_this_week, 1.0);
    }
    *mean = (double)total / weeks;
    *score = sends ? score_sum / (double)sends : 0.0;
}

static void test_fractional_plans_keep_their_mean_and_one_extra_a_week(void **state)
{
    (void)state;
    const double plans[] = {0.25, 0.5, 0.9, 1.5, 2.7};
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++) {
        for (int strategy = PACING_BUDGET; strategy <= PACING_QUALITY; strategy++) {
            pacing_params_t p = params_for((pacing_strategy_t)strategy);
            double mean, score;
            unsigned most;
            simulate_fraction(&p, plans[i], 3000, 7 + i, &mean, &most, &score);
            assert_close(mean, plans[i], 0.03 * plans[i] + 0.01);
            /* At most one extra a week: never over ceil(plan), the cap. */
            assert_true(most <= (unsigned)ceil(plans[i]));
        }
    }
}

/* Mean weekly sends of a plan of 0.9 when the member's opportunity estimate
 * is 90 a week and 70 come, folding each week into the balance or not. */
static double mean_with_wrong_estimate(bool use_balance)
{
    const pacing_params_t p = params_for(PACING_BUDGET);
    rng_t r;
    rng_seed(&r, 3);
    unsigned long total = 0;
    double balance = 0.0;
    const int weeks = 3000;
    for (int w = 0; w < weeks; w++) {
        pacing_input_t in = input_at(0);
        in.per_week = 0.9;
        in.expected_opportunities = 90.0;
        in.fraction_balance = balance;
        for (int k = 0; k < 70; k++) {
            in.seconds_into_week = (int64_t)((k + 0.5) * NOTIFD_SECONDS_PER_WEEK / 70);
            if (rng_next_unit(&r) < pacing_send_probability(&p, &in))
                in.sent_this_week++;
        }
        total += in.sent_this_week;
        if (use_balance)
            balance = pacing_balance_update(balance, 0.9, in.sent_this_week, 1.0);
    }
    return (double)total / weeks;
}

static void test_the_balance_holds_the_mean_where_the_rate_alone_falls_short(void **state)
{
    (void)state;
    /* Asked at a rate, 0.9 a week from an estimate of 90 opportunities
     * when 70 come misses its send in too many weeks; the balance brings
     * them back in the weeks after. */
    assert_true(mean_with_wrong_estimate(false) < 0.9 * 0.95);
    assert_close(mean_with_wrong_estimate(true), 0.9, 0.03);
}

static void test_quality_spends_a_fraction_on_better_moments_than_budget(void **state)
{
    (void)state;
    const pacing_params_t bud = params_for(PACING_BUDGET), qual = params_for(PACING_QUALITY);
    double mb, mq, sb, sq;
    unsigned most;
    simulate_fraction(&bud, 0.5, 3000, 11, &mb, &most, &sb);
    simulate_fraction(&qual, 0.5, 3000, 11, &mq, &most, &sq);
    assert_close(mq, 0.5, 0.03);
    /* Budget sends average moments (~0.5); quality waits for the member's
     * best: a plan of 0.5 at 70 opportunities a week is about the top 1%. */
    assert_true(sb < 0.6);
    assert_true(sq > 0.9);
}

static void test_weekly_cap_rounds_up_without_float_noise(void **state)
{
    (void)state;
    assert_int_equal(pacing_weekly_cap(5.0, 1.5), 8);
    assert_int_equal(pacing_weekly_cap(2.0, 1.5), 3);
    assert_int_equal(pacing_weekly_cap(4.0, 1.5), 6);
    assert_int_equal(pacing_weekly_cap(0.7, 10.0), 7); /* 7.000000000000001 */
    assert_int_equal(pacing_weekly_cap(0.5, 1.5), 1);
    assert_int_equal(pacing_weekly_cap(3.0, 1.0), 3);
    assert_int_equal(pacing_weekly_cap(0.0, 1.5), 0);
    assert_int_equal(pacing_weekly_cap(-2.0, 1.5), 0);
    assert_int_equal(pacing_weekly_cap(NAN, 1.5), 0);
    assert_int_equal(pacing_weekly_cap(1e300, 1.5), UINT32_MAX);
}

static void test_ewma_takes_first_week_then_blends(void **state)
{
    (void)state;
    assert_close(pacing_ewma_update(0.0, false, 42.0, 0.3), 42.0, 0.0);
    assert_close(pacing_ewma_update(50.0, true, 100.0, 0.3), 65.0, 1e-12);
    assert_close(pacing_ewma_update(50.0, true, -5.0, 0.3), 35.0, 1e-12); /* negative -> 0 */
}

static void test_ewma_converges_to_a_steady_rate(void **state)
{
    (void)state;
    double e = pacing_ewma_update(0.0, false, 10.0, 0.3);
    for (int w = 0; w < 40; w++)
        e = pacing_ewma_update(e, true, 70.0, 0.3);
    assert_close(e, 70.0, 1e-3);
}

static void test_quality_sends_above_quantile_and_skips_below(void **state)
{
    (void)state;
    /* Recent scores 1..100, p = 0.1: the threshold is the 0.9 quantile,
     * between 90 and 91. */
    double recent[100];
    for (int i = 0; i < 100; i++)
        recent[i] = i + 1;
    assert_close(pacing_quality_probability(0.1, 95.5, recent, 100), 1.0, 0.0);
    assert_close(pacing_quality_probability(0.1, 91.5, recent, 100), 1.0, 0.0);
    assert_close(pacing_quality_probability(0.1, 89.5, recent, 100), 0.0, 0.0);
    assert_close(pacing_quality_probability(0.1, 10.0, recent, 100), 0.0, 0.0);
    /* At the boundary rank the share left over: 0.1*101 - 10 = 0.1. */
    assert_close(pacing_quality_probability(0.1, 90.5, recent, 100), 0.1, 1e-12);
}

static void test_quality_rule_averages_exactly_p(void **state)
{
    (void)state;
    /* A new score is equally likely to land in any of the n+1 gaps of the
     * recent scores; averaged over them the send probability must be p. */
    double recent[37];
    for (int i = 0; i < 37; i++)
        recent[(i * 11) % 37] = i; /* any order */
    const double ps[] = {0.01, 0.13, 0.5, 0.87};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        double sum = 0.0;
        for (int g = 0; g <= 37; g++)
            sum += pacing_quality_probability(ps[k], g - 0.5, recent, 37);
        assert_close(sum / 38.0, ps[k], 1e-12);
    }
}

static void test_quality_ties_share_the_boundary(void **state)
{
    (void)state;
    /* Half the recent scores are 0.2, half 0.8; p = 0.3. A best of 0.8 ties
     * with 50 and sits in the top 51 ranks, of which 30.3 send. */
    double recent[100];
    for (int i = 0; i < 100; i++)
        recent[i] = i < 50 ? 0.2 : 0.8;
    assert_close(pacing_quality_probability(0.3, 0.8, recent, 100), 30.3 / 51.0, 1e-12);
    assert_close(pacing_quality_probability(0.3, 0.2, recent, 100), 0.0, 0.0);
    assert_close(pacing_quality_probability(0.3, 0.9, recent, 100), 1.0, 0.0);
}

static pacing_input_t quality_input(const double *recent, size_t n, double best)
{
    pacing_input_t in = input_at(0);
    in.best_score = best;
    in.recent_best_scores = recent;
    in.n_recent = n;
    return in;
}

static void test_quality_uses_budget_probability_as_quantile(void **state)
{
    (void)state;
    const pacing_params_t p = params_for(PACING_QUALITY);
    double recent[100];
    for (int i = 0; i < 100; i++)
        recent[i] = (i + 0.5) / 100.0;
    /* p_b = 5/70 ~ 0.071: the top ~7 of 101 ranks send. */
    pacing_input_t in = quality_input(recent, 100, 0.97);
    assert_close(pacing_send_probability(&p, &in), 1.0, 0.0);
    in.best_score = 0.90;
    assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
}

static void test_quality_falls_back_to_coin_with_little_history(void **state)
{
    (void)state;
    pacing_params_t p = params_for(PACING_QUALITY);
    p.quality_quantile = PACING_QUANTILE_RATE;
    pacing_params_t u = p;
    u.quality_min_history = 1000; /* never ranks: the plain coin */
    double recent[4];
    for (int i = 0; i < 4; i++)
        recent[i] = i / 4.0;
    pacing_input_t in = quality_input(recent, 4, 0.99); /* < 5 scores */
    assert_close(pacing_send_probability(&p, &in), pacing_send_probability(&u, &in), 0.0);
    assert_true(pacing_send_probability(&p, &in) < 0.5);
    /* From the fifth score on, the best of them is ranked: it lands in the
     * top slot of 6, which holds 6 * 5/70 of a send. */
    const double five[5] = {0.0, 0.25, 0.5, 0.75, 0.9};
    in = quality_input(five, 5, 0.99);
    assert_close(pacing_send_probability(&p, &in), 6.0 * 5.0 / 70.0, 1e-12);
    in.best_score = 0.1;
    assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
}

static void test_quality_falls_back_to_coin_when_flat(void **state)
{
    (void)state;
    const pacing_params_t p = params_for(PACING_QUALITY);
    double recent[50];
    for (int i = 0; i < 50; i++)
        recent[i] = 0.4 + (i % 2) * 1e-9; /* spread below epsilon */
    const pacing_input_t in = quality_input(recent, 50, 0.41);
    assert_close(pacing_send_probability(&p, &in), 5.0 / 70.0, 1e-15);
}

static void test_quality_rate_never_forces_a_send(void **state)
{
    (void)state;
    pacing_params_t p = params_for(PACING_QUALITY);
    p.quality_quantile = PACING_QUANTILE_RATE;
    double recent[100];
    for (int i = 0; i < 100; i++)
        recent[i] = i / 100.0;
    /* The worst score of the history, the last second of the week, 4 of the
     * 5 planned sends still to go: the bar stays where the plan's rate puts
     * it, so a poor message is not sent just because the week ends. */
    pacing_input_t in = quality_input(recent, 100, 0.0);
    in.seconds_into_week = NOTIFD_SECONDS_PER_WEEK - 1;
    in.sent_this_week = 1;
    assert_close(pacing_send_probability(&p, &in), 0.0, 0.0);
}

static void test_quality_rate_bar_ignores_the_week_so_far(void **state)
{
    (void)state;
    /* Property: for any history, score, time and count sent this week, the
     * rate quantile gives what the rule gives at the plan's rate: neither a
     * lead nor a shortfall moves the bar. The budget quantile does move it. */
    pacing_params_t p = params_for(PACING_QUALITY);
    p.quality_quantile = PACING_QUANTILE_RATE;
    pacing_params_t b = p;
    b.quality_quantile = PACING_QUANTILE_BUDGET;
    rng_t r;
    rng_seed(&r, 99);
    double recent[60];
    int budget_moved = 0;
    for (int trial = 0; trial < 2000; trial++) {
        for (int i = 0; i < 60; i++)
            recent[i] = rng_next_unit(&r);
        pacing_input_t in = quality_input(recent, 60, rng_next_unit(&r));
        in.per_week = 1.0 + 6.0 * rng_next_unit(&r);
        in.expected_opportunities = 20.0 + 80.0 * rng_next_unit(&r);
        in.seconds_into_week = (int64_t)(rng_next_unit(&r) * NOTIFD_SECONDS_PER_WEEK);
        in.sent_this_week = (uint32_t)(rng_next_unit(&r) * 8.0);
        const double rate = in.per_week / in.expected_opportunities;
        assert_close(pacing_send_probability(&p, &in),
                     pacing_quality_probability(rate, in.best_score, recent, 60), 1e-15);
        budget_moved += pacing_send_probability(&b, &in) != pacing_send_probability(&p, &in);
    }
    /* Most draws are far from either bar (both 0 or both 1); the budget's
     * moves in a good share of the rest. */
    assert_true(budget_moved > 100);
}

static void test_quality_budget_spends_remaining_budget_at_week_end(void **state)
{
    (void)state;
    pacing_params_t p = params_for(PACING_QUALITY);
    p.quality_quantile = PACING_QUANTILE_BUDGET;
    double recent[100];
    for (int i = 0; i < 100; i++)
        recent[i] = i / 100.0;
    pacing_input_t in = quality_input(recent, 100, 0.0); /* worst score seen */
    in.seconds_into_week = NOTIFD_SECONDS_PER_WEEK - 1;
    in.sent_this_week = 4;
    assert_close(pacing_send_probability(&p, &in), 1.0, 0.0);
}

/* ---- simulation ---------------------------------------------------------- */

enum { SIM_MEMBERS = 100, SIM_WEEKS = 4, SIM_PER_DAY = 10, SIM_RECENT = 100 };

typedef struct sim_result {
    double mean, var, mean_sent_score;
} sim_result_t;

static int cmp_i64(const void *a, const void *b)
{
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* SIM_MEMBERS members, each with 10 opportunities a day at random times for
 * SIM_WEEKS weeks, a plan of 5/week and a converged opportunity estimate of
 * 70/week; best scores uniform in [0, 1). Returns weekly send statistics. */
static sim_result_t simulate_params(const pacing_params_t *params, uint64_t seed)
{
    const pacing_params_t p = *params;
    double sum = 0.0, sum2 = 0.0, score_sum = 0.0;
    unsigned long sends = 0;
    rng_t r;
    rng_seed(&r, seed);
    for (int m = 0; m < SIM_MEMBERS; m++) {
        double recent[SIM_RECENT];
        size_t n_recent = 0, next = 0;
        const double phase = rng_next_unit(&r);
        for (int w = 0; w < SIM_WEEKS; w++) {
            pacing_input_t in = {0};
            in.member_phase = phase;
            in.week_index = 2900 + w;
            in.per_week = 5.0;
            in.expected_opportunities = 7.0 * SIM_PER_DAY;
            for (int d = 0; d < 7; d++) {
                int64_t times[SIM_PER_DAY];
                for (int k = 0; k < SIM_PER_DAY; k++)
                    times[k] = d * DAY + (int64_t)(rng_next_unit(&r) * DAY);
                qsort(times, SIM_PER_DAY, sizeof times[0], cmp_i64);
                for (int k = 0; k < SIM_PER_DAY; k++) {
                    in.seconds_into_week = times[k];
                    in.best_score = rng_next_unit(&r);
                    in.recent_best_scores = recent;
                    in.n_recent = n_recent;
                    if (rng_next_unit(&r) < pacing_send_probability(&p, &in)) {
                        in.sent_this_week++;
                        score_sum += in.best_score;
                        sends++;
                    }
                    recent[next] = in.best_score; /* ring of recent best scores */
                    next = (next + 1) % SIM_RECENT;
                    if (n_recent < SIM_RECENT)
                        n_recent++;
                }
            }
            sum += in.sent_this_week;
            sum2 += (double)in.sent_this_week * in.sent_this_week;
        }
    }
    const double n = SIM_MEMBERS * SIM_WEEKS;
    sim_result_t res;
    res.mean = sum / n;
    res.var = sum2 / n - res.mean * res.mean;
    res.mean_sent_score = sends ? score_sum / sends : 0.0;
    return res;
}

static sim_result_t simulate(pacing_strategy_t strategy, uint64_t seed)
{
    const pacing_params_t p = params_for(strategy);
    return simulate_params(&p, seed);
}

static void test_simulation_budget_and_uniform_track_the_plan_unlike_the_plain_coin(void **state)
{
    (void)state;
    pacing_params_t coin = params_for(PACING_QUALITY);
    coin.quality_quantile = PACING_QUANTILE_RATE;
    coin.quality_min_history = 1000; /* never ranks: the plain weighted coin */
    const sim_result_t plain = simulate_params(&coin, 1);
    const sim_result_t bud = simulate(PACING_BUDGET, 1);
    const sim_result_t uni = simulate(PACING_UNIFORM, 1);
    assert_close(plain.mean, 5.0, 0.5);
    assert_close(bud.mean, 5.0, 0.5);
    /* The schedule: the plan every week, but for a last send due after
     * the week's last opportunity. */
    assert_close(uni.mean, 5.0, 0.25);
    assert_true(uni.var < plain.var / 10.0);
    /* The plain coin is binomial(70, 1/14): variance ~4.6. Budget nearly
     * always sends exactly 5. */
    assert_true(bud.var < plain.var / 4.0);
}

static void test_simulation_quality_keeps_rate_and_sends_better_messages(void **state)
{
    (void)state;
    const sim_result_t bud = simulate(PACING_BUDGET, 2);
    const sim_result_t qual = simulate(PACING_QUALITY, 2);
    assert_close(qual.mean, 5.0, 0.5);
    /* Budget sends average scores (~0.5); quality spends the same budget on
     * the member's best opportunities. */
    assert_true(qual.mean_sent_score > bud.mean_sent_score + 0.2);
}

static void test_simulation_rate_quantile_sends_better_than_budget_quantile(void **state)
{
    (void)state;
    pacing_params_t rate = params_for(PACING_QUALITY), budget = rate;
    rate.quality_quantile = PACING_QUANTILE_RATE;
    budget.quality_quantile = PACING_QUANTILE_BUDGET;
    const sim_result_t r = simulate_params(&rate, 3);
    const sim_result_t b = simulate_params(&budget, 3);
    /* Same mean count; the budget's count is steadier, but it buys that
     * with the sends it forces out at the end of short weeks, so the rate's
     * sends carry better messages. */
    assert_close(r.mean, 5.0, 0.5);
    assert_close(b.mean, 5.0, 0.5);
    assert_true(b.var < r.var);
    assert_true(r.mean_sent_score > b.mean_sent_score + 0.01);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strategy_names_round_trip),
        cmocka_unit_test(test_quantile_names_round_trip),
        cmocka_unit_test(test_defaults_pass_check_and_bad_params_fail),
        cmocka_unit_test(test_uniform_sends_when_the_schedule_is_ahead_of_the_week),
        cmocka_unit_test(test_uniform_week_counts_are_the_plan),
        cmocka_unit_test(test_unknown_opportunities_use_the_prior),
        cmocka_unit_test(test_budget_clamps_to_one),
        cmocka_unit_test(test_empty_or_invalid_plan_never_sends),
        cmocka_unit_test(test_profile_zero_weight_day_gets_no_sends),
        cmocka_unit_test(test_profile_is_normalised_to_mean_one),
        cmocka_unit_test(test_fraction_elapsed_is_linear_without_profile),
        cmocka_unit_test(test_fraction_elapsed_follows_profile_within_a_day),
        cmocka_unit_test(test_budget_is_remaining_over_remaining_opportunities),
        cmocka_unit_test(test_budget_exhausted_gives_zero),
        cmocka_unit_test(test_budget_spends_leftover_at_end_of_week),
        cmocka_unit_test(test_extra_share_is_the_fraction_plus_what_the_balance_owes),
        cmocka_unit_test(test_balance_owes_the_fraction_and_is_repaid_by_extra_sends),
        cmocka_unit_test(test_budget_fraction_is_a_chance_never_forced_by_the_week_end),
        cmocka_unit_test(test_fractional_plans_keep_their_mean_and_one_extra_a_week),
        cmocka_unit_test(test_the_balance_holds_the_mean_where_the_rate_alone_falls_short),
        cmocka_unit_test(test_quality_spends_a_fraction_on_better_moments_than_budget),
        cmocka_unit_test(test_weekly_cap_rounds_up_without_float_noise),
        cmocka_unit_test(test_ewma_takes_first_week_then_blends),
        cmocka_unit_test(test_ewma_converges_to_a_steady_rate),
        cmocka_unit_test(test_quality_sends_above_quantile_and_skips_below),
        cmocka_unit_test(test_quality_rule_averages_exactly_p),
        cmocka_unit_test(test_quality_ties_share_the_boundary),
        cmocka_unit_test(test_quality_uses_budget_probability_as_quantile),
        cmocka_unit_test(test_quality_falls_back_to_coin_with_little_history),
        cmocka_unit_test(test_quality_falls_back_to_coin_when_flat),
        cmocka_unit_test(test_quality_rate_never_forces_a_send),
        cmocka_unit_test(test_quality_rate_bar_ignores_the_week_so_far),
        cmocka_unit_test(test_quality_budget_spends_remaining_budget_at_week_end),
        cmocka_unit_test(test_simulation_budget_and_uniform_track_the_plan_unlike_the_plain_coin),
        cmocka_unit_test(test_simulation_quality_keeps_rate_and_sends_better_messages),
        cmocka_unit_test(test_simulation_rate_quantile_sends_better_than_budget_quantile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
