/*
 * decide_internal.h - what the parts of the decide op share (src/decide*.c):
 *   decide.c         the flow: validate, read, decide, record, answer;
 *   decide_read.c    the read pipeline and its reply callbacks;
 *   decide_record.c  the record of a send (the decide_record script's
 *                    arguments) and what both records share;
 *   decide_skip.c    the record of a decision not to send: plain commands;
 *   decide_answer.c  the answer's text, its event and its bookkeeping;
 *   explain.c        the explain op: the same read and the same decision
 *                    input, answered as a report, recording nothing.
 * Nothing outside the decide and explain ops includes it.
 */
#ifndef NOTIFD_DECIDE_INTERNAL_H
#define NOTIFD_DECIDE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/fast/deadline_list.h"
#include "notifd/fast/decide_body.h"
#include "notifd/core/decision.h"
#include "notifd/core/keys.h"
#include "notifd/core/member_cache.h"
#include "notifd/core/member_overlay.h"
#include "notifd/ops.h"
#include "notifd/core/policy_config.h"
#include "notifd/core/plan.h"
#include "notifd/fast/request_check.h"
#include "notifd/core/stored_read.h"
#include "notifd/store/store.h"

#define WEEK_TTL_S (21 * 86400)
/* Week-hash fields to delete in one record: stale weeks of one channel. */
#define MAX_STALE_FIELDS STORED_MAX_STALE

typedef struct decide_ctx {
    request_t *req;
    app_t *app;                     /* outlives req, which the reply frees */
    decide_request_t r;             /* the validated request (owns the arrays) */
    const fast_config_t *fast;      /* the member's fast arm, or the base */
    int fast_arm;                   /* -1 control */
    const char *fast_arm_name;
    int slow_arm;
    const char *slow_arm_name;

    overlay_member_t *overlay;      /* joined while the read is in flight */
    uint64_t read_seq;

    int outstanding;                /* read replies still expected */
    bool failed;
    bool have_plan;
    plan_t plan;
    int tz;
    bool unsubscribed;
    bool holdout;                   /* in the permanent holdout (experiments.holdout_share) */
    double open_rate;
    member_view_t view;             /* week hash, for this channel and week */
    char *scores_raw;               /* the recent-scores field as read */
    size_t scores_raw_len;
    /* Week-hash fields of this channel from weeks that no longer count. */
    char stale[MAX_STALE_FIELDS][STORED_STALE_FIELD_MAX];
    int n_stale;
    stored_invalid_t invalid;       /* stored values the read found unusable */
    bool ranked;                    /* utility and select_prob are filled */

    deadline_entry_t deadline;      /* fast.deadline_ms, in the policy's deadline list */
    uint64_t deadline_ns;           /* 0: none */
    bool record_out;                /* the record's replies are awaited */
    /* The record of a decision not to send (decide_skip.c): its commands'
     * replies as they come in. */
    int skip_waiting;               /* replies still due */
    bool skip_failed;               /* the idempotency SET failed: nothing known stored */
    int skip_cause;                 /* why (metrics_degraded_cause_t) */
    char *skip_dup;                 /* SET ... GET found an answer: a retry's */
    size_t skip_dup_len;
    bool skip_counted;              /* this record's HINCRBY of the opportunity applied */
    bool skip_stale;                /* a reply says the cached view is not Redis's */
    bool skip_expire;               /* the week hash was created, or its week began */
    bool skip_followed;             /* the follow-ups the replies call for are sent */
    char skip_week[CONFIG_PREFIX_MAX + MEMBER_ID_MAX + 16]; /* P week:{M} */
    char skip_opp_field[64];        /* the counted opportunity's field, '' none */
    char skip_ttl[24];              /* the week hash's TTL, s */
    char skip_scores_field[48];     /* the recent-scores field it set, '' none */
    bool answered;                  /* replied (by the deadline): only waiting to be freed */
    int cause;                      /* metrics_degraded_cause_t, when degraded */

    /* The member cache (decide_cache.c). */
    uint64_t cache_epoch;           /* tracking epoch the read was sent under, 0 none */
    uint64_t cache_since;           /* member_cache_clock() when it was sent */
    bool from_cache;                /* decided on a cached view, no read */
    int64_t expect_version;         /* the week hash's v the record should leave */
    bool no_fill;                   /* what this decide knows must not be cached */
    bool sent_complete;             /* the sent list holds the member's whole sent set */
    size_t n_sent;                  /* the member's sent messages, newest first */
    size_t sent_off[MEMBER_CACHE_SENT_MAX];
    size_t sent_lens[MEMBER_CACHE_SENT_MAX];
    double sent_ts[MEMBER_CACHE_SENT_MAX];
    char *sent_buf;                 /* their ids */
    char *scores_new;               /* the recent-scores text the record stores */
    size_t scores_new_len;

    char *body;                     /* the answer as decided, until recorded */
    size_t body_len;
    char *capped_body;              /* the answer if the cap stops the send */
    size_t capped_len;
    char *limited_body;             /* the answer if a rate limit stops the send, up to
                                       its "retry_at": (decide_body_t.retry_at_open) */
    size_t limited_len;
    int n_limiters;                 /* the global rate limiters the send meets ... */
    unsigned char limiters[CONFIG_LIMITERS_MAX]; /* ... 0 the channel's, 1 + t tag t's */
    decision_reason_t reason;       /* of `body` */
    message_priority_t priority;    /* the class the decision considered */
    int chosen;                     /* the message `body` sends, -1 none */

    /* An explain (explain.c), not a decide: the read goes to Redis every
     * time (no member or plan cache, no overlay), writes nothing (no
     * opt-out copy) and ends in explain_read_done(), never in a record. */
    bool explain;
} decide_ctx_t;

