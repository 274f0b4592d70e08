/*
 * test_ranker.c - unit tests for candidate scoring and selection
 * (src/core/ranker.c): the utility formula, weights applied by feature name,
 * the member context term, eligibility, greedy/epsilon/softmax selection
 * probabilities, and that seeded draws follow the reported probabilities.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"

#include "notifd/core/ranker.h"
#include "notifd/lib/rng.h"


static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

static ranker_candidate_t cand(double score, bool eligible)
{
    ranker_candidate_t c = {"id", 2, score, NULL, 0, eligible, PRIORITY_NORMAL};
    return c;
}

static ranker_params_t mode(ranker_exploration_t e, double eps, double t)
{
    ranker_params_t p = {e, eps, t};
    return p;
}

static double sum_of(const double *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    return s;
}

static void test_default_weights_score_is_sigmoid_of_score(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    const ranker_candidate_t c0 = cand(0.0, true), c1 = cand(1.5, true);
    assert_close(ranker_candidate_utility(&w, -1.0, &c0), 0.5, 1e-15);
    assert_close(ranker_candidate_utility(&w, -1.0, &c1), sigmoid(1.5), 1e-15);
}

static void test_bias_and_score_weight_are_applied(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    w.bias = -1.0;
    w.w_score = 2.0;
    const ranker_candidate_t c = cand(1.5, true);
    assert_close(ranker_candidate_utility(&w, -1.0, &c), sigmoid(-1.0 + 3.0), 1e-15);
}

static void test_feature_weights_apply_by_name_and_unknown_are_ignored(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    assert_int_equal(ranker_weights_set_feature(&w, "novelty", 7, 2.0), 0);
    assert_int_equal(ranker_weights_set_feature(&w, "ctr", 3, -1.0), 0);
    /* Names are not NUL-terminated: point into longer buffers. */
    const char *buf = "ctrXYZnoveltyQQQunknown";
    const ranker_feature_t f[] = {
        {buf, 3, 0.5},       /* "ctr" */
        {buf + 6, 7, 0.25},  /* "novelty" */
        {buf + 16, 7, 9.0},  /* "unknown": weight 0 */
        {buf, 2, 100.0},     /* "ct": a prefix, not a match */
        {"noveltx", 7, 50.0}, /* same length and first byte, not a match */
    };
    ranker_candidate_t c = cand(0.0, true);
    c.features = f;
    c.n_features = 5;
    assert_close(ranker_candidate_utility(&w, -1.0, &c), sigmoid(-0.5 + 0.5), 1e-15);
}

static void test_set_feature_replaces_and_rejects_bad_names(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    assert_int_equal(ranker_weights_set_feature(&w, "a", 1, 1.0), 0);
    assert_int_equal(ranker_weights_set_feature(&w, "a", 1, 3.0), 0);
    assert_int_equal(w.n_features, 1);
    assert_close(w.feature_weights[0], 3.0, 0.0);
    char longname[RANKER_FEATURE_NAME_MAX + 1];
    memset(longname, 'x', sizeof longname);
    assert_int_equal(ranker_weights_set_feature(&w, longname, RANKER_FEATURE_NAME_MAX, 1.0), -1);
    assert_int_equal(ranker_weights_set_feature(&w, longname, RANKER_FEATURE_NAME_MAX - 1, 1.0),
                     0);
    assert_int_equal(ranker_weights_set_feature(&w, "", 0, 1.0), -1);
}

static void test_set_feature_fails_when_table_is_full(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    char name[8];
    for (int i = 0; i < RANKER_MAX_FEATURES; i++) {
        const int len = snprintf(name, sizeof name, "f%d", i);
        assert_int_equal(ranker_weights_set_feature(&w, name, (size_t)len, 1.0), 0);
    }
    assert_int_equal(ranker_weights_set_feature(&w, "extra", 5, 1.0), -1);
    assert_int_equal(ranker_weights_set_feature(&w, "f3", 2, 5.0), 0); /* replace still works */
}

