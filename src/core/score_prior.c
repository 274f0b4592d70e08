/*
 * score_prior.c - the open rate a member's recent scores predict (see
 * score_prior.h and docs/slow-policy.md, "Score prior").
 */
#include "notifd/core/score_prior.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double score_prior_unrank(double u, double bias, double w_score)
{
    /* The list keeps five significant digits, so a utility of 1 or 0 is a
     * rounded one, not an infinite logit. */
    const double eps = 1e-9;
    if (!(u > eps))
        u = eps;
    if (!(u < 1.0 - eps))
        u = 1.0 - eps;
    return (log(u / (1.0 - u)) - bias) / w_score;
}

static int by_value_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

double score_prior_top_mean(double *scores, size_t n, double share)
{
    if (n == 0)
        return NAN;
    if (!(share > 0.0))
        share = 1.0 / (double)n;
    if (share > 1.0)
        share = 1.0;
    qsort(scores, n, sizeof *scores, by_value_desc);
    /* share * n scores, the last in part: the mean of a quantile's tail,
     * without a jump each time n * share crosses an integer. */
    double take = share * (double)n;
    if (take < 1.0)
        take = 1.0;
    double sum = 0.0, weight = 0.0;
    for (size_t i = 0; i < n && weight < take; i++) {
        double w = take - weight < 1.0 ? take - weight : 1.0;
        sum += w * scores[i];
        weight += w;
    }
    return sum / weight;
}

double score_prior_first_share(double opportunities_per_week)
{
    /* A member with more than 256 opportunities a week is rare, and its
     * list (at most 256 scores) could not resolve a finer tail anyway. */
    if (!(opportunities_per_week > 1.0))
        return 1.0;
    double share = 1.0 / opportunities_per_week;
    return share < 1.0 / 256.0 ? 1.0 / 256.0 : share;
}

void score_calibration_add(score_calibration_t *c, double opens, double sends,
                           double top_mean)
{
    if (!isfinite(top_mean))
        return;
    const double keep = 1.0 - 1.0 / SCORE_CALIBRATION_MEMORY;
    c->opens *= keep;
    c->expected *= keep;
    c->top_sum *= keep;
    c->members *= keep;
    c->top_sum += top_mean;
    c->members += 1.0;
    if (!isfinite(opens) || !isfinite(sends) || opens < 0.0 || sends < 0.0 || top_mean < 0.0)
        return;
    /* A click implies an open, and feedback for messages notifd never saw
     * is capped, as in the estimate: a rate stays a rate. */
    c->opens += opens < sends ? opens : sends;
    c->expected += sends * top_mean;
}

double score_calibration_factor(const score_calibration_t *c)
{
    const double s = SCORE_CALIBRATION_STRENGTH;
    return (c->opens + s) / (c->expected + s);
}

bool score_prior_open_rate(double top_mean, double factor, double *out)
{
    if (!isfinite(top_mean) || !isfinite(factor))
        return false;
    double p = factor * top_mean;
    *out = p < 0.0 ? 0.0 : p > 1.0 ? 1.0 : p;
    return true;
}

size_t score_prior_parse_list(const char *s, size_t len, double *out, size_t max,
                              stored_invalid_t *invalid)
{
    const char *end = s + len;
    size_t n = 0;
    while (s < end && n < max) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *stop = comma ? comma : end;
        double x;
        if (stored_parse_real(STORED_SCORE, s, (size_t)(stop - s), &x, invalid))
            out[n++] = x;
        s = comma ? comma + 1 : end;
    }
    return n;
}

bool score_prior_ranker_invertible(const ranker_weights_t *w)
{
    /* w_score > 0 only: with a negative weight the ranker's best moments
     * are the lowest scores, and the score is no prediction of an open. */
    return w->n_features == 0 && w->w_open_rate == 0.0 && w->w_score > 0.0 &&
           isfinite(w->w_score) && isfinite(w->bias);
}

bool score_prior_channel_top_mean(double *utilities, size_t n, double opportunities_per_week,
                                  const ranker_weights_t *ranker, double *top_mean)
{
    if (n < SCORE_PRIOR_MIN_SCORES)
        return false;
    /* The inverse is increasing (w_score > 0), so the top share of scores
     * is the top share of utilities quality pacing sends. */
    if (ranker != NULL && score_prior_ranker_invertible(ranker))
        for (size_t i = 0; i < n; i++)
            utilities[i] = score_prior_unrank(utilities[i], ranker->bias, ranker->w_score);
    double m = score_prior_top_mean(utilities, n, score_prior_first_share(opportunities_per_week));
    if (!isfinite(m))
        return false;
    *top_mean = m;
    return true;
}

int score_calibration_mode_parse(const char *name)
{
    if (strcmp(name, "opens") == 0)
        return SCORE_CALIBRATION_OPENS;
    if (strcmp(name, "prior") == 0)
        return SCORE_CALIBRATION_PRIOR;
    return -1;
}

double score_calibration_level(const score_calibration_t *c)
{
    return c->members > 0.0 ? c->top_sum / c->members : NAN;
}

bool score_prior_relative_rate(double top_mean, double level, double open_rate, double *out)
{
    if (!isfinite(top_mean) || !isfinite(level) || !isfinite(open_rate) || !(level > 0.0))
        return false;
    /* Scores can be negative (a producer's scale, or an inverted utility
     * below 0.5): a member below 0 is as far from the level as a rate can
     * say, 0. */
    double p = open_rate * top_mean / level;
    *out = p < 0.0 ? 0.0 : p > 1.0 ? 1.0 : p;
    return true;
}
