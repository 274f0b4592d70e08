/*
 * test_score_prior.c - unit tests for the score prior (src/core/
 * score_prior.c) and its place in the estimate (src/core/estimate.c):
 * the ranker's utilities turned back into scores, the mean of the top share
 * quality pacing would send, the parse of a hostile list, the pooled
 * calibration, and the open-rate prior that the member's own sends still
 * override.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include <stdlib.h>

#include "notifd/core/estimate.h"
#include "notifd/core/pacing.h"
#include "notifd/core/ranker.h"
#include "notifd/core/score_prior.h"

#define DAY 86400.0
#define HALF_LIFE (28.0 * DAY)
#define NOW 1700000000

static const char *const channels[] = {"push", "email"};

static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

static void test_unrank_inverts_the_default_ranker(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    assert_true(score_prior_ranker_invertible(&w));
    const double scores[] = {0.01, 0.1, 0.25, 0.5, 0.9};
    for (size_t i = 0; i < sizeof scores / sizeof scores[0]; i++) {
        double u = sigmoid(w.bias + w.w_score * scores[i]);
        assert_float_equal(score_prior_unrank(u, w.bias, w.w_score), scores[i], 1e-12);
    }
    /* Another bias and weight. */
    assert_float_equal(score_prior_unrank(sigmoid(-2.0 + 3.0 * 0.2), -2.0, 3.0), 0.2, 1e-12);
    /* A rounded utility of 0 or 1 stays finite. */
    assert_true(isfinite(score_prior_unrank(1.0, 0.0, 1.0)));
    assert_true(isfinite(score_prior_unrank(0.0, 0.0, 1.0)));
}

static void test_a_ranker_with_other_terms_is_not_inverted(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    w.w_open_rate = 0.5;
    assert_false(score_prior_ranker_invertible(&w));
    ranker_weights_defaults(&w);
    assert_int_equal(ranker_weights_set_feature(&w, "fresh", 5, 1.0), 0);
    assert_false(score_prior_ranker_invertible(&w));
    ranker_weights_defaults(&w);
    w.w_score = -1.0;
    assert_false(score_prior_ranker_invertible(&w));
    /* Not inverted: the utilities themselves. */
    ranker_weights_defaults(&w);
    w.w_open_rate = 0.5;
    double u[] = {0.6, 0.7, 0.5, 0.55, 0.65};
    double top;
    assert_true(score_prior_channel_top_mean(u, 5, 5.0, &w, &top));
    assert_float_equal(top, 0.7, 1e-12);
}

static void test_top_mean_takes_the_top_share_with_a_partial_last_score(void **state)
{
    (void)state;
    double s[10];
    for (int i = 0; i < 10; i++)
        s[i] = (double)i / 10.0; /* 0.0 .. 0.9, in any order */
    /* The top 20%: 0.9 and 0.8. */
    assert_float_equal(score_prior_top_mean(s, 10, 0.2), 0.85, 1e-12);
    /* The top 25%: 0.9, 0.8 and half of 0.7. */
    assert_float_equal(score_prior_top_mean(s, 10, 0.25), (0.9 + 0.8 + 0.35) / 2.5, 1e-12);
    /* Below one score's share: the best one. */
    assert_float_equal(score_prior_top_mean(s, 10, 0.01), 0.9, 1e-12);
    /* All: the mean; above 1 is clamped. */
    assert_float_equal(score_prior_top_mean(s, 10, 1.0), 0.45, 1e-12);
    assert_float_equal(score_prior_top_mean(s, 10, 7.0), 0.45, 1e-12);
    assert_true(isnan(score_prior_top_mean(s, 0, 0.5)));
}

static void test_top_mean_falls_as_the_share_grows(void **state)
{
    (void)state;
    /* The dose-response the plan sees: each extra send a week is one of
     * the member's lesser moments. */
    double s[100];
    double last = INFINITY;
    for (int k = 1; k <= 100; k++) {
        for (int i = 0; i < 100; i++)
            s[i] = fmod(0.37 * i, 1.0);
        double m = score_prior_top_mean(s, 100, k / 100.0);
        assert_true(m <= last + 1e-15);
        last = m;
    }
}

static int desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* The quickselect against a full sort: random lists, lists in order and
 * reversed, many ties, every length up to the longest list kept. */
