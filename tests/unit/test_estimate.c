/*
 * test_estimate.c - unit tests for member estimates (src/core/estimate.c):
 * empirical-Bayes shrinkage (a new member gets the prior exactly, a long
 * history the data, and the estimate moves monotonically from one to the
 * other), the incremental value of an open (lower for a frequent visitor),
 * opt-out state, and the checks on priors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "notifd/core/estimate.h"
#include "notifd/lib/hash.h"

#define DAY 86400.0
#define HALF_LIFE (28.0 * DAY)
#define NOW 1700000000

static const char *const channels[] = {"push", "email", "in_app"};

/* Deterministic uniform draws in [lo, hi) from a counter. */
static double draw(uint64_t *ctr, double lo, double hi)
{
    return lo + (hi - lo) * hash_to_unit(hash_mix64((*ctr)++));
}

static void setup_priors(slow_priors_t *p)
{
    slow_priors_defaults(p, channels, 3);
}

static void new_member(member_features_t *f)
{
    features_init(f);
    f->n_channels = 3;
}

/* An old member (exposure at its limit) with given visit counts. */
static void old_member(member_features_t *f, double visit_org, double visit_attr)
{
    new_member(f);
    f->first_seen = NOW - 3650 * (int64_t)DAY;
    f->updated_at = NOW;
    f->has = FEATURES_HAS_FIRST_SEEN | FEATURES_HAS_UPDATED_AT;
    f->visit_org = visit_org;
    f->visit_attr = visit_attr;
}

static void test_defaults_pass_check(void **state)
{
    (void)state;
    slow_priors_t p;
    setup_priors(&p);
    char err[128] = "";
    assert_int_equal(slow_priors_check(&p, 3, err, sizeof(err)), 0);
    assert_string_equal(err, "");
}

static void test_check_rejects_out_of_range_priors(void **state)
{
    (void)state;
    slow_priors_t p;
    char err[128];
    setup_priors(&p);
    p.channel[1].open_rate = 1.5;
    assert_int_equal(slow_priors_check(&p, 3, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "channel 1: open_rate"));
    setup_priors(&p);
    p.channel[0].unsub_strength = 0;
    assert_int_equal(slow_priors_check(&p, 3, err, sizeof(err)), -1);
    setup_priors(&p);
    p.attribution_window_s = 0;
    assert_int_equal(slow_priors_check(&p, 3, err, sizeof(err)), -1);
    setup_priors(&p);
    p.fatigue_from_dismiss = 1.5;
    assert_int_equal(slow_priors_check(&p, 3, err, sizeof(err)), -1);
}

static void test_channel_defaults_differ_by_name(void **state)
{
    (void)state;
    slow_channel_prior_t push, email, other;
    slow_channel_prior_defaults(&push, "push");
    slow_channel_prior_defaults(&email, "email");
    slow_channel_prior_defaults(&other, "sms");
    assert_true(push.open_rate != email.open_rate);
    slow_channel_prior_t in_app;
    slow_channel_prior_defaults(&in_app, "in_app");
    assert_memory_equal(&other, &in_app, sizeof(other));
}

static void test_new_member_gets_the_prior_exactly(void **state)
{
    (void)state;
    slow_priors_t p;
    setup_priors(&p);
    member_features_t f;
    new_member(&f);
    member_estimate_t e;
    estimate_member(&e, &f, &p, NOW, HALF_LIFE);
    for (int c = 0; c < 3; c++) {
        assert_true(e.ch[c].available);
        assert_float_equal(e.ch[c].p_open, p.channel[c].open_rate, 1e-15);
        assert_float_equal(e.ch[c].dismiss_rate, p.channel[c].dismiss_rate, 1e-15);
        assert_float_equal(e.ch[c].unsub_hazard, p.channel[c].unsub_rate, 1e-15);
        assert_float_equal(e.ch[c].fatigue, p.channel[c].fatigue, 1e-15);
        assert_float_equal(e.ch[c].data_weight, 0, 0);
    }
    assert_float_equal(e.visit_rate, p.visit_rate, 1e-15);
    assert_float_equal(e.visits_anyway, p.visit_rate * p.attribution_window_s / DAY, 1e-15);
    /* The prior lift: the chance that the visit an open brings is not one the
     * member would have made within the window anyway. */
    assert_float_equal(e.lift, p.visits_per_open * exp(-e.visits_anyway), 1e-15);
    assert_float_equal(e.visits_per_open, e.visits_anyway + e.lift, 1e-15);
}

