/*
 * threshold.c - the baseline's self-calibrating send threshold (see
 * threshold.h for the update rule).
 *
 * Why a stochastic-approximation quantile and not a window of scores: it is
 * four doubles of state, O(1) per opportunity, trivially persisted, and by
 * the telescoping identity in threshold.h its realised send rate can only
 * drift from the target by as much as the threshold itself moves.
 */
#include "notifd/core/threshold.h"

#include <math.h>

void threshold_init(threshold_state_t *st, double initial)
{
    st->theta = isfinite(initial) ? initial : 0.0;
    st->mean = st->theta;
    st->scale = 0.0;
    st->n = 0;
}

bool threshold_should_send(const threshold_state_t *st, double best_score)
{
    return isfinite(best_score) && best_score >= st->theta;
}

void threshold_observe(threshold_state_t *st, double best_score, double target_rate)
{
    if (!isfinite(best_score))
        return;
    double r = target_rate;
    r = (r >= 0.0) ? (r > 1.0 ? 1.0 : r) : 0.0;
    st->n++;

    /* Running mean and mean absolute deviation: exact averages for the
     * first THRESHOLD_SCALE_WINDOW scores (so the scale is usable after a
     * handful of them), then exponential with that window to follow drift. */
    const double n = (double)st->n;
    const double beta = n < THRESHOLD_SCALE_WINDOW ? 1.0 / n : 1.0 / THRESHOLD_SCALE_WINDOW;
    st->mean += beta * (best_score - st->mean);
    st->scale += beta * (fabs(best_score - st->mean) - st->scale);

    /* Robbins-Monro step. The 1/sqrt(n) gain moves theta across the score
     * range in the first few hundred observations; the floor keeps it
     * tracking a drifting distribution instead of freezing. The scale is
     * at least a tenth of theta's distance from the mean: when the scores
     * are (nearly) all equal their spread is ~0, and when they jump far
     * away the spread lags; either way theta must still walk to where the
     * scores are. Near equilibrium the spread term dominates (theta is
     * rarely more than a few spreads from the mean). */
    double gain = 1.0 / sqrt(n);
    if (gain < THRESHOLD_GAIN_MIN)
        gain = THRESHOLD_GAIN_MIN;
    double scale = st->scale;
    const double far = 0.1 * fabs(st->mean - st->theta);
    if (scale < far)
        scale = far;
    const double hit = best_score >= st->theta ? 1.0 : 0.0;
    st->theta += gain * scale * (hit - r);
}
