/*
 * ranker.h - scoring and choosing among candidate messages (the "which
 * message" half of the fast policy).
 *
 * Once the pacing coin says "send", the ranker turns each candidate's
 * upstream score and features into a utility
 *     u = sigmoid(bias + w_score*score + sum_f w_f*feature_f
 *                 + w_open_rate*member_open_rate)
 * with one weight set per channel, and picks one: greedily, epsilon-greedily
 * or by a softmax over utilities. It reports the probability with which each
 * candidate was selectable, so the decision's propensity (p_send times the
 * chosen candidate's select_prob) is exact for off-policy evaluation.
 *
 * Invariants:
 * - Pure: no I/O, no globals, no allocation; the caller passes the output
 *   arrays. Randomness only from the rng_t passed in.
 * - Ineligible candidates (filtered by the caller, e.g. recently sent) get
 *   select_prob 0 and are never chosen; eligible ones' select_prob sum to 1.
 * - Features unknown to the weights have weight 0; non-finite scores and
 *   feature values contribute 0, so utility is always a number in (0, 1).
 * - Greedy ties go to the lowest index, so equal candidates keep the
 *   producer's order.
 */
#ifndef NOTIFD_RANKER_H
#define NOTIFD_RANKER_H

#include <stdbool.h>
#include <stddef.h>

#include "notifd/core/priority.h"
#include "notifd/lib/rng.h"

#define RANKER_MAX_FEATURES 32
#define RANKER_FEATURE_NAME_MAX 48 /* including the terminating NUL */

/* One channel's weights; feature_names[i] is a NUL-terminated name of
 * feature_name_lens[i] bytes whose weight is feature_weights[i]. */
typedef struct ranker_weights {
    double bias, w_score, w_open_rate;
    size_t n_features;
    char feature_names[RANKER_MAX_FEATURES][RANKER_FEATURE_NAME_MAX];
    unsigned char feature_name_lens[RANKER_MAX_FEATURES];
    double feature_weights[RANKER_MAX_FEATURES];
} ranker_weights_t;

typedef enum ranker_exploration {
    RANKER_EXPLORE_NONE = 0,
    RANKER_EXPLORE_EPSILON = 1,
    RANKER_EXPLORE_SOFTMAX = 2,
} ranker_exploration_t;

typedef struct ranker_params {
    ranker_exploration_t exploration;
    double epsilon;     /* EPSILON: share of uniformly random picks, [0, 1] */
    double temperature; /* SOFTMAX: > 0; lower is greedier */
} ranker_params_t;

/* A named feature value; name is NOT NUL-terminated. */
typedef struct ranker_feature {
    const char *name;
    size_t name_len;
    double value;
} ranker_feature_t;

typedef struct ranker_candidate {
    const char *id; /* not NUL-terminated */
    size_t id_len;
    double score; /* the producer's relevance score */
    const ranker_feature_t *features;
    size_t n_features;
    bool eligible; /* false: filtered (dedup, a lower class) by the caller */
    message_priority_t priority; /* PRIORITY_NORMAL unless the producer said */
} ranker_candidate_t;

/* Weights that score every candidate sigmoid(score): bias 0, w_score 1,
 * w_open_rate 0, no features. */
void ranker_weights_defaults(ranker_weights_t *weights);

/* Adds or replaces one feature weight. Returns 0, or -1 if the name is empty
 * or too long (>= RANKER_FEATURE_NAME_MAX bytes) or the table is full. */
int ranker_weights_set_feature(ranker_weights_t *weights, const char *name, size_t name_len,
                               double weight);

/* Defaults: exploration none, epsilon 0.05, temperature 0.1. */
void ranker_params_defaults(ranker_params_t *params);

/* NULL when usable, else a static message naming the problem. */
const char *ranker_params_check(const ranker_params_t *params);

/* "none", "epsilon", "softmax" -> the mode; -1 if unknown. */
int ranker_exploration_parse(const char *name);
const char *ranker_exploration_name(ranker_exploration_t exploration);

/* The candidate's utility in (0, 1). member_open_rate is the member's open
 * rate on this channel; a negative or non-finite value means unknown and
 * drops the term. */
double ranker_candidate_utility(const ranker_weights_t *weights, double member_open_rate,
                                const ranker_candidate_t *candidate);

/* Fills utility[i] (for every candidate) and select_prob[i] (0 for
 * ineligible; eligible sum to 1), draws one candidate with rng and returns
 * its index, or -1 when no candidate is eligible (select_prob all 0).
 * Greedy (NONE) draws nothing. rng may be NULL only for NONE; with NULL the
 * other modes fall back to greedy and report greedy probabilities, so the
 * reported select_prob always describes what was actually done. */
int ranker_choose(const ranker_weights_t *weights, const ranker_params_t *params,
                  double member_open_rate, const ranker_candidate_t *c, size_t n, rng_t *rng,
                  double *utility, double *select_prob);

#endif
