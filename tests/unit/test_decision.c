/*
 * test_decision.c - the fast policy as a pure function: guardrail order,
 * cap, pacing coin, threshold mode, propensities, determinism, and the
 * opportunity EWMA fold.
 */
#include <math.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/core/calendar.h"
#include "notifd/core/decision.h"
#include "notifd/core/plan.h"

#define MONDAY 1795392000 /* 2026-11-23 00:00:00 UTC, a Monday */

typedef struct fixture {
    fast_config_t fast;
    plan_t plan;
    ranker_candidate_t cands[4];
    double last_sent[4];
    double utility[4];
    double select_prob[4];
    decision_input_t in;
} fixture_t;

static void fixture_init(fixture_t *fx)
{
    memset(fx, 0, sizeof *fx);
    fast_config_t *f = &fx->fast;
    f->mode = FAST_MODE_HIERARCHICAL;
    pacing_params_defaults(&f->pacing);
    /* The plain weighted coin, p = per_week / E: quality at the plan's rate
     * with too short a score history to rank. */
    f->pacing.strategy = PACING_QUALITY;
    f->pacing.quality_quantile = PACING_QUANTILE_RATE;
    f->pacing.quality_min_history = 1000;
    f->cap_factor = 1.5;
    f->dedup_days = 7;
    f->transactional_respects_optout = true; /* the default */
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++)
        ranker_weights_defaults(&f->ranker[c]);
    ranker_params_defaults(&f->exploration);
    f->quiet_hours = (quiet_hours_t){.enabled = true, .start_min = 22 * 60, .end_min = 8 * 60};
    double per_week[NOTIFD_MAX_CHANNELS] = {7.0, 2.0};
    plan_make_default(&fx->plan, 0x3, per_week);
    static const char *const ids[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        fx->cands[i] = (ranker_candidate_t){.id = ids[i], .id_len = 1, .score = 0.2 * (i + 1),
                                            .eligible = true};
        fx->last_sent[i] = -1;
    }
    fx->in = (decision_input_t){
        .fast = f, .seed = 42, .member = "m1", .member_len = 2, .opportunity = "o1",
        .opportunity_len = 2, .channel_name = "push", .channel = 0, .ts = MONDAY + 12 * 3600,
        .plan = &fx->plan, .member_open_rate = -1, .candidates = fx->cands, .n_candidates = 4,
        .last_sent_ts = fx->last_sent, .utility = fx->utility, .select_prob = fx->select_prob,
        .expected_opportunities = 14.0,
    };
}

static void test_unsubscribed_comes_before_quiet_hours(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.in.unsubscribed = true;
    fx.in.ts = MONDAY + 23 * 3600;
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_UNSUBSCRIBED);
    assert_false(d.send);
    assert_true(d.propensity == 1.0);
    assert_false(d.reached_coin);
}

static void test_quiet_hours_gives_retry_at_in_member_time(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.in.ts = MONDAY + 23 * 3600; /* 23:00 UTC */
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_QUIET_HOURS);
    assert_int_equal(d.retry_at, MONDAY + 86400 + 8 * 3600);
    fx.in.tz_offset_min = -300; /* 18:00 local: not quiet */
    decision_evaluate(&fx.in, &d);
    assert_int_not_equal(d.reason, REASON_QUIET_HOURS);
}

static void test_no_candidates(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.in.n_candidates = 0;
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_NO_CANDIDATES);
}

static void test_recently_sent_candidates_are_filtered_and_old_ones_are_not(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    for (int i = 0; i < 4; i++)
        fx.last_sent[i] = (double)(fx.in.ts - 86400); /* yesterday */
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_ALL_FILTERED);
    fx.last_sent[3] = (double)(fx.in.ts - 8 * 86400); /* outside the 7-day window */
    fx.fast.pacing.prior_opportunities_per_week = 1.0;
    fx.in.expected_opportunities = 1.0; /* p = 1 */
    decision_evaluate(&fx.in, &d);
    assert_true(d.send);
    assert_int_equal(d.chosen, 3);
    assert_false(fx.cands[0].eligible);
    assert_true(fx.cands[3].eligible);
}