static void test_top_mean_matches_a_full_sort(void **state)
{
    (void)state;
    uint64_t r = 12345;
    double x[PACING_MAX_RECENT], y[PACING_MAX_RECENT];
    for (int trial = 0; trial < 3000; trial++) {
        size_t n = 1 + (size_t)(trial % PACING_MAX_RECENT);
        int kind = trial % 4;
        for (size_t i = 0; i < n; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            double u = (double)(r >> 11) / 9007199254740992.0;
            x[i] = kind == 0 ? u : kind == 1 ? (double)i : kind == 2 ? -(double)i
                                                                      : floor(u * 4) / 4;
        }
        double share = ((trial * 7) % 23 + 1) / 23.0;
        memcpy(y, x, n * sizeof *x);
        qsort(y, n, sizeof *y, desc);
        double take = share * (double)n < 1.0 ? 1.0 : share * (double)n, sum = 0, w = 0;
        for (size_t i = 0; i < n && w < take; i++) {
            double part = take - w < 1.0 ? take - w : 1.0;
            sum += part * y[i];
            w += part;
        }
        assert_float_equal(score_prior_top_mean(x, n, share), sum / w, 1e-9);
    }
}

static void test_first_share_is_one_opportunity_a_week(void **state)
{
    (void)state;
    assert_float_equal(score_prior_first_share(10.0), 0.1, 1e-15);
    assert_float_equal(score_prior_first_share(0.5), 1.0, 0);
    assert_float_equal(score_prior_first_share(NAN), 1.0, 0);
    assert_float_equal(score_prior_first_share(1e9), 1.0 / 256.0, 0);
}

static void test_fewer_than_the_minimum_scores_say_nothing(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    double u[SCORE_PRIOR_MIN_SCORES] = {0.6, 0.6, 0.6, 0.6, 0.6};
    double top = -1;
    assert_false(score_prior_channel_top_mean(u, SCORE_PRIOR_MIN_SCORES - 1, 10.0, &w, &top));
    assert_float_equal(top, -1, 0);
    assert_true(score_prior_channel_top_mean(u, SCORE_PRIOR_MIN_SCORES, 10.0, &w, &top));
    assert_float_equal(top, log(0.6 / 0.4), 1e-12); /* the score behind 0.6 */
}

static void test_a_hostile_list_keeps_only_good_numbers(void **state)
{
    (void)state;
    stored_invalid_t inv;
    memset(&inv, 0, sizeof inv);
    double out[8];
    const char *s = "0.5,abc,,1e999,0.25,nan,-0.1";
    size_t n = score_prior_parse_list(s, strlen(s), out, 8, &inv);
    assert_int_equal(n, 3);
    assert_float_equal(out[0], 0.5, 0);
    assert_float_equal(out[1], 0.25, 0);
    assert_float_equal(out[2], -0.1, 0);
    /* At most max numbers. */
    n = score_prior_parse_list("1,2,3,4", 7, out, 2, &inv);
    assert_int_equal(n, 2);
    /* Nothing at all. */
    assert_int_equal(score_prior_parse_list("", 0, out, 8, &inv), 0);
    assert_int_equal(score_prior_parse_list(",,,", 3, out, 8, &inv), 0);
}

static void test_calibration_starts_at_1_and_follows_the_opens(void **state)
{
    (void)state;
    score_calibration_t c = {0};
    assert_float_equal(score_calibration_factor(&c), 1.0, 0);
    /* 1000 sends of members whose top moments score 0.4 opened 200 times:
     * the scores promise twice what they get. */
    for (int i = 0; i < 100; i++)
        score_calibration_add(&c, 2.0, 10.0, 0.4);
    double f = score_calibration_factor(&c);
    assert_float_equal(f, (200.0 + SCORE_CALIBRATION_STRENGTH) / (400.0 + SCORE_CALIBRATION_STRENGTH),
                       1e-12);
    assert_true(f > 0.5 && f < 0.55);
    /* Hostile inputs: a bad top score adds nothing; bad opens or sends add
     * the member to the level only; opens beyond sends are capped. */
    score_calibration_t d = {0};
    score_calibration_add(&d, 1.0, 1.0, INFINITY);
    score_calibration_add(&d, 1.0, 1.0, NAN);
    assert_float_equal(d.members, 0, 0);
    score_calibration_add(&d, NAN, 1.0, 0.5);
    score_calibration_add(&d, 1.0, -1.0, 0.5);
    assert_float_equal(d.opens, 0, 0);
    assert_float_equal(d.expected, 0, 0);
    assert_float_equal(d.members, 2.0, 0);
    score_calibration_t e = {0};
    score_calibration_add(&e, 5.0, 1.0, 0.5);
    assert_float_equal(e.opens, 1.0, 0);
    assert_float_equal(e.expected, 0.5, 0);
}