static void test_long_history_approaches_the_data(void **state)
{
    (void)state;
    slow_priors_t p;
    setup_priors(&p);
    member_features_t f;
    old_member(&f, 0, 0);
    f.ch[0].sent = 1e6;
    f.ch[0].open = 0.3e6;
    f.ch[0].dismiss = 0.01e6;
    f.ch[0].unsub_n = 0.02e6;
    member_estimate_t e;
    estimate_member(&e, &f, &p, NOW, HALF_LIFE);
    assert_float_equal(e.ch[0].p_open, 0.3, 1e-4);
    assert_float_equal(e.ch[0].dismiss_rate, 0.01, 1e-4);
    assert_float_equal(e.ch[0].unsub_hazard, 0.02, 1e-4);
    assert_true(e.ch[0].data_weight > 0.9999);
}

static void test_visit_rate_approaches_the_data_with_long_exposure(void **state)
{
    (void)state;
    slow_priors_t p;
    setup_priors(&p);
    p.visit_rate_strength = 0.01; /* so the member's own ~40 days dominate */
    member_features_t f;
    double exposure_days = HALF_LIFE / log(2.0) / DAY;
    old_member(&f, 2.0 * exposure_days, 0);
    member_estimate_t e;
    estimate_member(&e, &f, &p, NOW, HALF_LIFE);
    assert_float_equal(e.visit_rate, 2.0, 2e-3);
}

/* One random member history at scale `n` messages per channel. */
static void random_history(member_features_t *f, double n, double rates[3][3])
{
    old_member(f, 0, 0);
    for (int c = 0; c < 3; c++) {
        f->ch[c].sent = n;
        f->ch[c].open = n * rates[c][0];
        f->ch[c].dismiss = n * rates[c][1];
        f->ch[c].unsub_n = n * rates[c][2];
    }
}

static void test_shrinkage_moves_from_prior_to_data_as_history_grows(void **state)
{
    (void)state;
    /* For many random members, scale one fixed behaviour up: every estimate
     * must move monotonically from the prior toward the member's own rate. */
    slow_priors_t p;
    setup_priors(&p);
    uint64_t ctr = 12345;
    const double scales[] = {0, 0.5, 2, 10, 50, 300, 3000, 1e5};
    const int n_scales = (int)(sizeof(scales) / sizeof(scales[0]));
    for (int m = 0; m < 10000; m++) {
        double rates[3][3];
        for (int c = 0; c < 3; c++) {
            rates[c][0] = draw(&ctr, 0, 1);
            rates[c][1] = draw(&ctr, 0, 1);
            rates[c][2] = draw(&ctr, 0, 0.05);
        }
        double prev_gap[3][3] = {{INFINITY, INFINITY, INFINITY},
                                 {INFINITY, INFINITY, INFINITY},
                                 {INFINITY, INFINITY, INFINITY}};
        for (int s = 0; s < n_scales; s++) {
            member_features_t f;
            random_history(&f, scales[s], rates);
            member_estimate_t e;
            estimate_member(&e, &f, &p, NOW, HALF_LIFE);
            for (int c = 0; c < 3; c++) {
                const double est[3] = {e.ch[c].p_open, e.ch[c].dismiss_rate,
                                       e.ch[c].unsub_hazard};
                /* The open rate's prior is the member's: the population's
                 * times what the other channels show (1 without history). */
                const double open_prior =
                    fmin(1.0, p.channel[c].open_rate * member_responsiveness(&f, &p, c));
                if (s == 0)
                    assert_float_equal(open_prior, p.channel[c].open_rate, 0);
                const double prior[3] = {open_prior, p.channel[c].dismiss_rate,
                                         p.channel[c].unsub_rate};
                for (int k = 0; k < 3; k++) {
                    double gap = fabs(est[k] - rates[c][k]);
                    /* always between the prior and the data */
                    double lo = fmin(prior[k], rates[c][k]);
                    double hi = fmax(prior[k], rates[c][k]);
                    assert_true(est[k] >= lo - 1e-12 && est[k] <= hi + 1e-12);
                    if (s == 0) /* no history anywhere: the population's prior */
                        assert_float_equal(est[k], prior[k], 1e-15);
                    /* The open rate's prior moves with the other channels'
                     * histories, so only its end point is checked below. */
                    else if (k > 0)
                        assert_true(gap <= prev_gap[c][k] + 1e-12);
                    prev_gap[c][k] = gap;
                }
            }
        }
        for (int c = 0; c < 3; c++)
            assert_true(prev_gap[c][0] < 0.01);
    }
}

