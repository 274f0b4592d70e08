/*
 * decision.h - one send decision, computed from state already read: the
 * fast policy ("System 1") as a pure function.
 *
 * decide.c reads everything a decision needs from Redis in one round trip,
 * calls decision_evaluate(), and records the outcome in a second. All the
 * policy logic sits here, in order:
 *   0. the priority class: only the highest class among the candidates not
 *      sent within the dedup window is considered; a transactional one
 *      skips everything below but the opt-out (priority.h);
 *   1. guardrails: unsubscribed, quiet hours (with retry_at), no candidates,
 *      every candidate sent within the dedup window; then the permanent
 *      holdout on a paced channel (after the others, so that holdout and
 *      treated members' guardrail counts stay comparable);
 *   2. ranking: score every eligible candidate, choose one (greedy or with
 *      exploration) and know each one's selection probability;
 *   3. the send decision: in hierarchical mode the plan's pacing coin, with
 *      the weekly hard cap checked first; in threshold mode the baseline
 *      threshold on the best candidate's utility;
 *   4. the propensity of the exact outcome, for off-policy evaluation.
 * Randomness comes only from an rng seeded by (seed, member, opportunity):
 * the same inputs give the same decision.
 */
#ifndef NOTIFD_DECISION_H
#define NOTIFD_DECISION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/core/policy_config.h"
#include "notifd/core/ranker.h"
#include "notifd/core/threshold.h"
#include "notifd/core/types.h"

/* Why a decision came out as it did: the one list of reasons and their
 * protocol names (the `reason` of answers and events, the label values of
 * notifd_decisions_total). The order indexes tables; new reasons go last. */
#define DECISION_REASONS(X)                                                   \
    X(SEND, "send")                                                           \
    X(PACED_SKIP, "paced_skip")                                               \
    X(CAP_REACHED, "cap_reached")                                             \
    X(QUIET_HOURS, "quiet_hours")                                             \
    X(NO_CANDIDATES, "no_candidates")                                         \
    X(ALL_FILTERED, "all_filtered")                                           \
    X(UNSUBSCRIBED, "unsubscribed")                                           \
    X(DEGRADED, "degraded")                                                   \
    X(HOLDOUT, "holdout")                                                     \
    X(RATE_LIMITED, "rate_limited")

typedef enum decision_reason {
#define DECISION_REASON_ENUM(id, name) REASON_##id,
    DECISION_REASONS(DECISION_REASON_ENUM)
#undef DECISION_REASON_ENUM
    REASON_COUNT
} decision_reason_t;

const char *decision_reason_name(decision_reason_t r);

/* Send times kept per member and channel for the rolling cap (newest
 * first); a cap above this is enforced per calendar week only. */
#define DECISION_MAX_RECENT_SENDS 32
#define DECISION_ROLLING_WINDOW_S (7 * 86400)

typedef struct decision_input {
    const fast_config_t *fast;
    uint64_t seed;
    const char *member;
    size_t member_len;
    const char *opportunity;
    size_t opportunity_len;
    const char *channel_name;
    int channel;
    int64_t ts;
    int tz_offset_min;
    const plan_t *plan;            /* hierarchical mode; NULL in threshold mode */
    bool unsubscribed;
    bool holdout;                  /* in the permanent holdout: no paced message */
    double member_open_rate;       /* ranker context; < 0 unknown */
    ranker_candidate_t *candidates; /* eligible is set here (dedup) */
    size_t n_candidates;
    const double *last_sent_ts;    /* per candidate; < 0: never sent */
    double *utility;               /* scratch, n_candidates */
    double *select_prob;           /* scratch, n_candidates */
    uint32_t sent_this_week;
    double fraction_balance;       /* a fractional plan's balance (opportunity_fold_t) */
    const int64_t *recent_sends;   /* this channel's send times, newest first */
    size_t n_recent_sends;
    double expected_opportunities; /* <= 0: the prior */
    const double *recent_best;     /* quality strategy history */
    size_t n_recent;
    threshold_state_t *threshold;  /* threshold mode: this channel's calibrator */
} decision_input_t;

