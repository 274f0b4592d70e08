/*
 * score_prior.h - a member's open rate as its recent candidate scores
 * predict it, for the slow policy (slow.priors.score_strength).
 *
 * A member the planner plans nothing is never sent anything, so its open
 * rate stays at the population prior for good, however good its best
 * moments are. Yet every decide keeps the member's recent best scores per
 * channel (the week hash's `<ch>:scores`, quality pacing's history), and a
 * producer's score is a prediction of P(open now). Quality pacing sends a
 * plan of k a week at about the top k/n of the member's scores (n
 * opportunities a week), so the mean score of that top share, times a
 * calibration factor, is evidence of what the member's first message of a
 * week would do, without ever sending one (docs/slow-policy.md).
 *
 * The list holds the ranker's utilities, not the producer's scores. When
 * the channel's ranker uses the score alone (no feature weights, no
 * open-rate weight), u = sigmoid(bias + w_score * score) is inverted back to
 * the score; otherwise the utility is taken as it is and only the pooled
 * calibration puts it on the scale of P(open).
 *
 * Pure: no I/O, no allocation. Invariants: every result is finite; an open
 * rate is in [0, 1].
 */
#ifndef NOTIFD_SCORE_PRIOR_H
#define NOTIFD_SCORE_PRIOR_H

#include <stdbool.h>
#include <stddef.h>

#include "notifd/core/ranker.h"
#include "notifd/core/stored_fields.h"

/* Fewer recent scores than this say nothing (quality pacing's
 * quality_min_history default). */
#define SCORE_PRIOR_MIN_SCORES 5
/* Strength of the calibration's prior factor 1, in expected opens: the
 * pooled factor moves away from 1 once the population's sends expected
 * about this many opens. */
#define SCORE_CALIBRATION_STRENGTH 20.0
/* The calibration remembers about this many of the latest members: a pass
 * of m members scales what the passes before left by (1 - 1/this)^m before
 * its own sums join them (score_calibration_merge). Long enough to be the
 * population's, short enough to follow a producer's scores as they drift. */
#define SCORE_CALIBRATION_MEMORY 50000.0

/* The producer's score behind a ranker utility u = sigmoid(bias + w_score *
 * score), when the ranker used the score alone; u is clamped into
 * (1e-9, 1 - 1e-9) first. w_score must be > 0. */
double score_prior_unrank(double u, double bias, double w_score);

/* The mean of the top `share` of the n scores (reordered in place: the
 * top ones first, in no particular order): share * n of them, the last one
 * counted in part, and at least one whole score. share is clamped into
 * (0, 1]. NAN when n is 0. */
double score_prior_top_mean(double *scores, size_t n, double share);

/* The top share quality pacing sends for the first message of a week: one
 * of the member's opportunities_per_week (its EWMA), clamped into
 * [1/256, 1]. */
double score_prior_first_share(double opportunities_per_week);

/* How the top scores become an open rate (slow.priors.score_calibration). */
typedef enum score_calibration_mode {
    /* factor * top_mean, the factor the opens of the population's sends
     * give against what their scores promised (score_calibration_factor). */
    SCORE_CALIBRATION_OPENS = 0,
    /* open_rate * top_mean / (the population's mean top_mean): the scores
     * only rank members, and the population prior keeps the level, so the
     * planner's volume stays where the priors put it. */
    SCORE_CALIBRATION_PRIOR = 1,
} score_calibration_mode_t;

/* "opens", "prior" -> the mode; -1 if unknown. */
int score_calibration_mode_parse(const char *name);

/* Pooled calibration: the members' top-share means, for the population's
 * level; and what their sends expected (sends times the top-share mean)
 * against what they got (opens). Zero-initialised: no members yet. A pass
 * adds its members to one (plain sums), and plans with another, the passes
 * before merged (score_calibration_merge): a member's rate then does not
 * depend on the order the pass reads members in, which differs between
 * instances (and so between two runs of notifd-sim, which must agree bit
 * for bit). */
typedef struct score_calibration {
    double opens;
    double expected;
    double top_sum;   /* (forgetting) sum of the members' top-share means */
    double members;   /* (forgetting) how many */
} score_calibration_t;

/* Adds one member's channel: its top-share mean, and `opens` of `sends`.
 * A non-finite top_mean adds nothing; non-finite or negative opens or sends
 * (or a negative top_mean) add the member to the level only. Opens beyond
 * sends are capped. */
void score_calibration_add(score_calibration_t *c, double opens, double sends,
                           double top_mean);

/* A finished pass's sums into the ones passes plan with: `into` is scaled
 * by (1 - 1/SCORE_CALIBRATION_MEMORY)^(pass->members), then pass is added. */
void score_calibration_merge(score_calibration_t *into, const score_calibration_t *pass);

/* The members' mean top-share mean; NAN without members. */
double score_calibration_level(const score_calibration_t *c);

/* SCORE_CALIBRATION_PRIOR: open_rate * top_mean / level, clamped into
 * [0, 1]; false (nothing written) unless level > 0 and all are finite. */
bool score_prior_relative_rate(double top_mean, double level, double open_rate, double *out);

/* Opens per expected open, shrunk toward 1 with SCORE_CALIBRATION_STRENGTH:
 * (opens + s) / (expected + s). 1 without data. */
double score_calibration_factor(const score_calibration_t *c);

/* The score-predicted P(open) of the member's first message of a week:
 * factor * top_mean, clamped into [0, 1]; false (and nothing written) when
 * top_mean or factor is not finite. */
bool score_prior_open_rate(double top_mean, double factor, double *out);

/* "0.61,0.58,...": a `<ch>:scores` value, newest first, into out[] (at most
 * max numbers). Each number goes through stored_parse_real(STORED_SCORE): a
 * bad one is missing (skipped and counted in *invalid), the rest are kept.
 * Returns how many were kept. */
size_t score_prior_parse_list(const char *s, size_t len, double *out, size_t max,
                              stored_invalid_t *invalid);

/* Whether the list's utilities can be turned back into producer scores:
 * the ranker uses the score alone (no feature weights, no open-rate
 * weight) with a positive score weight. */
bool score_prior_ranker_invertible(const ranker_weights_t *w);

/* One channel's recent list (n utilities, reordered in place) to the mean
 * score of its top share at `opportunities_per_week` (score_prior_first_share),
 * as producer scores when the ranker is invertible. False with fewer than
 * SCORE_PRIOR_MIN_SCORES scores. */
bool score_prior_channel_top_mean(double *utilities, size_t n, double opportunities_per_week,
                                  const ranker_weights_t *ranker, double *top_mean);

#endif
