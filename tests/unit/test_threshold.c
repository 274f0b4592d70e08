/*
 * test_threshold.c - unit tests for the baseline's self-calibrating
 * threshold (src/core/threshold.c): on fixed-seed score streams from known
 * distributions the realised send rate converges to the target, on any score
 * scale, and re-converges after the distribution shifts.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include "notifd/lib/rng.h"
#include "notifd/core/threshold.h"


typedef double (*score_fn)(rng_t *r, double a, double b);

static double uniform_score(rng_t *r, double lo, double hi)
{
    return lo + (hi - lo) * rng_next_unit(r);
}

static double normal_score(rng_t *r, double mean, double sd)
{
    /* Box-Muller; 1 - u keeps the log argument in (0, 1]. */
    const double u1 = 1.0 - rng_next_unit(r), u2 = rng_next_unit(r);
    return mean + sd * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Runs `n` opportunities as the daemon would (decide, then observe) and
 * returns the send rate over the last `measure` of them. */
static double run(threshold_state_t *st, rng_t *r, score_fn f, double a, double b, int n,
                  int measure, double target)
{
    int sent = 0;
    for (int i = 0; i < n; i++) {
        const double x = f(r, a, b);
        if (i >= n - measure && threshold_should_send(st, x))
            sent++;
        threshold_observe(st, x, target);
    }
    return (double)sent / measure;
}

static void test_should_send_iff_score_reaches_threshold(void **state)
{
    (void)state;
    threshold_state_t st;
    threshold_init(&st, 0.7);
    assert_true(threshold_should_send(&st, 0.7));
    assert_true(threshold_should_send(&st, 0.9));
    assert_false(threshold_should_send(&st, 0.69));
    assert_false(threshold_should_send(&st, NAN));
}

static void test_uniform_scores_reach_target_rates(void **state)
{
    (void)state;
    const double targets[] = {0.05, 0.2, 0.5};
    for (size_t k = 0; k < 3; k++) {
        threshold_state_t st;
        threshold_init(&st, 0.5);
        rng_t r;
        rng_seed(&r, 100 + k);
        const double rate = run(&st, &r, uniform_score, 0.0, 1.0, 20000, 10000, targets[k]);
        assert_close(rate, targets[k], 0.02);
        assert_close(st.theta, 1.0 - targets[k], 0.05); /* the (1 - target) quantile */
    }
}

static void test_normal_scores_reach_target_rates(void **state)
{
    (void)state;
    const double targets[] = {0.05, 0.2, 0.5};
    for (size_t k = 0; k < 3; k++) {
        threshold_state_t st;
        threshold_init(&st, 0.0); /* a poor start: far below the scores */
        rng_t r;
        rng_seed(&r, 200 + k);
        const double rate = run(&st, &r, normal_score, 5.0, 2.0, 20000, 10000, targets[k]);
        assert_close(rate, targets[k], 0.02);
    }
}

static void test_large_score_scale_converges_as_fast(void **state)
{
    (void)state;
    /* Scores in the thousands: the step follows the scale, so the same
     * number of observations suffices. */
    threshold_state_t st;
    threshold_init(&st, 0.0);
    rng_t r;
    rng_seed(&r, 300);
    const double rate = run(&st, &r, uniform_score, 1000.0, 3000.0, 20000, 10000, 0.1);
    assert_close(rate, 0.1, 0.02);
    assert_close(st.theta, 2800.0, 100.0);
}

static void test_reconverges_after_distribution_shift(void **state)
{
    (void)state;
    const double targets[] = {0.05, 0.2, 0.5};
    for (size_t k = 0; k < 3; k++) {
        threshold_state_t st;
        threshold_init(&st, 0.5);
        rng_t r;
        rng_seed(&r, 400 + k);
        run(&st, &r, normal_score, 0.0, 1.0, 20000, 1, targets[k]);
        /* Scores jump up and tighten: every score now clears the old
         * threshold until it catches up. */
        const double rate = run(&st, &r, normal_score, 3.0, 0.5, 20000, 10000, targets[k]);
        assert_close(rate, targets[k], 0.02);
    }
}

static void test_reconverges_after_downward_shift(void **state)
{
    (void)state;
    threshold_state_t st;
    threshold_init(&st, 0.5);
    rng_t r;
    rng_seed(&r, 500);
    run(&st, &r, uniform_score, 0.5, 1.0, 20000, 1, 0.2);
    const double rate = run(&st, &r, uniform_score, 0.0, 0.2, 20000, 10000, 0.2);
    assert_close(rate, 0.2, 0.02);
}

static void test_constant_scores_move_threshold_to_them(void **state)
{
    (void)state;
    /* All scores equal: the scale is 0, yet theta must reach the score so
     * the send rate is not stuck at 0 or 1 forever. */
    threshold_state_t st;
    threshold_init(&st, 10.0);
    for (int i = 0; i < 20000; i++)
        threshold_observe(&st, 0.4, 0.3);
    assert_close(st.theta, 0.4, 0.05);
}

static void test_non_finite_scores_are_ignored(void **state)
{
    (void)state;
    threshold_state_t st;
    threshold_init(&st, 0.5);
    threshold_observe(&st, 0.9, 0.1);
    const threshold_state_t before = st;
    threshold_observe(&st, NAN, 0.1);
    threshold_observe(&st, INFINITY, 0.1);
    assert_true(st.theta == before.theta && st.n == before.n && st.mean == before.mean);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_should_send_iff_score_reaches_threshold),
        cmocka_unit_test(test_uniform_scores_reach_target_rates),
        cmocka_unit_test(test_normal_scores_reach_target_rates),
        cmocka_unit_test(test_large_score_scale_converges_as_fast),
        cmocka_unit_test(test_reconverges_after_distribution_shift),
        cmocka_unit_test(test_reconverges_after_downward_shift),
        cmocka_unit_test(test_constant_scores_move_threshold_to_them),
        cmocka_unit_test(test_non_finite_scores_are_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