static void test_member_open_rate_term_only_when_known(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    w.w_open_rate = 2.0;
    const ranker_candidate_t c = cand(0.5, true);
    assert_close(ranker_candidate_utility(&w, 0.4, &c), sigmoid(0.5 + 0.8), 1e-15);
    assert_close(ranker_candidate_utility(&w, -1.0, &c), sigmoid(0.5), 1e-15);
    assert_close(ranker_candidate_utility(&w, NAN, &c), sigmoid(0.5), 1e-15);
}

static void test_non_finite_inputs_contribute_nothing(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    assert_int_equal(ranker_weights_set_feature(&w, "x", 1, 1.0), 0);
    const ranker_feature_t f[] = {{"x", 1, NAN}};
    ranker_candidate_t c = cand(INFINITY, true);
    c.features = f;
    c.n_features = 1;
    assert_close(ranker_candidate_utility(&w, -1.0, &c), 0.5, 0.0);
}

static void test_extreme_scores_do_not_overflow(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    const ranker_candidate_t hi = cand(1e6, true), lo = cand(-1e6, true);
    assert_close(ranker_candidate_utility(&w, -1.0, &hi), 1.0, 0.0);
    assert_close(ranker_candidate_utility(&w, -1.0, &lo), 0.0, 1e-300);
}

static void test_greedy_picks_argmax_with_lowest_index_on_ties(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    const ranker_params_t p = mode(RANKER_EXPLORE_NONE, 0.0, 1.0);
    const ranker_candidate_t c[] = {cand(0.1, true), cand(0.9, true), cand(0.9, true),
                                    cand(0.3, true)};
    double u[4], sp[4];
    assert_int_equal(ranker_choose(&w, &p, -1.0, c, 4, NULL, u, sp), 1);
    assert_close(sp[1], 1.0, 0.0);
    assert_close(sp[0] + sp[2] + sp[3], 0.0, 0.0);
    assert_close(u[3], sigmoid(0.3), 1e-15);
}

static void test_ineligible_is_never_chosen(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    const ranker_candidate_t c[] = {cand(5.0, false), cand(0.2, true), cand(0.1, true)};
    double u[3], sp[3];
    const ranker_params_t modes[] = {mode(RANKER_EXPLORE_NONE, 0, 1),
                                     mode(RANKER_EXPLORE_EPSILON, 1.0, 1),
                                     mode(RANKER_EXPLORE_SOFTMAX, 0, 100.0)};
    for (size_t m = 0; m < 3; m++) {
        rng_t r;
        rng_seed(&r, 9);
        for (int i = 0; i < 500; i++) {
            const int k = ranker_choose(&w, &modes[m], -1.0, c, 3, &r, u, sp);
            assert_int_not_equal(k, 0);
            assert_true(k == 1 || k == 2);
        }
        assert_close(sp[0], 0.0, 0.0);
        assert_close(u[0], sigmoid(5.0), 1e-15); /* still scored, for logging */
    }
}

static void test_no_eligible_candidate_returns_minus_one(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    const ranker_params_t p = mode(RANKER_EXPLORE_SOFTMAX, 0, 0.1);
    const ranker_candidate_t c[] = {cand(1.0, false), cand(2.0, false)};
    double u[2], sp[2] = {7, 7};
    rng_t r;
    rng_seed(&r, 1);
    assert_int_equal(ranker_choose(&w, &p, -1.0, c, 2, &r, u, sp), -1);
    assert_close(sp[0] + sp[1], 0.0, 0.0);
    assert_int_equal(ranker_choose(&w, &p, -1.0, c, 0, &r, u, sp), -1);
}

static void test_epsilon_probabilities(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    const ranker_params_t p = mode(RANKER_EXPLORE_EPSILON, 0.2, 1.0);
    const ranker_candidate_t c[] = {cand(0.1, true), cand(0.5, false), cand(0.9, true),
                                    cand(0.3, true), cand(0.2, true)};
    double u[5], sp[5];
    rng_t r;
    rng_seed(&r, 3);
    ranker_choose(&w, &p, -1.0, c, 5, &r, u, sp);
    /* k = 4 eligible: best 1 - 0.2 + 0.05, the others 0.05. */
    assert_close(sp[2], 0.85, 1e-15);
    assert_close(sp[0], 0.05, 1e-15);
    assert_close(sp[3], 0.05, 1e-15);
    assert_close(sp[4], 0.05, 1e-15);
    assert_close(sp[1], 0.0, 0.0);
}