/* An old member with `opens` opens, organic rate `rate` per day, and after
 * each open the organic visits that fall in its window plus `caused` more
 * (the pull-forward world: a caused visit replaces an organic one due within
 * the window, so it adds caused * e^(-rate W) on average). */
static void member_with_visits(member_features_t *f, double rate, double opens, double caused)
{
    double exposure = HALF_LIFE / log(2.0) / DAY;
    old_member(f, rate * (exposure - opens), opens * (rate + caused * exp(-rate)));
    f->ch[0].sent = 60;
    f->ch[0].open = opens;
}

static void test_open_rate_moves_monotonically_with_a_single_channel_history(void **state)
{
    (void)state;
    /* With history on one channel only, its prior is the population's and
     * the estimate moves monotonically from it to the member's rate. */
    slow_priors_t p;
    setup_priors(&p);
    uint64_t ctr = 4242;
    const double scales[] = {0, 0.5, 2, 10, 50, 300, 3000, 1e5};
    for (int m = 0; m < 10000; m++) {
        int c = (int)draw(&ctr, 0, 3);
        double rate = draw(&ctr, 0, 1), prev_gap = INFINITY;
        for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++) {
            member_features_t f;
            old_member(&f, 0, 0);
            f.ch[c].sent = scales[s];
            f.ch[c].open = scales[s] * rate;
            member_estimate_t e;
            estimate_member(&e, &f, &p, NOW, HALF_LIFE);
            double est = e.ch[c].p_open, prior = p.channel[c].open_rate;
            assert_true(est >= fmin(prior, rate) - 1e-12 && est <= fmax(prior, rate) + 1e-12);
            double gap = fabs(est - rate);
            assert_true(gap <= prev_gap + 1e-12);
            prev_gap = gap;
        }
        assert_true(prev_gap < 0.01);
    }
}

static void test_opens_elsewhere_move_a_channels_open_prior(void **state)
{
    (void)state;
    /* Property, over push histories: a member's email estimate (no email
     * history) rises with their push opens, equals the population prior when
     * push opens are as the push prior expects, follows the push ratio for a
     * long history, and never exceeds 1. */
    slow_priors_t p;
    setup_priors(&p);
    const int PUSH_ = 0, EMAIL_ = 1;
    const double sends[] = {5, 20, 100, 10000};
    for (size_t i = 0; i < sizeof sends / sizeof sends[0]; i++) {
        double prev = -1.0;
        for (double rate = 0.0; rate <= 1.0; rate += 0.01) {
            member_features_t f;
            old_member(&f, 0, 0);
            f.ch[PUSH_].sent = sends[i];
            f.ch[PUSH_].open = sends[i] * rate;
            member_estimate_t e;
            estimate_member(&e, &f, &p, NOW, HALF_LIFE);
            double pe = e.ch[EMAIL_].p_open;
            assert_true(pe >= prev - 1e-15 && pe <= 1.0);
            prev = pe;
            if (fabs(rate - p.channel[PUSH_].open_rate) < 1e-9)
                assert_float_equal(pe, p.channel[EMAIL_].open_rate, 1e-12);
        }
    }
    member_features_t f;
    old_member(&f, 0, 0);
    f.ch[PUSH_].sent = 1e6;
    f.ch[PUSH_].open = 0.3e6; /* three times the push prior */
    member_estimate_t e;
    estimate_member(&e, &f, &p, NOW, HALF_LIFE);
    assert_float_equal(e.ch[EMAIL_].responsiveness, 3.0, 1e-4);
    assert_float_equal(e.ch[EMAIL_].p_open, 3.0 * p.channel[EMAIL_].open_rate, 1e-4);
    assert_float_equal(e.ch[PUSH_].responsiveness, 1.0, 0); /* no history elsewhere */
    f.ch[PUSH_].open = 1e6; /* ten times: the prior is capped at 1 */
    estimate_member(&e, &f, &p, NOW, HALF_LIFE);
    assert_true(e.ch[EMAIL_].p_open <= 1.0);
}