static void test_cap_reached_before_the_coin(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.in.sent_this_week = 11; /* ceil(7 * 1.5) = 11 */
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_CAP_REACHED);
    assert_int_equal(d.cap, 11);
    assert_false(d.send);
    assert_true(d.propensity == 1.0);
    assert_true(d.reached_coin);
    fx.in.sent_this_week = 10;
    decision_evaluate(&fx.in, &d);
    assert_int_not_equal(d.reason, REASON_CAP_REACHED);
}

/* The cap bounds any 7 days too: last week's sends count until they are 7
 * days old, whatever the calendar week says. */
static void test_rolling_cap_counts_the_last_seven_days(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.fast.cap_factor = 1.0; /* cap = 7 */
    fx.fast.rolling_cap = true;
    fx.fast.pacing.prior_opportunities_per_week = 1.0;
    fx.in.expected_opportunities = 1.0; /* p = 1 when not capped */
    int64_t sends[DECISION_MAX_RECENT_SENDS];
    for (int i = 0; i < 7; i++)
        sends[i] = fx.in.ts - 3600 - i * 86400; /* last week, Tuesday to Monday */
    fx.in.recent_sends = sends;
    fx.in.n_recent_sends = 7;
    fx.in.sent_this_week = 0;
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_CAP_REACHED);
    assert_int_equal(d.cap, 7);
    assert_false(d.send);
    assert_true(d.propensity == 1.0);

    /* The oldest is exactly 7 days old: out of the window. */
    sends[6] = fx.in.ts - 7 * 86400;
    decision_evaluate(&fx.in, &d);
    assert_true(d.send);

    /* A send with a later ts (producers are not always in order) counts. */
    sends[6] = fx.in.ts + 86400;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_CAP_REACHED);

    /* Off: only the calendar week counts. */
    fx.fast.rolling_cap = false;
    decision_evaluate(&fx.in, &d);
    assert_true(d.send);
}

static void test_a_fractions_chance_starts_when_the_rolling_cap_makes_room(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.fast.cap_factor = 1.0;
    fx.fast.rolling_cap = true;
    fx.fast.rolling_cap_factor = 1.5;
    fx.fast.pacing.strategy = PACING_BUDGET;
    fx.plan.per_week[0] = 0.5; /* cap 1, and 1 over any 7 days */
    fx.in.expected_opportunities = 70.0;
    fx.in.ts = MONDAY + 3 * 86400 + 43200; /* Thursday noon: F = 0.5 */
    /* Last week's send on Wednesday noon made room again this Wednesday
     * noon (F = 5/14): the week's chance 0.5 is spread from there. */
    int64_t sends[2] = {MONDAY - 5 * 86400 + 43200, MONDAY - 30 * 86400};
    fx.in.recent_sends = sends;
    fx.in.n_recent_sends = 2;
    decision_t d;
    decision_evaluate(&fx.in, &d);
    const double b = 5.0 / 14.0, f = 0.5;
    assert_true(fabs(d.p_send - 0.5 / 70.0 / ((1.0 - b) - 0.5 * (f - b))) < 1e-12);
    /* A send before the week that made room before it: the whole week. */
    sends[0] = MONDAY - 8 * 86400;
    decision_evaluate(&fx.in, &d);
    assert_true(fabs(d.p_send - 0.5 / 70.0 / (1.0 - 0.5 * f)) < 1e-12);
    /* A later ts (out of order) is not what made room. */
    sends[0] = fx.in.ts + 8 * 86400;
    decision_evaluate(&fx.in, &d);
    assert_true(fabs(d.p_send - 0.5 / 70.0 / (1.0 - 0.5 * f)) < 1e-12);

    /* A plan of 1.5: two in any 7 days, so the second latest send made
     * room. Sends last Tuesday noon and last Wednesday noon: room again
     * since this Tuesday noon (F = 3/14); this week sent nothing yet. */
    fx.plan.per_week[0] = 1.5;
    int64_t two[3] = {MONDAY - 5 * 86400 + 43200, MONDAY - 6 * 86400 + 43200,
                      MONDAY - 20 * 86400};
    fx.in.recent_sends = two;
    fx.in.n_recent_sends = 3;
    decision_evaluate(&fx.in, &d);
    const double b2 = 3.0 / 14.0;
    const double left = 70.0 * (1.0 - f); /* the whole part's week budget */
    assert_true(fabs(d.p_send - (1.0 / left + 0.5 / 70.0 / ((1.0 - b2) - 0.5 * (f - b2)))) <
                1e-12);
}