static void test_softmax_probabilities(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    const double t = 0.1;
    const ranker_params_t p = mode(RANKER_EXPLORE_SOFTMAX, 0, t);
    const ranker_candidate_t c[] = {cand(0.0, true), cand(1.0, true), cand(-1.0, true)};
    double u[3], sp[3];
    rng_t r;
    rng_seed(&r, 3);
    ranker_choose(&w, &p, -1.0, c, 3, &r, u, sp);
    const double e0 = exp(sigmoid(0.0) / t), e1 = exp(sigmoid(1.0) / t),
                 e2 = exp(sigmoid(-1.0) / t);
    assert_close(sp[0], e0 / (e0 + e1 + e2), 1e-12);
    assert_close(sp[1], e1 / (e0 + e1 + e2), 1e-12);
    assert_close(sp[2], e2 / (e0 + e1 + e2), 1e-12);
}

static void test_softmax_tiny_temperature_is_stable(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    const ranker_params_t p = mode(RANKER_EXPLORE_SOFTMAX, 0, 1e-9);
    const ranker_candidate_t c[] = {cand(0.0, true), cand(3.0, true), cand(2.0, true)};
    double u[3], sp[3];
    rng_t r;
    rng_seed(&r, 3);
    assert_int_equal(ranker_choose(&w, &p, -1.0, c, 3, &r, u, sp), 1);
    assert_close(sp[1], 1.0, 0.0);
    assert_false(isnan(sp[0]) || isnan(sp[2]));
}

static void test_select_prob_sums_to_one(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    w.w_score = 3.0;
    enum { N = 40 };
    ranker_candidate_t c[N];
    double u[N], sp[N];
    rng_t r;
    rng_seed(&r, 11);
    const ranker_params_t modes[] = {mode(RANKER_EXPLORE_NONE, 0, 1),
                                     mode(RANKER_EXPLORE_EPSILON, 0.3, 1),
                                     mode(RANKER_EXPLORE_SOFTMAX, 0, 0.05)};
    for (int trial = 0; trial < 200; trial++) {
        const size_t n = 1 + rng_next_u64(&r) % N;
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            c[i] = cand(rng_next_unit(&r) * 4 - 2, rng_next_unit(&r) < 0.7);
            any |= c[i].eligible;
        }
        for (size_t m = 0; m < 3; m++) {
            const int k = ranker_choose(&w, &modes[m], 0.3, c, n, &r, u, sp);
            if (!any) {
                assert_int_equal(k, -1);
                continue;
            }
            assert_close(sum_of(sp, n), 1.0, 1e-12);
            assert_true(k >= 0 && (size_t)k < n && c[k].eligible && sp[k] > 0.0);
        }
    }
}

/* Draws `draws` choices with fresh decision seeds and checks each
 * candidate's frequency against select_prob within 5 binomial sd. */
static void check_empirical_frequencies(const ranker_params_t *p)
{
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    w.w_score = 4.0;
    const ranker_candidate_t c[] = {cand(0.2, true), cand(0.5, true), cand(0.9, false),
                                    cand(0.4, true), cand(-0.3, true)};
    enum { N = 5, DRAWS = 40000 };
    double u[N], sp[N], expected[N];
    unsigned counts[N] = {0};
    char opp[32];
    for (int i = 0; i < DRAWS; i++) {
        rng_t r;
        const int len = snprintf(opp, sizeof opp, "opp-%d", i);
        rng_seed_decision(&r, 2026, "member", 6, opp, (size_t)len);
        const int k = ranker_choose(&w, p, -1.0, c, N, &r, u, sp);
        assert_true(k >= 0);
        counts[k]++;
    }
    memcpy(expected, sp, sizeof expected);
    for (int i = 0; i < N; i++) {
        const double sd = sqrt(DRAWS * expected[i] * (1 - expected[i]));
        assert_close(counts[i], DRAWS * expected[i], 5 * sd + 1e-9);
    }
    assert_int_equal(counts[2], 0);
}

static void test_epsilon_draws_match_select_prob(void **state)
{
    (void)state;
    const ranker_params_t p = mode(RANKER_EXPLORE_EPSILON, 0.3, 1.0);
    check_empirical_frequencies(&p);
}

