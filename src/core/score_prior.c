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

static void swap(double *a, double *b)
{
    double t = *a;
    *a = *b;
    *b = t;
}

/* Reorders x[0..n) so that x[k] is the (k+1)-th largest and x[0..k) are all
 * >= it (a quickselect, descending; k < n). O(n) on average: the planner
 * needs the top tenth of a hundred scores per member and channel, not the
 * whole list sorted. The pivot is the middle of three, so a list already in
 * order (scores of a steady member) does not go quadratic. */
static void select_top(double *x, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x[mid] > x[lo])
            swap(&x[mid], &x[lo]);
        if (x[hi] > x[lo])
            swap(&x[hi], &x[lo]);
        if (x[hi] > x[mid])
            swap(&x[hi], &x[mid]);
        /* x[lo] >= x[mid] >= x[hi]: the median of three in x[mid]. */
        double pivot = x[mid];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (x[i] > pivot)
                i++;
            while (x[j] < pivot)
                j--;
            if (i <= j) {
                swap(&x[i], &x[j]);
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        /* x[lo..j] >= pivot >= x[i..hi], and everything between equals it. */
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
}

/* The mean of the top share of x (reordered), each value through
 * unrank(bias, w_score) first when `invert`: the inverse is increasing, so
 * the top of the utilities is the top of the scores, and only the top few
 * need the logarithm. */
static double mean_of_top(double *x, size_t n, double share, bool invert, double bias,
                       double w_score)
{
    if (n == 0)
        return NAN;
    if (!(share > 0.0))
        share = 1.0 / (double)n;
    if (share > 1.0)
        share = 1.0;
    /* share * n values, the last in part: the mean of a quantile's tail,
     * without a jump each time n * share crosses an integer. */
    double take = share * (double)n;
    if (take < 1.0)
        take = 1.0;
    size_t whole = (size_t)ceil(take - 1e-12);
    if (whole > n)
        whole = n;
    select_top(x, n, whole - 1);
    /* x[whole - 1] is the last counted (in part); the rest of the top are
     * before it, in any order. */
    double sum = 0.0, last = x[whole - 1];
    for (size_t i = 0; i + 1 < whole; i++)
        sum += invert ? score_prior_unrank(x[i], bias, w_score) : x[i];
    if (invert)
        last = score_prior_unrank(last, bias, w_score);
    sum += (take - (double)(whole - 1)) * last;
    return sum / take;
}

double score_prior_top_mean(double *scores, size_t n, double share)
{
    return mean_of_top(scores, n, share, false, 0.0, 1.0);
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
    c->top_sum += top_mean;
    c->members += 1.0;
    if (!isfinite(opens) || !isfinite(sends) || opens < 0.0 || sends < 0.0 || top_mean < 0.0)
        return;
    /* A click implies an open, and feedback for messages notifd never saw
     * is capped, as in the estimate: a rate stays a rate. */
    c->opens += opens < sends ? opens : sends;
    c->expected += sends * top_mean;
}

void score_calibration_merge(score_calibration_t *into, const score_calibration_t *pass)
{
    double keep = pow(1.0 - 1.0 / SCORE_CALIBRATION_MEMORY, pass->members);
    into->opens = into->opens * keep + pass->opens;
    into->expected = into->expected * keep + pass->expected;
    into->top_sum = into->top_sum * keep + pass->top_sum;
    into->members = into->members * keep + pass->members;
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
    bool invert = ranker != NULL && score_prior_ranker_invertible(ranker);
    double m = mean_of_top(utilities, n, score_prior_first_share(opportunities_per_week), invert,
                           invert ? ranker->bias : 0.0, invert ? ranker->w_score : 1.0);
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