/* What decision_evaluate() gets from a view (decide_prepare). `in` points
 * into `plan` and `fold`: the struct is used where it was filled. */
typedef struct decide_prep {
    plan_t plan;              /* in force at ts, completed (hierarchical mode) */
    bool plan_defaulted;      /* no stored plan in force: the default plan */
    opportunity_fold_t fold;
    decision_input_t in;
} decide_prep_t;

static inline bool decide_threshold_mode(const decide_ctx_t *d)
{
    return d->fast->mode == FAST_MODE_THRESHOLD;
}

/* decide.c */
/* The request's arms, holdout and view set up from the validated d->r. */
void decide_ctx_init(decide_ctx_t *d, const config_t *cfg);
overlay_table_t *decide_overlay_table(app_t *app);
void decide_leave_overlay(decide_ctx_t *d);
/* Decides on the view in d (read or cached) and sends the record. */
void decide_and_record(decide_ctx_t *d);
/* The decision's input from the view in d: the overlay applied, the plan
 * in force (or the default), completed, the opportunity history folded.
 * th is the threshold calibrator (threshold mode), else NULL. Changes
 * nothing but d's view (the overlay) and *p: the decide and the explain
 * op decide from the same input. */
void decide_prepare(decide_ctx_t *d, threshold_state_t *th, decide_prep_t *p);
/* A read reply is in: the last one moves the decide on. */
void decide_read_done(decide_ctx_t *d);
/* The record script's reply (decide_send_record sends it). */
void decide_on_record(redisReply *reply, void *privdata);
/* Why the store refused a command of this decide (metrics_degraded_cause_t). */
int decide_refusal_cause(const decide_ctx_t *d);

/* decide_read.c */
/* Splits an HGETALL reply into parallel arrays for the pure parsers (pairs
 * that are not two strings are skipped); returns how many, at most max. */
size_t decide_hash_pairs(redisReply *r, const char **f, size_t *fl, const char **v, size_t *vl,
                         size_t max);
/* Sends the read pipeline of one decision. */
void decide_start_read(decide_ctx_t *d);
void decide_report_invalid(decide_ctx_t *d);
/* The plan from the plan cache into d, if it holds one in force. */
bool decide_cached_plan(decide_ctx_t *d);

/* decide_record.c */
/* Sends the record of `dec`; false if it could not (d->cause set). */
bool decide_send_record(decide_ctx_t *d, const decision_t *dec, const opportunity_fold_t *fold,
                        overlay_effect_t *effect);
/* P idem:{M}:<opportunity> into key (KEY_MAX); its length. */
size_t decide_idem_key(char *key, const config_t *cfg, const decide_request_t *r);
/* "<ch>:<week><kind>": a weekly counter of the week hash (":opp", ":sent"). */
void decide_week_counter_field(char *out, size_t cap, const char *ch, int64_t week,
                               const char *kind);