static void test_calibration_forgets_the_old_passes(void **state)
{
    (void)state;
    /* A producer whose scores double: after a few memories' worth of new
     * members the level is the new one. */
    score_calibration_t all = {0}, pass = {0};
    for (int i = 0; i < 100000; i++)
        score_calibration_add(&pass, 0, 0, 0.3);
    score_calibration_merge(&all, &pass);
    assert_float_equal(score_calibration_level(&all), 0.3, 1e-12);
    for (int k = 0; k < 25; k++) {
        pass = (score_calibration_t){0};
        for (int i = 0; i < (int)(SCORE_CALIBRATION_MEMORY / 5); i++)
            score_calibration_add(&pass, 0, 0, 0.6);
        score_calibration_merge(&all, &pass);
    }
    assert_float_equal(score_calibration_level(&all), 0.6, 0.01);
    /* The memory bounds the count, whatever the passes' sizes. */
    assert_true(all.members <= SCORE_CALIBRATION_MEMORY * 1.2);
    /* An empty pass changes nothing. */
    score_calibration_t before = all, empty = {0};
    score_calibration_merge(&all, &empty);
    assert_memory_equal(&before, &all, sizeof all);
}

static void test_calibration_does_not_depend_on_the_order(void **state)
{
    (void)state;
    /* The same members in two orders: the sums (and so every rate of the
     * next pass) agree up to rounding. */
    score_calibration_t a = {0}, b = {0};
    for (int i = 0; i < 1000; i++) {
        score_calibration_add(&a, i % 3, 5, 0.1 + (i % 17) / 20.0);
        int j = 999 - i;
        score_calibration_add(&b, j % 3, 5, 0.1 + (j % 17) / 20.0);
    }
    assert_float_equal(score_calibration_level(&a), score_calibration_level(&b), 1e-12);
    assert_float_equal(score_calibration_factor(&a), score_calibration_factor(&b), 1e-12);
}

static void test_open_rate_is_calibrated_and_a_probability(void **state)
{
    (void)state;
    double q = -1;
    assert_true(score_prior_open_rate(0.4, 0.5, &q));
    assert_float_equal(q, 0.2, 1e-15);
    assert_true(score_prior_open_rate(0.9, 2.0, &q));
    assert_float_equal(q, 1.0, 0);
    assert_true(score_prior_open_rate(-3.0, 1.0, &q));
    assert_float_equal(q, 0.0, 0);
    q = 0.7;
    assert_false(score_prior_open_rate(NAN, 1.0, &q));
    assert_false(score_prior_open_rate(0.3, INFINITY, &q));
    assert_float_equal(q, 0.7, 0);
}

static void test_relative_rate_keeps_the_populations_level(void **state)
{
    (void)state;
    score_calibration_t c = {0};
    assert_true(isnan(score_calibration_level(&c)));
    double q;
    double tops[] = {0.2, 0.4, 0.6};
    for (int i = 0; i < 3; i++)
        score_calibration_add(&c, 0, 0, tops[i]);
    score_calibration_add(&c, 0, 0, NAN); /* ignored */
    double level = score_calibration_level(&c);
    assert_float_equal(level, 0.4, 1e-15);
    /* The members' rates average the population prior: only their order
     * comes from the scores. */
    double sum = 0;
    for (int i = 0; i < 3; i++) {
        assert_true(score_prior_relative_rate(tops[i], level, 0.1, &q));
        sum += q;
    }
    assert_float_equal(sum / 3, 0.1, 1e-15);
    assert_true(score_prior_relative_rate(0.6, level, 0.1, &q));
    assert_float_equal(q, 0.15, 1e-15);
    /* Clamped into [0, 1]; nothing without a level. */
    assert_true(score_prior_relative_rate(-0.5, level, 0.1, &q));
    assert_float_equal(q, 0, 0);
    assert_true(score_prior_relative_rate(40.0, level, 0.1, &q));
    assert_float_equal(q, 1, 0);
    q = 0.3;
    assert_false(score_prior_relative_rate(0.5, 0.0, 0.1, &q));
    assert_false(score_prior_relative_rate(0.5, NAN, 0.1, &q));
    assert_float_equal(q, 0.3, 0);
    assert_int_equal(score_calibration_mode_parse("opens"), SCORE_CALIBRATION_OPENS);
    assert_int_equal(score_calibration_mode_parse("prior"), SCORE_CALIBRATION_PRIOR);
    assert_int_equal(score_calibration_mode_parse("Prior"), -1);
}

/* ---- the estimate ---- */

static void member_with_score(member_features_t *f, double score_open)
{
    features_init(f);
    f->n_channels = 2;
    f->ch[0].score_open = score_open;
    f->ch[0].has |= FEATURES_HAS_SCORE_OPEN;
}

static void test_on_by_default_with_the_prior_calibration(void **state)
{
    (void)state;
    slow_priors_t p;
    slow_priors_defaults(&p, channels, 2);
    assert_float_equal(p.score_strength, 50, 0);
    assert_int_equal(p.score_calibration, SCORE_CALIBRATION_PRIOR);
}