static void test_sends_in_window_bounds(void **state)
{
    const int64_t ts = MONDAY;
    int64_t t[] = {ts, ts - 1, ts - 7 * 86400 + 1, ts - 7 * 86400, ts + 7 * 86400 - 1,
                   ts + 7 * 86400, ts - 30 * 86400};
    assert_int_equal(decision_sends_in_window(t, 7, ts), 4);
    assert_int_equal(decision_sends_in_window(t, 2, ts), 2);
    assert_int_equal(decision_sends_in_window(NULL, 3, ts), 0);
    assert_int_equal(decision_sends_in_window(t + 3, 4, ts), 1);
}

static void test_rolling_cap_adds_the_whole_part_of_the_plans_slack(void **state)
{
    (void)state;
    assert_int_equal(decision_rolling_cap(5, 5.0, 1.5, 0), 7);  /* 5 + floor(2.5) */
    assert_int_equal(decision_rolling_cap(1, 1.0, 1.5, 0), 1);  /* never two in 7 days */
    assert_int_equal(decision_rolling_cap(2, 2.0, 1.5, 0), 3);
    assert_int_equal(decision_rolling_cap(2, 1.5, 1.5, 0), 2);  /* 2 + floor(0.75) */
    assert_int_equal(decision_rolling_cap(1, 0.5, 1.5, 0), 1);
    assert_int_equal(decision_rolling_cap(8, 5.0, 1.0, 0), 8);  /* factor 1: the weekly cap */
    assert_int_equal(decision_rolling_cap(3, 2.0, 3.0, 0), 7);  /* 3 + floor(4) */
}

/* fast.rolling_cap_min_slack: at least that many above the weekly cap, for
 * any plan above 0; where the factor gives more, the factor's. */
static void test_rolling_cap_has_at_least_the_minimum_slack(void **state)
{
    (void)state;
    assert_int_equal(decision_rolling_cap(1, 1.0, 1.5, 1), 2);  /* a plan of 1: two, never 3 */
    assert_int_equal(decision_rolling_cap(1, 0.5, 1.5, 1), 2);
    assert_int_equal(decision_rolling_cap(2, 1.5, 1.5, 1), 3);
    assert_int_equal(decision_rolling_cap(2, 2.0, 1.5, 1), 3);  /* floor(1) already */
    assert_int_equal(decision_rolling_cap(5, 5.0, 1.5, 1), 7);  /* floor(2.5) is more */
    assert_int_equal(decision_rolling_cap(8, 5.0, 1.0, 1), 9);
    assert_int_equal(decision_rolling_cap(2, 2.0, 1.0, 3), 5);
    assert_int_equal(decision_rolling_cap(0, 0.0, 1.5, 1), 0);  /* a plan of 0 sends nothing */
}

static void test_coin_probability_and_propensities(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    int sends = 0;
    for (int i = 0; i < 2000; i++) {
        char opp[16];
        snprintf(opp, sizeof opp, "o%d", i);
        fx.in.opportunity = opp;
        fx.in.opportunity_len = strlen(opp);
        decision_t d;
        decision_evaluate(&fx.in, &d);
        assert_true(fabs(d.p_send - 0.5) < 1e-12); /* 7 per week over 14 opportunities */
        if (d.send) {
            sends++;
            assert_int_equal(d.reason, REASON_SEND);
            assert_int_equal(d.chosen, 3); /* greedy: the best score */
            assert_true(fabs(d.propensity - 0.5 * fx.select_prob[3]) < 1e-12);
        } else {
            assert_int_equal(d.reason, REASON_PACED_SKIP);
            assert_true(fabs(d.propensity - 0.5) < 1e-12);
            assert_int_equal(d.chosen, -1);
        }
    }
    assert_in_range(sends, 900, 1100);
}

