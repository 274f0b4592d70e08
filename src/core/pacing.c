/*
 * pacing.c - the weighted coin of the fast policy (see pacing.h and
 * docs/fast-policy.md for the maths).
 *
 * Everything here is a few floating-point operations per decision; the only
 * loop over data is the quality strategy's single pass over at most
 * PACING_MAX_RECENT recent scores, which needs no sorting and no buffer.
 */
#include "notifd/core/pacing.h"

#include <math.h>
#include <string.h>

#include "notifd/lib/hash.h"
#include "notifd/core/types.h"

static const char *const strategy_names[] = {"uniform", "budget", "quality"};
#define N_STRATEGIES (sizeof strategy_names / sizeof strategy_names[0])

static const char *const quantile_names[] = {"rate", "budget"};
#define N_QUANTILES (sizeof quantile_names / sizeof quantile_names[0])

int pacing_strategy_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < N_STRATEGIES; i++)
        if (strcmp(name, strategy_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *pacing_strategy_name(pacing_strategy_t strategy)
{
    return ((unsigned)strategy < N_STRATEGIES) ? strategy_names[strategy] : "?";
}

int pacing_quantile_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < N_QUANTILES; i++)
        if (strcmp(name, quantile_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *pacing_quantile_name(pacing_quantile_t quantile)
{
    return ((unsigned)quantile < N_QUANTILES) ? quantile_names[quantile] : "?";
}

void pacing_params_defaults(pacing_params_t *params)
{
    memset(params, 0, sizeof *params);
    /* Budget: its weekly count tracks the plan with far less variance than
     * the plain coin and needs no score history. The simulator compares the
     * strategies; change the default only on its evidence. */
    params->strategy = PACING_BUDGET;
    params->has_profile = false;
    for (int d = 0; d < PACING_DAYS_PER_WEEK; d++)
        params->profile[d] = 1.0;
    /* 4 opportunities a day: a middling guess. A wrong prior only costs the
     * member's first week (budget pacing corrects within the week, and the
     * EWMA replaces the prior once a week has been observed). */
    params->prior_opportunities_per_week = 28.0;
    /* 0.3: the newest week counts for 30%, so a change in the member's
     * opportunity rate is mostly absorbed after 2-3 weeks, while one odd
     * week moves the estimate by less than a third. */
    params->ewma_alpha = 0.3;
    /* Budget: the bar follows the week's sends, so it comes down when a
     * week runs behind its plan. A fixed bar at the plan's rate delivers
     * the plan only while each opportunity's best is as good as the recent
     * ones; where the catalogue repeats and dedup takes the best message
     * away, it starved weeks to a fraction of the plan, and the hard cap
     * clipped the weeks that ran over, so even fresh candidates got 70% of
     * it (tests/integration/plan_delivery.py). */
    params->quality_quantile = PACING_QUANTILE_BUDGET;
    /* The rank rule sends at rate p on average with any number of recent
     * scores (pacing_quality_probability), and even a handful of them picks
     * better moments than the coin; waiting for 20 spent a member's first
     * weeks on random ones (three on email, at one opportunity a day). Five
     * keeps a single odd score from deciding alone. */
    params->quality_min_history = 5;
    /* Scores are probabilities-like numbers in [0, 1]; a spread below 1e-6
     * is rounding noise, not a difference worth waiting for. */
    params->quality_flat_epsilon = 1e-6;
}

static bool profile_usable(const pacing_params_t *params, double *sum_out)
{
    double sum = 0.0;
    for (int d = 0; d < PACING_DAYS_PER_WEEK; d++) {
        const double w = params->profile[d];
        if (!isfinite(w) || w < 0.0)
            return false;
        sum += w;
    }
    *sum_out = sum;
    return sum > 0.0 && isfinite(sum);
}

const char *pacing_params_check(const pacing_params_t *params)
{
    double sum;
    if ((unsigned)params->strategy >= N_STRATEGIES)
        return "unknown pacing strategy";
    if ((unsigned)params->quality_quantile >= N_QUANTILES)
        return "unknown quality quantile";
    if (params->has_profile && !profile_usable(params, &sum))
        return "pacing profile needs 7 finite weights >= 0 with a positive sum";
    if (!isfinite(params->prior_opportunities_per_week) ||
        params->prior_opportunities_per_week <= 0.0)
        return "prior opportunities per week must be > 0";
    if (!(params->ewma_alpha > 0.0 && params->ewma_alpha <= 1.0))
        return "ewma alpha must be in (0, 1]";

    if (!isfinite(params->quality_flat_epsilon) || params->quality_flat_epsilon < 0.0)
        return "quality flat epsilon must be >= 0";
    return NULL;
}

double pacing_day_weight(const pacing_params_t *params, int day_of_week)
{
    double sum;
    if (day_of_week < 0 || day_of_week >= PACING_DAYS_PER_WEEK)
        return 0.0;
    /* An unusable profile is ignored rather than allowed to produce NaN
     * probabilities; config validation reports it. */
    if (!params->has_profile || !profile_usable(params, &sum))
        return 1.0;
    return params->profile[day_of_week] * PACING_DAYS_PER_WEEK / sum;
}

static int64_t clamp_seconds_into_week(int64_t s)
{
    if (s < 0)
        return 0;
    if (s >= NOTIFD_SECONDS_PER_WEEK)
        return NOTIFD_SECONDS_PER_WEEK - 1;
    return s;
}

double pacing_week_fraction_elapsed(const pacing_params_t *params, int64_t seconds_into_week)
{
    const int64_t s = clamp_seconds_into_week(seconds_into_week);
    const int day = (int)(s / NOTIFD_SECONDS_PER_DAY);
    const double in_day = (double)(s % NOTIFD_SECONDS_PER_DAY) / NOTIFD_SECONDS_PER_DAY;
    double mass = 0.0;
    for (int d = 0; d < day; d++)
        mass += pacing_day_weight(params, d);
    mass += pacing_day_weight(params, day) * in_day;
    const double f = mass / PACING_DAYS_PER_WEEK;
    return f < 0.0 ? 0.0 : (f > 1.0 ? 1.0 : f);
}

static double clamp_unit(double p)
{
    if (!(p > 0.0)) /* also NaN */
        return 0.0;
    return p > 1.0 ? 1.0 : p;
}

/* A plan split into its whole part and its fraction in [0, 1), with float
 * noise at either end of the fraction snapped away (2.9999999999 is 3). */
static void split_plan(double per_week, double *whole, double *frac)
{
    double w = floor(per_week);
    double f = per_week - w;
    if (f > 1.0 - 1e-9) {
        w += 1.0;
        f = 0.0;
    } else if (f < 1e-9) {
        f = 0.0;
    }
    *whole = w;
    *frac = f;
}

static double expected_per_week(const pacing_params_t *params, const pacing_input_t *in)
{
    double e = in->expected_opportunities;
    if (!(e > 0.0) || !isfinite(e))
        e = params->prior_opportunities_per_week;
    if (!(e > 0.0) || !isfinite(e))
        e = 1.0; /* unusable prior (rejected by pacing_params_check) */
    return e;
}

double pacing_uniform_due(const pacing_params_t *params, double per_week, int64_t week_index,
                          int64_t seconds_into_week, double member_phase)
{
    if (!isfinite(per_week) || per_week <= 0.0)
        return 0.0;
    const double u = isfinite(member_phase) && member_phase >= 0.0 && member_phase < 1.0
                         ? member_phase
                         : 0.0;
    const double f = pacing_week_fraction_elapsed(params, seconds_into_week);
    /* The week's index keeps the schedule running across weeks; it is
     * taken modulo a cycle long enough for any plan (every plan of up to
     * nine digits after the point repeats within 10^9 weeks) so that
     * P * week stays exact in a double whatever week is asked for. */
    const double w = (double)(week_index % 1000000000LL);
    /* The schedule's points are the integers n >= u + P * w: this week's
     * are those in [u + P * w, u + P * (w + 1)), so a point that falls
     * exactly on a week boundary opens the next week instead of closing
     * this one after its last opportunity. */
    const double due = floor(u + per_week * (w + f)) - ceil(u + per_week * w) + 1.0;
    return due > 0.0 ? due : 0.0;
}

/* The plain weighted coin: the plan's share of the expected opportunities,
 * shaped by today's profile weight. */
static double rate_probability(const pacing_input_t *in, double e, double w)
{
    return clamp_unit(in->per_week * w / e);
}

/* A usable plan's whole part and fraction; false when the plan is not a
 * positive number or has no fraction (nothing of it is a chance). */
static bool plan_fraction(double per_week, double *whole, double *frac)
{
    if (!isfinite(per_week) || per_week <= 0.0)
        return false;
    split_plan(per_week, whole, frac);
    return *frac > 0.0;
}

static double sane_balance(double balance) { return isfinite(balance) ? balance : 0.0; }

double pacing_extra_share(double per_week, double balance)
{
    double whole, frac;
    if (!plan_fraction(per_week, &whole, &frac))
        return 0.0;
    const double g = frac + sane_balance(balance) / PACING_PAYBACK_WEEKS;
    if (!(g > 0.0))
        return 0.0;
    return g > PACING_MAX_WEEK_SHARE ? PACING_MAX_WEEK_SHARE : g;
}

double pacing_balance_update(double balance, double per_week, double sent, double seen)
{
    double whole, frac;
    if (!plan_fraction(per_week, &whole, &frac))
        return 0.0;
    if (!(seen > 0.0) || seen > 1.0)
        seen = 1.0;
    const double extra = isfinite(sent) && sent > whole ? sent - whole : 0.0;
    const double next = sane_balance(balance) + frac * seen - extra;
    if (next > PACING_BALANCE_LIMIT)
        return PACING_BALANCE_LIMIT;
    return next < -PACING_BALANCE_LIMIT ? -PACING_BALANCE_LIMIT : next;
}

/* The budget's probability. The plan's whole part is this week's budget,
 * spread over the week's remaining opportunities and spent by Sunday. A
 * fraction f is a chance instead: the week gets at most one extra send, with
 * probability g = pacing_extra_share() (f, plus what the balance owes),
 * spread evenly over the part of the week the 7-day cap leaves open, so the
 * week's first extra is as likely on Thursday as on Monday (a constant rate
 * put two thirds of them in the first half). Nothing forces it out by
 * the week's end: under quality pacing a week without a good moment goes
 * without, and the balance makes up for it in the weeks after, so the mean
 * stays the plan's. (Forcing it, as a whole send is, made every casual
 * member's week of a plan of 0.5 end with a send whatever the week
 * offered, and the baseline beat that in notifd-sim.) */
static double budget_probability(const pacing_params_t *params, const pacing_input_t *in,
                                 double e, double w)
{
    if (w <= 0.0)
        return 0.0;
    double whole, frac;
    split_plan(in->per_week, &whole, &frac);
    const double sent = (double)in->sent_this_week;
    const double base_left = whole > sent ? whole - sent : 0.0;
    /* Opportunities still expected this week, counted at today's rate:
     * E * (1 - F) is the remaining opportunity mass in profile units, and
     * dividing by today's weight w turns it into "opportunities at the pace
     * of today". That makes sends follow the profile (p is 0 on a weight-0
     * day) and reduces to remaining / (E * (1 - F)) without one. The floor of
     * one opportunity keeps p finite at the end of the week. */
    const double f = pacing_week_fraction_elapsed(params, in->seconds_into_week);
    double left_week = e * (1.0 - f) / w;
    if (left_week < 1.0)
        left_week = 1.0;
    double p = base_left / left_week;
    if (frac > 0.0 && sent <= whole) {
        const double g = pacing_extra_share(in->per_week, in->fraction_balance);
        double b = in->unblocked_from;
        b = b > 0.0 && b < f ? b : (b >= f && f < 1.0 ? f : 0.0);
        /* The week's chance g spread evenly over the unblocked part [b, 1):
         * the survival 1 - g (F - b) / (1 - b), whose hazard is this. */
        p += g * (w / e) / ((1.0 - b) - g * (f - b));
    }
    return clamp_unit(p);
}

double pacing_quality_probability(double p, double best, const double *recent, size_t n)
{
    p = clamp_unit(p);
    if (n > PACING_MAX_RECENT)
        n = PACING_MAX_RECENT;
    if (!isfinite(best) || recent == NULL)
        return p;
    size_t above = 0, equal = 0, used = 0;
    for (size_t i = 0; i < n; i++) {
        const double x = recent[i];
        if (!isfinite(x))
            continue;
        used++;
        if (x > best)
            above++;
        else if (x == best)
            equal++;
    }
    if (used == 0)
        return p;
    /* Rank the current score among the used+1 values (ties in random order)
     * and send if it lands in the top p share of ranks. Rank slot r (1-based
     * from the top) is sent with probability clamp(p*(used+1) - (r-1), 0, 1),
     * so the top floor(p*(used+1)) slots always send and the next one
     * partly; averaged over the equal+1 slots best may occupy, that is: */
    double mass = p * (double)(used + 1) - (double)above;
    const double slots = (double)(equal + 1);
    if (mass < 0.0)
        mass = 0.0;
    if (mass > slots)
        mass = slots;
    return clamp_unit(mass / slots);
}

double pacing_send_probability(const pacing_params_t *params, const pacing_input_t *in)
{
    if (!isfinite(in->per_week) || in->per_week <= 0.0)
        return 0.0;
    const double e = expected_per_week(params, in);
    const int64_t s = clamp_seconds_into_week(in->seconds_into_week);
    const double w = pacing_day_weight(params, (int)(s / NOTIFD_SECONDS_PER_DAY));

    switch (params->strategy) {
    case PACING_UNIFORM:
        if (w <= 0.0)
            return 0.0; /* a day the profile rules out: the send waits */
        /* Send when the schedule is ahead of the week's sends: at once if
         * a send was held back (quiet hours, no opportunity), never ahead of
         * it. Whatever the opportunities, the week's count is the plan's. */
        return (double)in->sent_this_week <
                       pacing_uniform_due(params, in->per_week, in->week_index,
                                          in->seconds_into_week, in->member_phase)
                   ? 1.0
                   : 0.0;
    case PACING_BUDGET:
        return budget_probability(params, in, e, w);
    case PACING_QUALITY: {
        const double pb = params->quality_quantile == PACING_QUANTILE_BUDGET
                              ? budget_probability(params, in, e, w)
                              : rate_probability(in, e, w);
        if (pb <= 0.0 || pb >= 1.0)
            return pb; /* nothing to spend, or every opportunity is wanted */
        size_t n = in->n_recent < PACING_MAX_RECENT ? in->n_recent : PACING_MAX_RECENT;
        if (in->recent_best_scores == NULL || n < params->quality_min_history ||
            !isfinite(in->best_score))
            return pb;
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            const double x = in->recent_best_scores[i];
            if (isfinite(x)) {
                lo = x < lo ? x : lo;
                hi = x > hi ? x : hi;
            }
        }
        if (!(hi - lo >= params->quality_flat_epsilon) || hi - lo == 0.0)
            return pb; /* flat (or no finite scores): nothing to rank, flip the coin */
        return pacing_quality_probability(pb, in->best_score, in->recent_best_scores, n);
    }
    }
    return 0.0;
}

uint32_t pacing_weekly_cap(double per_week, double cap_factor)
{
    const double x = per_week * cap_factor;
    if (!(x > 0.0))
        return 0;
    if (x >= 4294967295.0)
        return UINT32_MAX;
    /* Products like 0.7 * 10 come out as 7.000000000000001; shave a relative
     * 1e-9 off before rounding up so they cap at 7, not 8. */
    return (uint32_t)ceil(x - 1e-9 * (x > 1.0 ? x : 1.0));
}

double pacing_ewma_update(double ewma, bool have_history, double completed_week_count,
                          double alpha)
{
    double x = completed_week_count;
    if (!isfinite(x) || x < 0.0)
        x = 0.0;
    if (!have_history || !isfinite(ewma))
        return x;
    if (!(alpha >= 0.0))
        alpha = 0.0;
    if (alpha > 1.0)
        alpha = 1.0;
    return alpha * x + (1.0 - alpha) * ewma;
}

double pacing_member_phase(uint64_t config_seed, const char *member, size_t member_len,
                           const char *channel, size_t channel_len)
{
    uint64_t h = hash_bytes(config_seed, "pacing.phase", 12);
    h = hash_bytes(h, member, member_len);
    h = hash_bytes(h, channel, channel_len);
    return hash_to_unit(h);
}