static void test_a_channels_own_opens_do_not_move_its_prior(void **state)
{
    (void)state;
    /* Leave-one-out: email's own opens enter its estimate once, through its
     * own shrinkage, never through its prior. */
    slow_priors_t p;
    setup_priors(&p);
    member_features_t a, b;
    old_member(&a, 0, 0);
    a.ch[0].sent = 40;
    a.ch[0].open = 8;
    a.ch[1].sent = 30;
    b = a;
    a.ch[1].open = 1;
    b.ch[1].open = 20;
    assert_float_equal(member_responsiveness(&a, &p, 1), member_responsiveness(&b, &p, 1), 0);
    assert_true(member_responsiveness(&b, &p, 0) > member_responsiveness(&a, &p, 0));
}

static void test_lift_is_lower_for_a_frequent_visitor(void **state)
{
    (void)state;
    /* Same opens and the same visit after each open; one member visits
     * daily, the other monthly. The daily visitor would have come within the
     * window anyway most of the time, so an open causes far less. */
    slow_priors_t p;
    setup_priors(&p);
    p.visit_rate_strength = 0.01; /* the organic rates as observed */
    member_features_t daily, monthly;
    member_with_visits(&daily, 1.0, 8, 0.6);
    member_with_visits(&monthly, 1.0 / 30, 8, 0.6);
    member_estimate_t ed, em;
    estimate_member(&ed, &daily, &p, NOW, HALF_LIFE);
    estimate_member(&em, &monthly, &p, NOW, HALF_LIFE);
    assert_float_equal(ed.ch[0].p_open, em.ch[0].p_open, 0);
    assert_true(ed.visit_rate > em.visit_rate);
    assert_true(em.lift > 2 * ed.lift);
}

static void test_lift_prior_falls_with_the_organic_rate(void **state)
{
    (void)state;
    /* Property: with no opens the lift is the prior, visits_per_open at a
     * member who never visits on their own, falling as the organic rate
     * rises and tending to 0 for a member who visits many times a window. */
    slow_priors_t p;
    setup_priors(&p);
    assert_float_equal(lift_prior(0.6, 0.0), 0.6, 0);
    double prev = INFINITY;
    for (double anyway = 0.0; anyway <= 20.0; anyway += 0.05) {
        double l = lift_prior(0.6, anyway);
        assert_true(l < prev && l > 0.0);
        assert_float_equal(estimate_lift(0.0, 0.0, anyway, &p), l, 1e-15);
        prev = l;
    }
    assert_true(prev < 1e-8);
    assert_float_equal(lift_prior(0.6, -1.0), 0.6, 0); /* a negative rate is no rate */
}

static void test_lift_moves_from_the_prior_to_the_observed_excess(void **state)
{
    (void)state;
    /* Property, over random members: with n opens each showing `excess`
     * visits beyond what would have come anyway, the estimate lies between
     * the prior and the observed excess (floored at 0), moves toward the
     * excess monotonically as n grows, and reaches it for long histories. */
    slow_priors_t p;
    setup_priors(&p);
    uint64_t ctr = 777;
    const double ns[] = {0, 1, 3, 10, 30, 100, 1000, 1e6};
    for (int m = 0; m < 10000; m++) {
        double anyway = draw(&ctr, 0, 4);
        double excess = draw(&ctr, -0.5, 1.5);
        double prior = lift_prior(p.visits_per_open, anyway);
        double target = fmax(0.0, excess);
        double prev_gap = INFINITY;
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
            double l = estimate_lift(ns[i] * (anyway + excess), ns[i], anyway, &p);
            assert_true(l >= 0.0);
            assert_true(l >= fmin(prior, target) - 1e-12 && l <= fmax(prior, target) + 1e-12);
            double gap = fabs(l - target);
            assert_true(gap <= prev_gap + 1e-12);
            prev_gap = gap;
        }
        assert_true(prev_gap < 1e-4);
    }
}

