/*
 * threshold.h - the baseline "previous single-policy system": send iff the
 * best candidate's score clears a threshold that calibrates itself online to
 * a target send rate (fraction of opportunities).
 *
 * The threshold is a running (1 - target) quantile of the observed best
 * scores, estimated by stochastic approximation (Robbins-Monro):
 *     theta += step * ([best >= theta] - target)
 * At equilibrium a fraction `target` of scores clears theta. The step is
 * gain * scale, where scale is a running mean absolute deviation of the
 * scores (so the same gains work for scores in [0, 1] or in the thousands)
 * and the gain decays from 1 like 1/sqrt(n) to a floor (fast convergence
 * from a bad start, then steady tracking of drift).
 *
 * Invariants:
 * - Pure state plus update: no I/O, no globals, no allocation. The caller
 *   owns the state (one per channel, say) and serialises updates to it.
 * - Non-finite scores are ignored by threshold_observe() and never send.
 * - Over any stretch of observations, realised rate - target =
 *   (change in theta) / (sum of steps): the error shrinks as the stretch
 *   grows, whatever the score distribution.
 */
#ifndef NOTIFD_THRESHOLD_H
#define NOTIFD_THRESHOLD_H

#include <stdbool.h>
#include <stdint.h>

/* Gain floor: the step never falls below this many score-scale units. */
#define THRESHOLD_GAIN_MIN 0.01
/* Shortest memory (in observations) of the running mean and scale. */
#define THRESHOLD_SCALE_WINDOW 1000

typedef struct threshold_state {
    double theta;  /* current threshold: send iff best >= theta */
    double mean;   /* running mean of observed best scores */
    double scale;  /* running mean absolute deviation from `mean` */
    uint64_t n;    /* observations so far */
} threshold_state_t;

/* Starts at `initial` (e.g. a guess of the (1 - target) quantile). */
void threshold_init(threshold_state_t *st, double initial);

/* The baseline's send rule. */
bool threshold_should_send(const threshold_state_t *st, double best_score);

/* Learns from one opportunity's best score; call after deciding with
 * threshold_should_send(). target_rate is clamped to [0, 1]. */
void threshold_observe(threshold_state_t *st, double best_score, double target_rate);

#endif