static void test_softmax_draws_match_select_prob(void **state)
{
    (void)state;
    const ranker_params_t p = mode(RANKER_EXPLORE_SOFTMAX, 0.0, 0.1);
    check_empirical_frequencies(&p);
}

static void test_same_seed_same_choice(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    const ranker_params_t p = mode(RANKER_EXPLORE_EPSILON, 1.0, 1.0); /* uniform choice */
    ranker_candidate_t c[16];
    for (int i = 0; i < 16; i++)
        c[i] = cand(i * 0.1, true);
    double u[16], sp[16];
    int differs = 0;
    for (int i = 0; i < 50; i++) {
        char opp[16];
        const int len = snprintf(opp, sizeof opp, "o%d", i);
        rng_t a, b, other;
        rng_seed_decision(&a, 1, "m", 1, opp, (size_t)len);
        rng_seed_decision(&b, 1, "m", 1, opp, (size_t)len);
        rng_seed_decision(&other, 2, "m", 1, opp, (size_t)len);
        const int ka = ranker_choose(&w, &p, -1.0, c, 16, &a, u, sp);
        assert_int_equal(ka, ranker_choose(&w, &p, -1.0, c, 16, &b, u, sp));
        differs += ka != ranker_choose(&w, &p, -1.0, c, 16, &other, u, sp);
    }
    assert_true(differs > 25); /* another seed gives other choices */
}

static void test_null_rng_falls_back_to_greedy_probabilities(void **state)
{
    (void)state;
    ranker_weights_t w;
    ranker_weights_defaults(&w);
    const ranker_params_t p = mode(RANKER_EXPLORE_EPSILON, 0.5, 1.0);
    const ranker_candidate_t c[] = {cand(0.1, true), cand(0.9, true)};
    double u[2], sp[2];
    assert_int_equal(ranker_choose(&w, &p, -1.0, c, 2, NULL, u, sp), 1);
    assert_close(sp[1], 1.0, 0.0);
}

static void test_params_defaults_check_and_names(void **state)
{
    (void)state;
    ranker_params_t p;
    ranker_params_defaults(&p);
    assert_null(ranker_params_check(&p));
    p.epsilon = 1.5;
    assert_non_null(ranker_params_check(&p));
    ranker_params_defaults(&p);
    p.temperature = 0.0;
    assert_non_null(ranker_params_check(&p));
    for (int m = RANKER_EXPLORE_NONE; m <= RANKER_EXPLORE_SOFTMAX; m++)
        assert_int_equal(ranker_exploration_parse(
                             ranker_exploration_name((ranker_exploration_t)m)), m);
    assert_int_equal(ranker_exploration_parse("greedy"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_weights_score_is_sigmoid_of_score),
        cmocka_unit_test(test_bias_and_score_weight_are_applied),
        cmocka_unit_test(test_feature_weights_apply_by_name_and_unknown_are_ignored),
        cmocka_unit_test(test_set_feature_replaces_and_rejects_bad_names),
        cmocka_unit_test(test_set_feature_fails_when_table_is_full),
        cmocka_unit_test(test_member_open_rate_term_only_when_known),
        cmocka_unit_test(test_non_finite_inputs_contribute_nothing),
        cmocka_unit_test(test_extreme_scores_do_not_overflow),
        cmocka_unit_test(test_greedy_picks_argmax_with_lowest_index_on_ties),
        cmocka_unit_test(test_ineligible_is_never_chosen),
        cmocka_unit_test(test_no_eligible_candidate_returns_minus_one),
        cmocka_unit_test(test_epsilon_probabilities),
        cmocka_unit_test(test_softmax_probabilities),
        cmocka_unit_test(test_softmax_tiny_temperature_is_stable),
        cmocka_unit_test(test_select_prob_sums_to_one),
        cmocka_unit_test(test_epsilon_draws_match_select_prob),
        cmocka_unit_test(test_softmax_draws_match_select_prob),
        cmocka_unit_test(test_same_seed_same_choice),
        cmocka_unit_test(test_null_rng_falls_back_to_greedy_probabilities),
        cmocka_unit_test(test_params_defaults_check_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