static void test_lift_recovers_the_incremental_visits_of_each_rate(void **state)
{
    (void)state;
    /* With plenty of opens, the estimate finds what an open adds in the
     * pull-forward world at each organic rate, caused * e^(-rate W), and not
     * what the visits after opens look like (they include the visits that
     * would have come anyway). */
    slow_priors_t p;
    setup_priors(&p);
    const double rates[] = {1.0 / 30, 0.2, 0.5, 1.0, 3.0};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        double opens = 2000, caused = 0.7 * exp(-rates[i]);
        double attributed = opens * (rates[i] + caused);
        assert_float_equal(estimate_lift(attributed, opens, rates[i], &p), caused, 0.01);
    }
}

static void test_lift_falls_as_the_organic_visit_rate_rises(void **state)
{
    (void)state;
    slow_priors_t p;
    setup_priors(&p);
    double prev = INFINITY;
    for (double visits = 0; visits <= 200; visits += 5) {
        member_features_t f;
        old_member(&f, visits, 6);
        f.ch[0].sent = 50;
        f.ch[0].open = 10;
        member_estimate_t e;
        estimate_member(&e, &f, &p, NOW, HALF_LIFE);
        assert_true(e.lift <= prev);
        assert_true(e.lift >= 0);
        prev = e.lift;
    }
    assert_float_equal(prev, 0, 0); /* a very frequent visitor gains nothing */
}

static void test_opted_out_channel_is_unavailable(void **state)
{
    (void)state;
    slow_priors_t p;
    setup_priors(&p);
    member_features_t f;
    new_member(&f);
    f.ch[1].unsub = true;
    member_estimate_t e;
    estimate_member(&e, &f, &p, NOW, HALF_LIFE);
    assert_true(e.ch[0].available);
    assert_false(e.ch[1].available);
}

static void test_channels_beyond_the_features_get_the_prior(void **state)
{
    (void)state;
    slow_priors_t p;
    setup_priors(&p);
    member_features_t f;
    features_init(&f); /* n_channels 0: an empty read */
    member_estimate_t e;
    estimate_member(&e, &f, &p, NOW, HALF_LIFE);
    assert_true(e.ch[1].available);
    assert_float_equal(e.ch[1].p_open, p.channel[1].open_rate, 1e-15);
}

static void test_rates_stay_probabilities_when_events_exceed_sends(void **state)
{
    (void)state;
    slow_priors_t p;
    setup_priors(&p);
    member_features_t f;
    old_member(&f, 0, 0);
    f.ch[0].sent = 2;
    f.ch[0].open = 50;
    f.ch[0].dismiss = 50;
    f.ch[0].unsub_n = 50;
    member_estimate_t e;
    estimate_member(&e, &f, &p, NOW, HALF_LIFE);
    assert_true(e.ch[0].p_open <= 1.0);
    assert_true(e.ch[0].dismiss_rate <= 1.0);
    assert_true(e.ch[0].unsub_hazard <= 1.0);
}

static void test_a_click_counts_as_an_open(void **state)
{
    (void)state;
    slow_priors_t p;
    setup_priors(&p);
    member_features_t a, b;
    old_member(&a, 0, 0);
    old_member(&b, 0, 0);
    a.ch[0].sent = b.ch[0].sent = 40;
    a.ch[0].open = 10;
    b.ch[0].click = 10;
    member_estimate_t ea, eb;
    estimate_member(&ea, &a, &p, NOW, HALF_LIFE);
    estimate_member(&eb, &b, &p, NOW, HALF_LIFE);
    assert_float_equal(ea.ch[0].p_open, eb.ch[0].p_open, 0);
    assert_true(eb.ch[0].p_open > p.channel[0].open_rate);
}

