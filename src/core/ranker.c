/*
 * ranker.c - candidate utilities and the exploration policy (see ranker.h).
 *
 * Feature weights are looked up by name with a linear scan: at most
 * RANKER_MAX_FEATURES short names, which is faster than hashing for the
 * handful of features a candidate carries, and needs no index to rebuild
 * when the config is reloaded. Length and first byte are compared before
 * memcmp: a call per feature and weight was 5% of notifd's CPU per decide.
 */
#include "notifd/core/ranker.h"

#include <math.h>
#include <string.h>

static const char *const exploration_names[] = {"none", "epsilon", "softmax"};
#define N_EXPLORATIONS (sizeof exploration_names / sizeof exploration_names[0])

int ranker_exploration_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < N_EXPLORATIONS; i++)
        if (strcmp(name, exploration_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *ranker_exploration_name(ranker_exploration_t exploration)
{
    return ((unsigned)exploration < N_EXPLORATIONS) ? exploration_names[exploration] : "?";
}

void ranker_weights_defaults(ranker_weights_t *weights)
{
    memset(weights, 0, sizeof *weights);
    weights->w_score = 1.0;
}

static int feature_index(const ranker_weights_t *weights, const char *name, size_t name_len)
{
    if (name_len >= RANKER_FEATURE_NAME_MAX)
        return -1; /* cannot match any stored name */
    for (size_t i = 0; i < weights->n_features; i++) {
        const char *stored = weights->feature_names[i];
        if (weights->feature_name_lens[i] == name_len &&
            (name_len == 0 || stored[0] == name[0]) && memcmp(stored, name, name_len) == 0)
            return (int)i;
    }
    return -1;
}

int ranker_weights_set_feature(ranker_weights_t *weights, const char *name, size_t name_len,
                               double weight)
{
    if (name == NULL || name_len == 0 || name_len >= RANKER_FEATURE_NAME_MAX ||
        memchr(name, '\0', name_len) != NULL)
        return -1;
    int i = feature_index(weights, name, name_len);
    if (i < 0) {
        if (weights->n_features >= RANKER_MAX_FEATURES)
            return -1;
        i = (int)weights->n_features++;
        memcpy(weights->feature_names[i], name, name_len);
        weights->feature_names[i][name_len] = '\0';
        weights->feature_name_lens[i] = (unsigned char)name_len;
    }
    weights->feature_weights[i] = weight;
    return 0;
}

void ranker_params_defaults(ranker_params_t *params)
{
    params->exploration = RANKER_EXPLORE_NONE;
    /* 5% exploration: enough logged off-greedy choices to evaluate
     * alternatives within days, cheap in relevance. */
    params->epsilon = 0.05;
    /* Utilities live in (0, 1); at T = 0.1 a utility gap of 0.1 is a factor
     * e in selection odds, so clearly better messages still dominate. */
    params->temperature = 0.1;
}

const char *ranker_params_check(const ranker_params_t *params)
{
    if ((unsigned)params->exploration >= N_EXPLORATIONS)
        return "unknown exploration mode";
    if (!(params->epsilon >= 0.0 && params->epsilon <= 1.0))
        return "epsilon must be in [0, 1]";
    if (!(params->temperature > 0.0) || !isfinite(params->temperature))
        return "softmax temperature must be > 0";
    return NULL;
}

static double sigmoid(double z)
{
    /* Two branches so exp() never overflows: exp of a non-positive number. */
    if (z >= 0.0)
        return 1.0 / (1.0 + exp(-z));
    const double e = exp(z);
    return e / (1.0 + e);
}

static double finite_or_zero(double x) { return isfinite(x) ? x : 0.0; }

double ranker_candidate_utility(const ranker_weights_t *weights, double member_open_rate,
                                const ranker_candidate_t *candidate)
{
    double z = weights->bias + weights->w_score * finite_or_zero(candidate->score);
    for (size_t i = 0; i < candidate->n_features; i++) {
        const ranker_feature_t *f = &candidate->features[i];
        const int k = feature_index(weights, f->name, f->name_len);
        if (k >= 0)
            z += weights->feature_weights[k] * finite_or_zero(f->value);
    }
    if (member_open_rate >= 0.0 && isfinite(member_open_rate))
        z += weights->w_open_rate * member_open_rate;
    /* Infinite weights from a bad config would give NaN; sigmoid(NaN) is
     * NaN, so settle on the neutral 0.5 rather than poisoning selection. */
    return isnan(z) ? 0.5 : sigmoid(z);
}

/* Inverse-CDF draw over select_prob; never returns an index whose
 * probability is 0. Rounding can leave the cumulative sum a hair under u, in
 * which case the last selectable candidate is taken. */
static int draw_index(const double *select_prob, size_t n, double u)
{
    double cum = 0.0;
    int last = -1;
    for (size_t i = 0; i < n; i++) {
        if (select_prob[i] <= 0.0)
            continue;
        cum += select_prob[i];
        last = (int)i;
        if (u < cum)
            return (int)i;
    }
    return last;
}

int ranker_choose(const ranker_weights_t *weights, const ranker_params_t *params,
                  double member_open_rate, const ranker_candidate_t *c, size_t n, rng_t *rng,
                  double *utility, double *select_prob)
{
    int best = -1;
    size_t eligible = 0;
    for (size_t i = 0; i < n; i++) {
        utility[i] = ranker_candidate_utility(weights, member_open_rate, &c[i]);
        select_prob[i] = 0.0;
        if (!c[i].eligible)
            continue;
        eligible++;
        if (best < 0 || utility[i] > utility[best]) /* strict: lower index wins ties */
            best = (int)i;
    }
    if (best < 0)
        return -1;

    ranker_exploration_t mode = params->exploration;
    if (rng == NULL || eligible == 1)
        mode = RANKER_EXPLORE_NONE; /* nothing random to do, or no way to do it */

    switch (mode) {
    case RANKER_EXPLORE_EPSILON: {
        double eps = params->epsilon;
        eps = (eps >= 0.0) ? (eps > 1.0 ? 1.0 : eps) : 0.0;
        const double share = eps / (double)eligible;
        for (size_t i = 0; i < n; i++)
            if (c[i].eligible)
                select_prob[i] = share;
        select_prob[best] = 1.0 - eps + share;
        return draw_index(select_prob, n, rng_next_unit(rng));
    }
    case RANKER_EXPLORE_SOFTMAX: {
        const double t = params->temperature;
        if (!(t > 0.0) || !isfinite(t))
            break; /* unusable temperature: greedy */
        /* Subtracting the maximum keeps every exponent <= 0: no overflow,
         * and the best candidate's term is exactly 1. */
        double sum = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (!c[i].eligible)
                continue;
            select_prob[i] = exp((utility[i] - utility[best]) / t);
            sum += select_prob[i];
        }
        for (size_t i = 0; i < n; i++)
            select_prob[i] /= sum;
        return draw_index(select_prob, n, rng_next_unit(rng));
    }
    case RANKER_EXPLORE_NONE:
        break;
    }
    for (size_t i = 0; i < n; i++)
        select_prob[i] = 0.0;
    select_prob[best] = 1.0;
    return best;
}