/* The week-hash fields a record sets besides its counters: computed by
 * notifd from what it read (the EWMA, the balance, the first week, the
 * recent scores), as field/value pairs. */
typedef struct week_fields {
    const char *argv[12];
    size_t lens[12];
    int n;
    char f_ewma[48], v_ewma[32], f_ewma_week[48], v_ewma_week[24], f_bal[48], v_bal[32];
    char f_first[48], v_first[24], f_frac[48], v_frac[32], f_scores[48];
    char *scores;                   /* malloc'd: the recent-scores list */
    size_t scores_len;
} week_fields_t;
bool decide_week_fields(decide_ctx_t *d, const opportunity_fold_t *fold,
                        const overlay_effect_t *effect, week_fields_t *w);
/* Keeps w's recent-scores list in d for the member cache (the list as the
 * record leaves it); w no longer owns it. */
void decide_keep_scores(decide_ctx_t *d, week_fields_t *w);

/* decide_skip.c */
/* Sends the commands that record a decision not to send; false if the
 * store refused them (d->cause set). Their replies end in
 * decide_on_skip_recorded(). */
bool decide_send_skip(decide_ctx_t *d, const decision_t *dec, const opportunity_fold_t *fold,
                      overlay_effect_t *effect);
/* decide.c: every reply of a skip's record is in (d->skip_*). */
void decide_on_skip_recorded(decide_ctx_t *d);

/* explain.c */
/* An explain's extra reads, sent with the decide's read pipeline
 * (decide_start_read): each counts in d->outstanding. */
void explain_send_reads(decide_ctx_t *d);
/* The explain's read is in (or failed): answer. */
void explain_read_done(decide_ctx_t *d);
/* Sends one read command of d's pipeline (decide_read.c). */
void decide_read_send(decide_ctx_t *d, store_reply_fn fn, int argc, const char **argv,
                      const size_t *lens);
/* The global rate limiters a send of `dec` meets into d->limiters (its
 * channel's, then those of its message's tags); returns how many. */
int decide_rate_limiters(decide_ctx_t *d, const decision_t *dec);
/* A send decided without Redis (fast.on_store_error "default_plan") that
 * an enforced global rate limit would have checked: with limits.on_error
 * "closed" it must not go (true, counted as closed errors). */
bool decide_rate_limit_unchecked(decide_ctx_t *d, const decision_t *dec);
/* The record script's letters, one per limiter (decide_record.lua), into
 * notifd_rate_limited_total and notifd_rate_limit_errors_total. */
void decide_count_rate_limits(decide_ctx_t *d, const char *codes, size_t n);

/* decide_cache.c */
/* A read of this decide is about to go out: note what a fill will need. */
void decide_cache_note_read(decide_ctx_t *d);
/* Whether the read should fetch the member's whole sent set (ZREVRANGE)
 * for the cache, rather than the candidates' scores (ZMSCORE). */
bool decide_cache_wants_sent_set(const decide_ctx_t *d);
/* Keeps the sent set a read returned (reply pairs: id, time). */
void decide_cache_take_sent(decide_ctx_t *d, const redisReply *r);
/* Fills the decide from the cache instead of reading; false on a miss. */
bool decide_from_cache(decide_ctx_t *d);
/* The record of `effect` is out: cache the member's state after it. */
void decide_cache_fill(decide_ctx_t *d, const overlay_effect_t *effect);
/* The record's outcome was not what the view predicted: drop the member. */
void decide_cache_drop(decide_ctx_t *d);

/* decide_answer.c */
char *decide_answer_text(decide_ctx_t *d, const decision_t *dec, decision_reason_t reason,
                         bool send, const plan_t *plan, bool degraded, size_t *len);
/* The answer if a global rate limit stops the send of `dec`, up to its
 * "retry_at": (the record script writes the rest). */
char *decide_limited_text(decide_ctx_t *d, const decision_t *dec, const plan_t *plan,
                          size_t *len);
/* Bookkeeping every new decision shares: its event, arm stats, metrics. */
void decide_account(decide_ctx_t *d, const char *body, size_t len, decision_reason_t reason);
void decide_default_plan(const config_t *cfg, plan_t *plan);
void decide_complete_plan(const config_t *cfg, const fast_config_t *fast, plan_t *plan);

#endif