static void test_deliveries_count_as_messages_faced(void **state)
{
    (void)state;
    slow_priors_t p;
    setup_priors(&p);
    member_features_t a, b;
    old_member(&a, 0, 0);
    old_member(&b, 0, 0);
    a.ch[0].sent = 40;
    b.ch[0].delivered = 40;
    a.ch[0].open = b.ch[0].open = 4;
    member_estimate_t ea, eb;
    estimate_member(&ea, &a, &p, NOW, HALF_LIFE);
    estimate_member(&eb, &b, &p, NOW, HALF_LIFE);
    assert_float_equal(ea.ch[0].p_open, eb.ch[0].p_open, 0);
}

static void test_fatigue_rises_with_the_dismiss_rate(void **state)
{
    (void)state;
    slow_priors_t p;
    setup_priors(&p);
    double prev = -1;
    for (double d = 0; d <= 40; d += 4) {
        member_features_t f;
        old_member(&f, 0, 0);
        f.ch[0].sent = 40;
        f.ch[0].dismiss = d;
        member_estimate_t e;
        estimate_member(&e, &f, &p, NOW, HALF_LIFE);
        assert_true(e.ch[0].fatigue > prev);
        /* the floor kept for deployments that never report dismissals */
        assert_true(e.ch[0].fatigue >=
                    (1 - p.fatigue_from_dismiss) * p.channel[0].fatigue - 1e-15);
        prev = e.ch[0].fatigue;
    }
}

static void test_opens_spend_time_inside_attribution_windows(void **state)
{
    (void)state;
    /* Visits after opens are not organic and neither is the time inside the
     * windows: with the same organic visits, more opens mean less organic
     * time, hence a higher organic rate. */
    slow_priors_t p;
    setup_priors(&p);
    member_features_t a, b;
    old_member(&a, 20, 0);
    old_member(&b, 20, 0);
    b.ch[0].sent = 30;
    b.ch[0].open = 20;
    member_estimate_t ea, eb;
    estimate_member(&ea, &a, &p, NOW, HALF_LIFE);
    estimate_member(&eb, &b, &p, NOW, HALF_LIFE);
    assert_true(eb.visit_rate > ea.visit_rate);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_pass_check),
        cmocka_unit_test(test_check_rejects_out_of_range_priors),
        cmocka_unit_test(test_channel_defaults_differ_by_name),
        cmocka_unit_test(test_new_member_gets_the_prior_exactly),
        cmocka_unit_test(test_long_history_approaches_the_data),
        cmocka_unit_test(test_visit_rate_approaches_the_data_with_long_exposure),
        cmocka_unit_test(test_shrinkage_moves_from_prior_to_data_as_history_grows),
        cmocka_unit_test(test_open_rate_moves_monotonically_with_a_single_channel_history),
        cmocka_unit_test(test_opens_elsewhere_move_a_channels_open_prior),
        cmocka_unit_test(test_a_channels_own_opens_do_not_move_its_prior),
        cmocka_unit_test(test_lift_is_lower_for_a_frequent_visitor),
        cmocka_unit_test(test_lift_falls_as_the_organic_visit_rate_rises),
        cmocka_unit_test(test_lift_prior_falls_with_the_organic_rate),
        cmocka_unit_test(test_lift_moves_from_the_prior_to_the_observed_excess),
        cmocka_unit_test(test_lift_recovers_the_incremental_visits_of_each_rate),
        cmocka_unit_test(test_opted_out_channel_is_unavailable),
        cmocka_unit_test(test_channels_beyond_the_features_get_the_prior),
        cmocka_unit_test(test_rates_stay_probabilities_when_events_exceed_sends),
        cmocka_unit_test(test_a_click_counts_as_an_open),
        cmocka_unit_test(test_deliveries_count_as_messages_faced),
        cmocka_unit_test(test_fatigue_rises_with_the_dismiss_rate),
        cmocka_unit_test(test_opens_spend_time_inside_attribution_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