static void test_same_inputs_same_decision(void **state)
{
    fixture_t a, b;
    fixture_init(&a);
    fixture_init(&b);
    decision_t da, db;
    int differ = 0;
    for (int i = 0; i < 50; i++) {
        char opp[16];
        snprintf(opp, sizeof opp, "x%d", i);
        a.in.opportunity = b.in.opportunity = opp;
        a.in.opportunity_len = b.in.opportunity_len = strlen(opp);
        decision_evaluate(&a.in, &da);
        decision_evaluate(&b.in, &db);
        assert_int_equal(da.send, db.send);
        assert_int_equal(da.chosen, db.chosen);
        b.in.seed = 43; /* another seed changes some coins */
        decision_evaluate(&b.in, &db);
        differ += da.send != db.send;
        b.in.seed = 42;
    }
    assert_true(differ > 0);
}

static void test_unplanned_channel_sends_the_best_message(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.in.channel = 2; /* not in the plan's mask */
    fx.in.channel_name = "in_app";
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_true(d.send);
    assert_true(d.p_send == 1.0);
    assert_int_equal(d.chosen, 3);
    assert_int_equal(d.cap, -1);
}

static void test_threshold_mode_sends_iff_best_clears_the_threshold(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.fast.mode = FAST_MODE_THRESHOLD;
    fx.in.plan = NULL;
    threshold_state_t th;
    threshold_init(&th, 0.99); /* above sigma(0.8) ~ 0.69 */
    fx.in.threshold = &th;
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_PACED_SKIP);
    assert_true(d.propensity == 1.0);
    assert_true(d.have_best);
    threshold_init(&th, 0.1);
    decision_evaluate(&fx.in, &d);
    assert_true(d.send);
    assert_true(d.p_send == 1.0);
    assert_int_equal(d.chosen, 3);
    assert_int_equal(d.cap, -1);
}

static void test_holdout_gets_no_paced_message_in_either_mode(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.in.holdout = true;
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_HOLDOUT);
    assert_string_equal(decision_reason_name(d.reason), "holdout");
    assert_false(d.send);
    assert_true(d.propensity == 1.0);
    assert_int_equal(d.chosen, -1);
    /* Threshold mode: a threshold any message clears still sends nothing. */
    fx.fast.mode = FAST_MODE_THRESHOLD;
    fx.in.plan = NULL;
    threshold_state_t th;
    threshold_init(&th, 0.0);
    fx.in.threshold = &th;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_HOLDOUT);
    assert_false(d.send);
    /* The same member out of the holdout gets the send. */
    fx.in.holdout = false;
    decision_evaluate(&fx.in, &d);
    assert_true(d.send);
}

static void test_holdout_leaves_unpaced_channels_and_earlier_guardrails(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.in.holdout = true;
    /* Channel 2 is not in the plan: unpaced, outside the policy. */
    fx.in.channel = 2;
    fx.in.channel_name = "in_app";
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_true(d.send);
    assert_int_equal(d.reason, REASON_SEND);
    /* Guardrails keep their reasons, as for every member. */
    fx.in.channel = 0;
    fx.in.unsubscribed = true;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_UNSUBSCRIBED);
    fx.in.unsubscribed = false;
    fx.in.ts = MONDAY + 23 * 3600;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_QUIET_HOURS);
    fx.in.ts = MONDAY + 12 * 3600;
    fx.in.n_candidates = 0;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_NO_CANDIDATES);
}