typedef struct decision {
    decision_reason_t reason;
    bool send;
    int chosen;                /* candidate index, -1 when none */
    double p_send;             /* the coin's probability (0 or 1 when deterministic) */
    double propensity;         /* probability of this exact outcome */
    int64_t retry_at;          /* quiet hours: when they end */
    bool reached_coin;         /* counts as an opportunity for pacing history */
    bool have_best;
    double best_score;         /* best eligible utility (quality history, threshold) */
    int64_t cap;               /* weekly hard cap, -1 when none (unplanned, threshold) */
    int64_t rolling_cap;       /* the cap over any 7 days, -1 when none or not enforced */
    message_priority_t priority; /* the class considered (the highest eligible one) */
    /* A send outside the plan (transactional): no budget, cap or
     * opportunity count moves; the message is still marked sent. */
    bool unpaced;
} decision_t;

void decision_evaluate(const decision_input_t *in, decision_t *out);

/* Sends among times[0..n) less than 7 days from ts, before or after it: a
 * send at ts would share a 7-day window with each of them. (Producers'
 * ts are not always in order; a later one must count too.) */
size_t decision_sends_in_window(const int64_t *times, size_t n, int64_t ts);

/* Opportunity history of one member and channel (the week hash), and the
 * EWMA of opportunities per week it implies. Weeks are calendar week
 * indexes; counts[0..2] are the opportunities of weeks W-2, W-1 and W. */
typedef struct opportunity_history {
    bool have_ewma;
    double ewma;
    bool have_ewma_week;
    int64_t ewma_week;         /* last week folded into the EWMA */
    bool have_first_week;
    int64_t first_week;        /* week of the member's first opportunity */
    double first_fraction;     /* share of that week observed (1 if unknown) */
    double counts[3];
    /* Sends in weeks W-1 and W-2, for the fractional plan's balance. */
    uint32_t sent_before[2];
    /* A fractional plan's balance of extra sends as of ewma_week
     * (pacing_input_t.fraction_balance). */
    bool have_balance;
    double balance;
} opportunity_history_t;

typedef struct opportunity_fold {
    double expected;           /* expected opportunities per week, <= 0: use the prior */
    bool store_ewma;
    double ewma;
    bool store_ewma_week;
    int64_t ewma_week;
    double balance;            /* the fractional plan's balance, weeks folded */
    bool store_balance;        /* it differs from the stored one */
} opportunity_fold_t;

/* The cap over any 7 days: the weekly cap plus the whole part of
 * per_week * (factor - 1), and at least min_slack more (fast.
 * rolling_cap_min_slack) for a plan above 0. A plan of 5 may see 7 sends in
 * some 7 days (sends fall at random moments within each week); a plan of 1
 * with min_slack 1 may see 2, never 3, so its week's send can come earlier
 * than 7 days after last week's. */
int64_t decision_rolling_cap(int64_t weekly_cap, double per_week, double factor, int min_slack);

/* Significant digits the recent best scores are stored with. */
#define DECISION_SCORE_DIGITS 5
/* x rounded as the recent-scores list stores it (DECISION_SCORE_DIGITS
 * significant digits), so a score compares equal to its stored self. */
double decision_round_score(double x);

/* Folds completed weeks (at most the two before W) into the EWMA. The
 * member's first week was observed only from the first opportunity on: its
 * count is scaled up by the share observed, or skipped when less than a
 * quarter was seen, so a member who joins on a Sunday does not look like one
 * with a single opportunity a week. The same weeks fold into a fractional
 * plan's balance (pacing_balance_update, with per_week the plan in force
 * now; weeks without an opportunity owe nothing); a whole plan clears it. */
void decision_fold_history(const opportunity_history_t *h, int64_t week, double alpha,
                           double per_week, opportunity_fold_t *out);

#endif
