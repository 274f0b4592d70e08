/*
 * pacing.h - the fast policy's weighted coin: how likely a send is at this
 * opportunity, given the member's weekly plan.
 *
 * The slow policy decides *how many* messages per week a member gets on a
 * channel (plan_t.per_week); pacing turns that number into a probability at
 * each send opportunity, so that the realised weekly count matches the plan
 * while sends are spread over the week. Three strategies (docs/fast-policy.md
 * has the maths):
 *   uniform - sends spaced evenly in time: the week's n-th send goes out at
 *             the first opportunity once the plan's share of the week
 *             elapsed (profile-weighted) passes n - phase, with a random
 *             phase per member and channel; deterministic given the phase;
 *   budget  - p = remaining budget / expected remaining opportunities for
 *             the plan's whole part: the weekly count tracks it with low
 *             variance. A fractional part f (the 0.5 of 2.5) is a rate: at
 *             most one extra send a week, with probability f plus what the
 *             member's balance of extra sends owes, never forced by the
 *             week's end, so under quality pacing a poor week goes without;
 *   quality - the plan spent on the member's best opportunities: send when
 *             the best candidate ranks in the top p of recent best scores,
 *             where p is the plan's rate per opportunity (default) or the
 *             budget's p (fast.quality_quantile), so each send carries a
 *             better message at the same rate.
 * E is the member's expected opportunities per week (an EWMA of observed
 * weekly counts, or a prior); w(day) an optional day-of-week profile.
 *
 * Invariants:
 * - Pure: no I/O, no globals, no allocation; safe from any thread.
 * - pacing_send_probability() always returns a number in [0, 1], also for
 *   NaN, negative or absurd inputs (a plan of 0 or less gives 0).
 * - The hard weekly cap is not applied here: the caller enforces
 *   pacing_weekly_cap() atomically in the store, whatever the coin says.
 */
#ifndef NOTIFD_PACING_H
#define NOTIFD_PACING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PACING_DAYS_PER_WEEK 7
/* Most recent best scores the quality strategy looks at; more are ignored. */
#define PACING_MAX_RECENT 256
/* A fractional plan's balance of extra sends (owed > 0, ahead < 0) is kept
 * within +-this many sends, and repaid over PACING_PAYBACK_WEEKS weeks. */
#define PACING_BALANCE_LIMIT 2.0
#define PACING_PAYBACK_WEEKS 2.0
/* The most a fractional part may ask of one week: a share of weeks with an
 * extra send just below 1 keeps the bar above the week's worst moment. */
#define PACING_MAX_WEEK_SHARE 0.95

typedef enum pacing_strategy {
    PACING_UNIFORM = 0,
    PACING_BUDGET = 1,
    PACING_QUALITY = 2,
} pacing_strategy_t;

/* "uniform", "budget", "quality" -> the strategy; -1 if unknown. */
int pacing_strategy_parse(const char *name);
/* The config name of a strategy ("?" if out of range). */
const char *pacing_strategy_name(pacing_strategy_t strategy);

/* Which probability the quality strategy turns into a quantile of the
 * member's recent best scores. */
typedef enum pacing_quantile {
    /* The plan's rate per opportunity, per_week * w / E, whatever was sent
     * this week: a fixed bar for the member, like the baseline's threshold.
     * The week's count varies around the plan (the hard cap bounds it) and
     * nothing is ever sent only because the week is ending. */
    PACING_QUANTILE_RATE = 0,
    /* The budget's p: the bar drops as the week runs out with budget left
     * and the remainder goes out at the end of the week whatever the score. */
    PACING_QUANTILE_BUDGET = 1,
} pacing_quantile_t;

/* "rate", "budget" -> the quantile source; -1 if unknown. */
int pacing_quantile_parse(const char *name);
/* The config name of a quantile source ("?" if out of range). */
const char *pacing_quantile_name(pacing_quantile_t quantile);

typedef struct pacing_params {
    pacing_strategy_t strategy;
    /* Day-of-week weights Mon..Sun, each >= 0 with a positive sum. Only the
     * shape matters: they are normalised internally to mean 1, so a day of
     * weight 0 gets no sends and {2,1,1,1,1,1,1} sends twice as often on
     * Mondays as on other days. */
    bool has_profile;
    double profile[PACING_DAYS_PER_WEEK];
    /* Expected opportunities per week, per channel, for a member with no
     * history yet. */
    double prior_opportunities_per_week;
    /* Weight of the newest completed week in the opportunities EWMA. */
    double ewma_alpha;
    /* Quality: what sets the share of opportunities that clear the bar. */
    pacing_quantile_t quality_quantile;
    /* Quality: with fewer recent best scores than this, use the coin. */
    unsigned quality_min_history;
    /* Quality: when max - min of the recent scores is below this, the
     * distribution is flat (nothing to choose between): use the coin. */
    double quality_flat_epsilon;
} pacing_params_t;