static void test_fold_scales_a_partly_seen_first_week(void **state)
{
    opportunity_history_t h = {.have_first_week = true, .first_week = 10, .first_fraction = 0.5};
    h.counts[1] = 20; /* week 10 = W-1 */
    opportunity_fold_t f;
    decision_fold_history(&h, 11, 0.3, 5.0, &f);
    assert_true(f.store_ewma);
    assert_true(fabs(f.ewma - 40.0) < 1e-9);
    assert_true(f.store_ewma_week);
    assert_int_equal(f.ewma_week, 10);
    assert_true(fabs(f.expected - 40.0) < 1e-9);
}

static void test_fold_skips_a_barely_seen_first_week(void **state)
{
    opportunity_history_t h = {.have_first_week = true, .first_week = 10, .first_fraction = 0.1};
    h.counts[1] = 3;
    opportunity_fold_t f;
    decision_fold_history(&h, 11, 0.3, 5.0, &f);
    assert_false(f.store_ewma);
    assert_true(f.store_ewma_week);
    assert_true(f.expected <= 0); /* still the prior */
}

static void test_fold_keeps_a_fractional_plans_balance(void **state)
{
    (void)state;
    /* Weeks 9 and 10 to fold: 20 opportunities and no send, then 10 and
     * one send, on a plan of 0.5: +0.5, then 0.5 + 0.5 - 1 = 0. */
    opportunity_history_t h = {.have_first_week = true, .first_week = 5, .first_fraction = 1,
                               .have_ewma = true, .ewma = 10, .have_ewma_week = true,
                               .ewma_week = 8};
    h.counts[0] = 20;
    h.counts[1] = 10;
    h.sent_before[0] = 1; /* week 10 */
    h.sent_before[1] = 0; /* week 9 */
    opportunity_fold_t f;
    decision_fold_history(&h, 11, 0.3, 0.5, &f);
    assert_false(f.store_balance); /* 0 stays 0: nothing to write */
    assert_true(f.balance == 0.0);
    h.sent_before[0] = 0;
    decision_fold_history(&h, 11, 0.3, 0.5, &f);
    assert_true(f.store_balance);
    assert_true(fabs(f.balance - 1.0) < 1e-12);
    /* A week without an opportunity owes nothing. */
    h.counts[1] = 0;
    decision_fold_history(&h, 11, 0.3, 0.5, &f);
    assert_true(fabs(f.balance - 0.5) < 1e-12);
    /* Within the week, once folded, the stored balance stands. */
    h.have_balance = true;
    h.balance = 0.75;
    h.ewma_week = 10;
    decision_fold_history(&h, 11, 0.3, 0.5, &f);
    assert_false(f.store_balance);
    assert_true(f.balance == 0.75);
    /* A whole plan clears a balance left by a fractional one. */
    decision_fold_history(&h, 11, 0.3, 2.0, &f);
    assert_true(f.store_balance);
    assert_true(f.balance == 0.0);
    /* A hostile stored value never leaves the bounds. */
    h.balance = NAN;
    decision_fold_history(&h, 11, 0.3, 0.5, &f);
    assert_true(f.balance == 0.0);
}

static void test_fold_is_idempotent_within_a_week_and_folds_two_missed_weeks(void **state)
{
    opportunity_history_t h = {.have_first_week = true, .first_week = 5, .first_fraction = 1,
                               .have_ewma = true, .ewma = 10, .have_ewma_week = true,
                               .ewma_week = 10};
    opportunity_fold_t f;
    decision_fold_history(&h, 11, 0.5, 5.0, &f); /* W-1 = 10 already folded */
    assert_false(f.store_ewma);
    assert_false(f.store_ewma_week);
    assert_true(fabs(f.expected - 10.0) < 1e-12);
    h.ewma_week = 8; /* weeks 9 and 10 not folded: counts 20 then 0 */
    h.counts[0] = 20;
    h.counts[1] = 0;
    decision_fold_history(&h, 11, 0.5, 5.0, &f);
    assert_true(f.store_ewma);
    assert_true(fabs(f.ewma - 7.5) < 1e-9); /* (10 -> 15) -> 7.5 */
    assert_int_equal(f.ewma_week, 10);
}