static void test_off_the_scores_change_nothing(void **state)
{
    (void)state;
    slow_priors_t p;
    slow_priors_defaults(&p, channels, 2);
    p.score_strength = 0.0;
    member_features_t with, without;
    member_with_score(&with, 0.6);
    features_init(&without);
    without.n_channels = 2;
    member_estimate_t a, b;
    estimate_member(&a, &with, &p, NOW, HALF_LIFE);
    estimate_member(&b, &without, &p, NOW, HALF_LIFE);
    assert_memory_equal(&a, &b, sizeof a);
    assert_float_equal(a.ch[0].p_open, p.channel[0].open_rate, 1e-15);
}

static void test_a_member_sent_nothing_gets_the_blend_of_scores_and_population(void **state)
{
    (void)state;
    slow_priors_t p;
    slow_priors_defaults(&p, channels, 2);
    p.score_strength = 20.0;
    member_features_t f;
    member_with_score(&f, 0.4);
    member_estimate_t e;
    estimate_member(&e, &f, &p, NOW, HALF_LIFE);
    double s0 = p.channel[0].open_strength, pi = p.channel[0].open_rate;
    double want = (s0 * pi + 20.0 * 0.4) / (s0 + 20.0);
    assert_float_equal(e.ch[0].open_prior, want, 1e-15);
    assert_float_equal(e.ch[0].p_open, want, 1e-15);
    /* Email had no scores: its population prior. */
    assert_float_equal(e.ch[1].p_open, p.channel[1].open_rate, 1e-15);
    /* A member whose best moments score higher is expected to open more. */
    member_features_t g;
    member_with_score(&g, 0.5);
    member_estimate_t eg;
    estimate_member(&eg, &g, &p, NOW, HALF_LIFE);
    assert_true(eg.ch[0].p_open > e.ch[0].p_open);
    /* A value outside [0, 1] (never written by the planner) is ignored. */
    member_with_score(&g, 1.5);
    estimate_member(&eg, &g, &p, NOW, HALF_LIFE);
    assert_float_equal(eg.ch[0].p_open, pi, 1e-15);
}

static void test_the_members_sends_override_the_scores(void **state)
{
    (void)state;
    slow_priors_t p;
    slow_priors_defaults(&p, channels, 2);
    p.score_strength = 20.0;
    /* Scores promise 0.5; the member opens 5% of what it is sent. */
    double last_gap = INFINITY;
    for (double n = 0; n <= 1e5; n = n == 0 ? 1 : n * 10) {
        member_features_t f;
        member_with_score(&f, 0.5);
        f.ch[0].sent = n;
        f.ch[0].open = 0.05 * n;
        member_estimate_t e;
        estimate_member(&e, &f, &p, NOW, HALF_LIFE);
        double gap = fabs(e.ch[0].p_open - 0.05);
        assert_true(gap < last_gap);
        last_gap = gap;
        assert_float_equal(e.ch[0].data_weight, n / (n + p.channel[0].open_strength + 20.0),
                           1e-12);
    }
    assert_true(last_gap < 1e-3);
}

static void test_check_rejects_a_negative_score_strength(void **state)
{
    (void)state;
    slow_priors_t p;
    slow_priors_defaults(&p, channels, 2);
    char err[128] = "";
    p.score_strength = -1.0;
    assert_int_equal(slow_priors_check(&p, 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "score_strength"));
    p.score_strength = NAN;
    assert_int_equal(slow_priors_check(&p, 2, err, sizeof err), -1);
    p.score_strength = 50.0;
    assert_int_equal(slow_priors_check(&p, 2, err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unrank_inverts_the_default_ranker),
        cmocka_unit_test(test_a_ranker_with_other_terms_is_not_inverted),
        cmocka_unit_test(test_top_mean_takes_the_top_share_with_a_partial_last_score),
        cmocka_unit_test(test_top_mean_falls_as_the_share_grows),
        cmocka_unit_test(test_top_mean_matches_a_full_sort),
        cmocka_unit_test(test_first_share_is_one_opportunity_a_week),
        cmocka_unit_test(test_fewer_than_the_minimum_scores_say_nothing),
        cmocka_unit_test(test_a_hostile_list_keeps_only_good_numbers),
        cmocka_unit_test(test_calibration_starts_at_1_and_follows_the_opens),
        cmocka_unit_test(test_calibration_forgets_the_old_passes),
        cmocka_unit_test(test_calibration_does_not_depend_on_the_order),
        cmocka_unit_test(test_open_rate_is_calibrated_and_a_probability),
        cmocka_unit_test(test_relative_rate_keeps_the_populations_level),
        cmocka_unit_test(test_on_by_default_with_the_prior_calibration),
        cmocka_unit_test(test_off_the_scores_change_nothing),
        cmocka_unit_test(test_a_member_sent_nothing_gets_the_blend_of_scores_and_population),
        cmocka_unit_test(test_the_members_sends_override_the_scores),
        cmocka_unit_test(test_check_rejects_a_negative_score_strength),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