/* Defaults (see pacing.c for why): strategy budget, no profile (all 1),
 * prior 28 opportunities/week (4 a day), ewma_alpha 0.3, quality_quantile
 * budget, quality_min_history 5, quality_flat_epsilon 1e-6. */
void pacing_params_defaults(pacing_params_t *params);

/* NULL when the params are usable, else a static message naming the first
 * problem (for config validation and --check-config). */
const char *pacing_params_check(const pacing_params_t *params);

typedef struct pacing_input {
    double per_week;               /* the plan for this channel */
    uint32_t sent_this_week;       /* sends in this ISO week before this opportunity */
    double expected_opportunities; /* member's EWMA of opportunities/week; <= 0: use the prior */
    int64_t seconds_into_week;     /* member-local, [0, 604800) (calendar_seconds_into_week) */
    /* Budget and quality: the member's balance of a fractional plan's extra
     * sends, what earlier weeks owe (> 0) or sent ahead (< 0), from
     * pacing_balance_update(); clamped to +-PACING_BALANCE_LIMIT. */
    double fraction_balance;
    /* The share of the week elapsed (as pacing_week_fraction_elapsed) when
     * the 7-day cap last made room, 0 if it did not block this week: a
     * send late last week blocks the start of this one, and the fraction's
     * chance is spread over the part of the week left unblocked. */
    double unblocked_from;
    /* Uniform: the week's index (calendar_week_index) and a uniform [0,1)
     * value fixed for (member, channel), pacing_member_phase(). The
     * schedule runs on across weeks, so a plan of 0.5 sends every other
     * week and sends of consecutive weeks stay evenly spaced. */
    int64_t week_index;
    double member_phase;
    double best_score;                /* best eligible candidate's score (quality) */
    const double *recent_best_scores; /* recently observed best scores, any order */
    size_t n_recent;                  /* at most PACING_MAX_RECENT are used */
} pacing_input_t;

/* The probability of sending at this opportunity, in [0, 1]. */
double pacing_send_probability(const pacing_params_t *params, const pacing_input_t *in);

/* The quality rule alone: given the budget probability p, the probability of
 * sending a best candidate scoring `best` against the recent best scores.
 * Equivalent to comparing with the (1 - p) quantile of recent scores, with
 * the boundary rank randomised: if best has b recent scores strictly above it
 * and e equal to it, the result is clamp(p*(n+1) - b, 0, e+1) / (e+1), which
 * is 1 well above the quantile, 0 well below, p when all scores tie, and
 * averages exactly p when best is exchangeable with the recent scores. */
double pacing_quality_probability(double p, double best, const double *recent, size_t n);

/* Hard weekly cap: ceil(per_week * cap_factor) with float noise removed
 * (ceil(5*1.5) = 8, ceil(2*1.5) = 3, ceil(0.7*10) = 7). 0 for plans <= 0. */
uint32_t pacing_weekly_cap(double per_week, double cap_factor);

/* One EWMA step over completed weeks' opportunity counts. Without history the
 * first completed week's count is taken as is. */
double pacing_ewma_update(double ewma, bool have_history, double completed_week_count,
                          double alpha);

/* Fraction of the week's opportunity mass already elapsed at
 * seconds_into_week, in [0, 1]: linear in time without a profile; with one,
 * each day carries its normalised weight, spread evenly over the day. */
double pacing_week_fraction_elapsed(const pacing_params_t *params, int64_t seconds_into_week);

/* The day's profile weight normalised to mean 1 (1 without a profile). */
double pacing_day_weight(const pacing_params_t *params, int day_of_week);

/* Uniform: the sends due this week by seconds_into_week, given the plan,
 * the week's index and the member's phase: the integers in
 * [phase + P * week, phase + P * (week + F)], F the share of the week
 * elapsed. Over a whole week that is floor(P) or ceil(P), and P on average
 * over weeks. */
double pacing_uniform_due(const pacing_params_t *params, double per_week, int64_t week_index,
                          int64_t seconds_into_week, double member_phase);

/* A uniform [0,1) value stable for (config seed, member, channel name):
 * the pacing_input_t.member_phase of uniform pacing. */
double pacing_member_phase(uint64_t config_seed, const char *member, size_t member_len,
                           const char *channel, size_t channel_len);

/* The share of weeks that get an extra send from a plan's fraction f, given
 * the balance: f + balance / PACING_PAYBACK_WEEKS, within
 * [0, PACING_MAX_WEEK_SHARE]. 0 for whole plans. */
double pacing_extra_share(double per_week, double balance);

/* The balance after a completed week that sent `sent` on a plan of
 * per_week: it owes the fraction f and is repaid by each send over the
 * whole part, kept within +-PACING_BALANCE_LIMIT. `seen` (0..1] is the share
 * of the week the member was observed (its first week), which owes only
 * that share. A whole plan owes nothing: its balance is 0. */
double pacing_balance_update(double balance, double per_week, double sent, double seen);

#endif