/* Defence in depth: whatever the history says, the fold reads only
 * counts[0..2] (ASan would see anything else), and what it stores is
 * finite. first_week - 1 and friends overflowed on INT64_MIN. */
static void test_fold_survives_any_week_numbers(void **state)
{
    (void)state;
    const int64_t weeks[] = {INT64_MIN, INT64_MIN + 1, -((int64_t)1 << 40), -3, -1, 0, 9, 10,
                             11, 12, 5000, (int64_t)1 << 40, INT64_MAX - 1, INT64_MAX};
    const size_t n = sizeof weeks / sizeof weeks[0];
    for (size_t a = 0; a < n; a++)
        for (size_t b = 0; b < n; b++)
            for (size_t c = 0; c < n; c++) {
                opportunity_history_t h = {.have_first_week = true, .first_week = weeks[a],
                                           .have_ewma_week = weeks[b] != 0,
                                           .ewma_week = weeks[b], .have_ewma = true,
                                           .ewma = 4.0, .first_fraction = 0.5,
                                           .counts = {1, 2, 3}};
                opportunity_fold_t f;
                decision_fold_history(&h, weeks[c], 0.3, 5.0, &f);
                assert_true(isfinite(f.expected));
                assert_true(!f.store_ewma || (isfinite(f.ewma) && f.ewma >= 0));
                assert_true(!f.store_ewma_week || f.ewma_week < weeks[c]);
            }
}

static void test_fold_ignores_a_first_week_from_the_future(void **state)
{
    (void)state;
    /* An out-of-order ts sees the member's first week after its own:
     * nothing to fold, nothing to store, the stored EWMA stands. */
    opportunity_history_t h = {.have_first_week = true, .first_week = 20, .have_ewma = true,
                               .ewma = 6.0, .counts = {5, 5, 5}};
    opportunity_fold_t f;
    decision_fold_history(&h, 11, 0.3, 5.0, &f);
    assert_false(f.store_ewma);
    assert_false(f.store_ewma_week);
    assert_true(fabs(f.expected - 6.0) < 1e-12);
    /* Likewise an EWMA folded up to a week after this one. */
    h = (opportunity_history_t){.have_first_week = true, .first_week = 2, .have_ewma = true,
                                .ewma = 6.0, .have_ewma_week = true, .ewma_week = 15,
                                .counts = {0, 0, 0}};
    decision_fold_history(&h, 11, 0.3, 5.0, &f);
    assert_false(f.store_ewma);
    assert_false(f.store_ewma_week);
    assert_true(fabs(f.expected - 6.0) < 1e-12);
}

static void test_fold_takes_unusable_counts_and_ewma_as_none(void **state)
{
    (void)state;
    opportunity_history_t h = {.have_first_week = true, .first_week = 2, .have_ewma = true,
                               .ewma = NAN, .counts = {NAN, -5, INFINITY}};
    opportunity_fold_t f;
    decision_fold_history(&h, 11, 0.5, 5.0, &f);
    assert_true(f.store_ewma);
    assert_true(f.ewma == 0.0); /* two weeks of no opportunities, no prior EWMA */
    assert_true(f.expected == 0.0);
}

/* A transactional message goes past the cap, quiet hours, the coin and the
 * holdout; it spends no budget and counts as no opportunity. */
static void test_transactional_bypasses_caps_quiet_hours_coin_and_holdout(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.cands[1].priority = PRIORITY_TRANSACTIONAL; /* score 0.4: not the best */
    fx.in.sent_this_week = 11;                   /* ceil(7 * 1.5): the cap */
    fx.in.ts = MONDAY + 23 * 3600;               /* quiet hours */
    fx.in.holdout = true;
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_SEND);
    assert_true(d.send);
    assert_int_equal(d.chosen, 1);
    assert_int_equal(d.priority, PRIORITY_TRANSACTIONAL);
    assert_true(d.unpaced);
    assert_false(d.reached_coin);
    assert_false(d.have_best);
    assert_true(d.p_send == 1.0);
    assert_true(d.propensity == 1.0);
    assert_int_equal(d.cap, -1);
    assert_int_equal(d.rolling_cap, -1);
    assert_false(fx.cands[3].eligible); /* a lower class is set aside */
    /* Without it, the same state stops a normal message. */
    fx.cands[1].priority = PRIORITY_NORMAL;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_QUIET_HOURS);
    assert_false(d.unpaced);
}

static void test_transactional_respects_an_opt_out_unless_configured(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.cands[2].priority = PRIORITY_TRANSACTIONAL;
    fx.in.unsubscribed = true;
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_UNSUBSCRIBED);
    assert_false(d.send);
    fx.fast.transactional_respects_optout = false;
    decision_evaluate(&fx.in, &d);
    assert_true(d.send);
    assert_int_equal(d.chosen, 2);
    /* The setting is for transactional messages only. */
    fx.cands[2].priority = PRIORITY_HIGH;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_UNSUBSCRIBED);
}

/* Dedup holds for every class: a transactional message sent within the
 * window is out, and the next class present is considered. */
static void test_a_sent_transactional_message_is_not_sent_twice(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.cands[0].priority = PRIORITY_TRANSACTIONAL;
    fx.cands[1].priority = PRIORITY_HIGH;
    fx.last_sent[0] = (double)(fx.in.ts - 3600);
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.priority, PRIORITY_HIGH);
    assert_true(d.send);
    assert_int_equal(d.chosen, 1);
    assert_false(d.unpaced);
    fx.last_sent[1] = (double)(fx.in.ts - 3600);
    fx.in.sent_this_week = 11;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.priority, PRIORITY_NORMAL);
    assert_int_equal(d.reason, REASON_CAP_REACHED);
}

/* A high-priority message skips the coin (p = 0.5 here) but not the caps
 * or quiet hours, and it is an opportunity and a send of the plan. */
static void test_high_skips_the_coin_but_not_caps_or_quiet_hours(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.cands[0].priority = PRIORITY_HIGH; /* the lowest score */
    char opp[16];
    for (int i = 0; i < 50; i++) {
        snprintf(opp, sizeof opp, "o%d", i);
        fx.in.opportunity = opp;
        fx.in.opportunity_len = strlen(opp);
        decision_t d;
        decision_evaluate(&fx.in, &d);
        assert_true(d.send);
        assert_int_equal(d.chosen, 0);
        assert_int_equal(d.priority, PRIORITY_HIGH);
        assert_true(d.p_send == 1.0);
        assert_true(d.reached_coin);
        assert_false(d.unpaced);
        assert_int_equal(d.cap, 11);
    }
    decision_t d;
    fx.in.sent_this_week = 11;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_CAP_REACHED);
    fx.in.sent_this_week = 0;
    fx.in.ts = MONDAY + 23 * 3600;
    decision_evaluate(&fx.in, &d);
    assert_int_equal(d.reason, REASON_QUIET_HOURS);
    /* Without the class, the same coin skips some of them. */
    fx.cands[0].priority = PRIORITY_NORMAL;
    fx.in.ts = MONDAY + 12 * 3600;
    int skips = 0;
    for (int i = 0; i < 50; i++) {
        snprintf(opp, sizeof opp, "o%d", i);
        fx.in.opportunity = opp;
        fx.in.opportunity_len = strlen(opp);
        decision_evaluate(&fx.in, &d);
        skips += d.reason == REASON_PACED_SKIP;
    }
    assert_true(skips > 0);
}

static void test_high_passes_the_threshold_in_threshold_mode(void **state)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.fast.mode = FAST_MODE_THRESHOLD;
    fx.in.plan = NULL;
    threshold_state_t th;
    threshold_init(&th, 0.99); /* nothing clears it */
    fx.in.threshold = &th;
    fx.cands[2].priority = PRIORITY_HIGH;
    decision_t d;
    decision_evaluate(&fx.in, &d);
    assert_true(d.send);
    assert_int_equal(d.chosen, 2);
    assert_int_equal(d.priority, PRIORITY_HIGH);
}

static void test_priority_names_are_the_contract(void **state)
{
    assert_string_equal(message_priority_name(PRIORITY_NORMAL), "normal");
    assert_string_equal(message_priority_name(PRIORITY_HIGH), "high");
    assert_string_equal(message_priority_name(PRIORITY_TRANSACTIONAL), "transactional");
    message_priority_t p = PRIORITY_COUNT;
    assert_true(message_priority_parse("high", 4, &p));
    assert_int_equal(p, PRIORITY_HIGH);
    assert_true(message_priority_parse("transactional", 13, &p));
    assert_int_equal(p, PRIORITY_TRANSACTIONAL);
    assert_false(message_priority_parse("hig", 3, &p));
    assert_false(message_priority_parse("High", 4, &p));
    assert_false(message_priority_parse("", 0, &p));
}

static void test_reason_names_are_the_contract(void **state)
{
    assert_string_equal(decision_reason_name(REASON_SEND), "send");
    assert_string_equal(decision_reason_name(REASON_PACED_SKIP), "paced_skip");
    assert_string_equal(decision_reason_name(REASON_CAP_REACHED), "cap_reached");
    assert_string_equal(decision_reason_name(REASON_QUIET_HOURS), "quiet_hours");
    assert_string_equal(decision_reason_name(REASON_NO_CANDIDATES), "no_candidates");
    assert_string_equal(decision_reason_name(REASON_ALL_FILTERED), "all_filtered");
    assert_string_equal(decision_reason_name(REASON_UNSUBSCRIBED), "unsubscribed");
    assert_string_equal(decision_reason_name(REASON_DEGRADED), "degraded");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_survives_any_week_numbers),
        cmocka_unit_test(test_holdout_gets_no_paced_message_in_either_mode),
        cmocka_unit_test(test_holdout_leaves_unpaced_channels_and_earlier_guardrails),
        cmocka_unit_test(test_fold_ignores_a_first_week_from_the_future),
        cmocka_unit_test(test_fold_takes_unusable_counts_and_ewma_as_none),
        cmocka_unit_test(test_unsubscribed_comes_before_quiet_hours),
        cmocka_unit_test(test_quiet_hours_gives_retry_at_in_member_time),
        cmocka_unit_test(test_no_candidates),
        cmocka_unit_test(test_recently_sent_candidates_are_filtered_and_old_ones_are_not),
        cmocka_unit_test(test_cap_reached_before_the_coin),
        cmocka_unit_test(test_rolling_cap_counts_the_last_seven_days),
        cmocka_unit_test(test_a_fractions_chance_starts_when_the_rolling_cap_makes_room),
        cmocka_unit_test(test_sends_in_window_bounds),
        cmocka_unit_test(test_coin_probability_and_propensities),
        cmocka_unit_test(test_rolling_cap_adds_the_whole_part_of_the_plans_slack),
        cmocka_unit_test(test_rolling_cap_has_at_least_the_minimum_slack),
        cmocka_unit_test(test_same_inputs_same_decision),
        cmocka_unit_test(test_unplanned_channel_sends_the_best_message),
        cmocka_unit_test(test_threshold_mode_sends_iff_best_clears_the_threshold),
        cmocka_unit_test(test_fold_scales_a_partly_seen_first_week),
        cmocka_unit_test(test_fold_skips_a_barely_seen_first_week),
        cmocka_unit_test(test_fold_keeps_a_fractional_plans_balance),
        cmocka_unit_test(test_fold_is_idempotent_within_a_week_and_folds_two_missed_weeks),
        cmocka_unit_test(test_reason_names_are_the_contract),
        cmocka_unit_test(test_transactional_bypasses_caps_quiet_hours_coin_and_holdout),
        cmocka_unit_test(test_transactional_respects_an_opt_out_unless_configured),
        cmocka_unit_test(test_a_sent_transactional_message_is_not_sent_twice),
        cmocka_unit_test(test_high_skips_the_coin_but_not_caps_or_quiet_hours),
        cmocka_unit_test(test_high_passes_the_threshold_in_threshold_mode),
        cmocka_unit_test(test_priority_names_are_the_contract),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
