/*
 * decide.c - the decide op: validate, read the member's state from Redis
 * in one round trip, decide (decision.c, pure), record in a second round
 * trip, answer.
 *
 * The read is a pipeline of plain commands, all sent at once; hiredis
 * answers them in order, so each callback can rely on the ones before it:
 *   HGETALL P plan:{M}        the pacing plan (hierarchical mode only)
 *   HMGET   P member:{M} ...  time zone, opt-out, open rate of the channel
 *   HGETALL P week:{M}        weekly counters, the opportunity EWMA, and the
 *                             recent best scores (quality pacing)
 *   ZMSCORE P sent:{M} ids    when each candidate was last sent (dedup)
 * The record is one Lua script (redis_scripts.c) that enforces the weekly
 * cap atomically and stores the answer under the idempotency key, so a
 * retried opportunity gets the stored answer and counts nothing twice.
 *
 * Decisions of one member may be in flight together; each applies what the
 * records its read could not see changed (member_overlay.h), so pacing
 * spends a plan's budget once however requests are pipelined.
 *
 * If Redis is not ready or a command fails, the answer comes at once per
 * fast.on_store_error: "skip" (reason degraded) or decide on the default
 * plan without counters; nothing waits for Redis to come back. A decide
 * still unanswered after fast.deadline_ms is answered the same way, alone:
 * its context stays until its outstanding replies are in (they change
 * nothing then), and its commands still queued in the store are never sent.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifd/deadline_list.h"
#include "notifd/decide_body.h"
#include "notifd/decision.h"
#include "notifd/events.h"
#include "notifd/hash.h"
#include "notifd/keys.h"
#include "notifd/log.h"
#include "notifd/member_overlay.h"
#include "notifd/metrics.h"
#include "notifd/number_format.h"
#include "notifd/ops_policy.h"
#include "notifd/plan.h"
#include "notifd/plan_cache.h"
#include "notifd/policy.h"
#include "notifd/request.h"
#include "notifd/schedule.h"
#include "notifd/stored_answer.h"
#include "notifd/stored_read.h"

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
    bool record_out;                /* the record script's reply is awaited */
    bool answered;                  /* replied (by the deadline): only waiting to be freed */
    int cause;                      /* metrics_degraded_cause_t, when degraded */

    char *body;                     /* the answer as decided, until recorded */
    size_t body_len;
    char *capped_body;              /* the answer if the cap stops the send */
    size_t capped_len;
    decision_reason_t reason;       /* of `body` */
    int chosen;                     /* the message `body` sends, -1 none */
} decide_ctx_t;

static overlay_table_t *overlay_table(app_t *app)
{
    policy_state_t *ps = policy_state(app);
    if (ps->overlay == NULL)
        ps->overlay = overlay_table_new();
    return ps->overlay;
}

static void leave_overlay(decide_ctx_t *d)
{
    if (d->overlay != NULL) {
        overlay_leave(policy_state(d->app)->overlay, d->overlay, d->read_seq);
        d->overlay = NULL;
    }
}

static void decide_ctx_free(decide_ctx_t *d)
{
    policy_state_t *ps = policy_state(d->app);
    if (ps->deadlines != NULL)
        deadline_list_remove(ps->deadlines, &d->deadline);
    leave_overlay(d);
    free(d->body);
    free(d->capped_body);
    free(d->scores_raw);
    decide_request_free(&d->r);
    free(d);
}

static int64_t now_unix(void) { return (int64_t)time(NULL); }

bool ops_get_ts(const json_t *root, const config_t *cfg, int64_t *ts, const char **why)
{
    return ops_get_ts_at(root, now_unix(), cfg->limits.ts_window_s, ts, why);
}

/* P idem:{M}:<opportunity> */
static size_t idem_key(char *key, const config_t *cfg, const decide_request_t *r)
{
    char suffix[MEMBER_ID_MAX + 2];
    suffix[0] = ':';
    memcpy(suffix + 1, r->opportunity, r->opportunity_len);
    return key_member(key, cfg->redis.prefix, "idem", r->member, r->member_len, suffix,
                      r->opportunity_len + 1);
}

/* ------------------------------------------------------------------ */
/* Answering                                                          */

json_t *decide_plan_json(const config_t *cfg, const plan_t *plan);
json_t *decide_plan_json(const config_t *cfg, const plan_t *plan)
{
    json_t *per_week = json_object();
    json_t *defaulted = plan->defaulted_mask ? json_array() : NULL;
    for (int c = 0; c < cfg->n_channels; c++) {
        if (plan_has_channel(plan, c))
            json_object_set_new(per_week, cfg->channels[c], json_real(plan->per_week[c]));
        if (defaulted != NULL && (plan->defaulted_mask & (1u << c)))
            json_array_append_new(defaulted, json_string(cfg->channels[c]));
    }
    return json_pack("{s:I,s:s,s:o,s:o*}", "version", (json_int_t)plan->version, "source",
                     plan->source, "per_week", per_week, "defaulted", defaulted);
}

static char *body_text(decide_ctx_t *d, const decision_t *dec, decision_reason_t reason,
                       bool send, const plan_t *plan, bool degraded, size_t *len)
{
    bool chosen = send && dec->chosen >= 0;
    decide_body_t b = {
        .cfg = d->req->cfg, .dec = dec, .reason = reason, .send = send,
        .message = chosen ? d->r.candidates[dec->chosen].id : NULL,
        .message_len = chosen ? d->r.candidates[dec->chosen].id_len : 0,
        .plan = plan, .slow_arm = d->slow_arm_name, .fast_arm = d->fast_arm_name,
        .threshold_mode = d->fast->mode == FAST_MODE_THRESHOLD, .degraded = degraded,
    };
    return decide_body_text(&b, len);
}

/* Decision reasons index the metrics registry's reason labels directly. */
_Static_assert((int)REASON_DEGRADED == METRICS_REASON_DEGRADED &&
                   (int)REASON_SEND == METRICS_REASON_SEND &&
                   (int)REASON_COUNT == METRICS_REASON_DUPLICATE,
               "decision reasons and metrics reason labels must stay in the same order");

/* The decision event: the answer plus what an offline evaluation needs to
 * replay it (every candidate's score, utility and selection probability). */
static void publish_event(decide_ctx_t *d, const char *body, size_t len)
{
    const config_t *cfg = d->req->cfg;
    if (cfg->events.url[0] == '\0')
        return;
    const decide_request_t *r = &d->r;
    json_t *ev = json_pack("{s:s,s:I,s:s%,s:s,s:s%}", "type", "decision", "ts",
                           (json_int_t)r->ts, "member", r->member, r->member_len, "channel",
                           cfg->channels[r->channel], "opportunity", r->opportunity,
                           r->opportunity_len);
    json_t *answer = json_loadb(body, len, 0, NULL);
    if (ev == NULL || answer == NULL) {
        json_decref(ev);
        json_decref(answer);
        return;
    }
    json_object_update(ev, answer);
    json_decref(answer);
    json_t *cands = json_array();
    for (size_t i = 0; i < r->n; i++) {
        json_t *c = json_pack("{s:s%,s:f}", "id", r->candidates[i].id, r->candidates[i].id_len,
                              "score", r->candidates[i].score);
        json_object_set_new(c, "utility", d->ranked ? json_real(r->utility[i]) : json_null());
        json_object_set_new(c, "select_prob",
                            d->ranked ? json_real(r->select_prob[i]) : json_null());
        json_array_append_new(cands, c);
    }
    json_object_set_new(ev, "candidates", cands);
    events_publish(d->req->app, ev);
}

static bool threshold_mode(const decide_ctx_t *d) { return d->fast->mode == FAST_MODE_THRESHOLD; }

/* Bookkeeping every new decision shares: its event, arm stats, metrics. */
static void account(decide_ctx_t *d, const char *body, size_t len, decision_reason_t reason)
{
    publish_event(d, body, len);
    policy_state_t *ps = policy_state(d->app);
    ps->fast_arm_decisions[d->fast_arm + 1][reason]++;
    ps->slow_arm_decisions[d->slow_arm + 1][reason]++;
    metrics_t *m = d->app->metrics;
    metrics_observe_arm_decision(m, 0, d->fast_arm, (int)reason);
    metrics_observe_arm_decision(m, 1, d->slow_arm, (int)reason);
    metrics_observe_decision(m, d->r.channel, threshold_mode(d) ? 1 : 0, (int)reason,
                             (double)(uv_hrtime() - d->req->start_ns) / 1e9);
}

/* After the reply: the request is gone. The context goes too, unless
 * replies to its commands are still due (an answer by the deadline). */
static void decide_done(decide_ctx_t *d)
{
    d->req = NULL;
    d->answered = true;
    policy_state_t *ps = policy_state(d->app);
    if (ps->deadlines != NULL)
        deadline_list_remove(ps->deadlines, &d->deadline);
    leave_overlay(d);
    if (d->outstanding == 0 && !d->record_out)
        decide_ctx_free(d);
}

/* Answers with a decision computed by this request. */
static void finish(decide_ctx_t *d, const char *body, size_t len, decision_reason_t reason)
{
    if (body == NULL) {
        request_reply_error(d->req, PROTO_INTERNAL, "out of memory");
        decide_done(d);
        return;
    }
    account(d, body, len, reason);
    request_reply_ok_text(d->req, body, len, NULL);
    decide_done(d);
}

/* Answers with a decision stored by an earlier request for the same
 * opportunity, as stored: no event, no new counts. The stored text came
 * from Redis and is replayed only if it is one JSON object on one line
 * (stored_answer.h); otherwise the request gets an internal error, never
 * the raw text, so each request still gets exactly one reply line. */
static void finish_duplicate(decide_ctx_t *d, const char *text, size_t len)
{
    if (!stored_answer_valid(text, len)) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
        log_limited(&rl, LOG_ERROR, "decide: stored answer is corrupt, not replayed",
                    "channel=%s bytes=%zu", d->req->cfg->channels[d->r.channel], len);
        metrics_stored_answer_corrupt(d->app->metrics);
        request_reply_error(d->req, PROTO_INTERNAL,
                            "stored answer for this opportunity is corrupt");
        decide_done(d);
        return;
    }
    metrics_observe_decision(d->app->metrics, d->r.channel, threshold_mode(d) ? 1 : 0,
                             METRICS_REASON_DUPLICATE,
                             (double)(uv_hrtime() - d->req->start_ns) / 1e9);
    request_reply_ok_text(d->req, text, len, "\"duplicate\":true");
    decide_done(d);
}

static void default_plan(const config_t *cfg, plan_t *plan)
{
    plan_make_default(plan, cfg->policy.slow.default_mask, cfg->policy.slow.default_per_week);
}

/* No channel goes unpaced by accident: what the plan leaves out is paced
 * by the default plan, or fast.unplanned_per_week (plan_complete). */
static void complete_plan(const config_t *cfg, const fast_config_t *fast, plan_t *plan)
{
    plan_complete(plan, (1u << cfg->n_channels) - 1u, cfg->policy.slow.default_mask,
                  cfg->policy.slow.default_per_week, fast->unplanned_per_week,
                  fast->unpaced_mask);
}

/* Why the store refused a command of this decide. */
static int store_refusal_cause(const decide_ctx_t *d)
{
    const store_t *st = d->app->store;
    if (store_state(st) != STORE_READY)
        return METRICS_DEGRADED_NOT_READY;
    return store_queue_full(st) ? METRICS_DEGRADED_QUEUE_FULL : METRICS_DEGRADED_INTERNAL;
}

/* Redis is unavailable, refused, or too late: answer now, per
 * fast.on_store_error, and count the cause (d->cause). */
static void answer_degraded(decide_ctx_t *d)
{
    leave_overlay(d);
    const config_t *cfg = d->req->cfg;
    const decide_request_t *r = &d->r;
    static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
    log_limited(&rl, LOG_WARN, "decide degraded", "cause=%s policy=%s",
                metrics_degraded_cause_name(d->cause),
                d->fast->on_store_error == STORE_ERROR_SKIP ? "skip" : "default_plan");
    metrics_observe_degraded(d->app->metrics, d->cause);
    decision_t dec = {.chosen = -1, .propensity = 1.0};
    size_t len = 0;
    char *body;
    decision_reason_t reason = REASON_DEGRADED;
    if (d->fast->on_store_error == STORE_ERROR_DEFAULT_PLAN && !threshold_mode(d)) {
        plan_t plan;
        default_plan(cfg, &plan);
        complete_plan(cfg, d->fast, &plan);
        decision_input_t in = {
            .fast = d->fast, .seed = cfg->seed, .member = r->member, .member_len = r->member_len,
            .opportunity = r->opportunity, .opportunity_len = r->opportunity_len,
            .channel_name = cfg->channels[r->channel], .channel = r->channel, .ts = r->ts,
            .plan = &plan, .member_open_rate = -1.0, .candidates = r->candidates,
            .n_candidates = r->n, .last_sent_ts = NULL, .utility = r->utility,
            .select_prob = r->select_prob, .expected_opportunities = -1.0,
        };
        decision_evaluate(&in, &dec);
        d->ranked = dec.have_best;
        reason = dec.reason;
        body = body_text(d, &dec, dec.reason, dec.send, &plan, true, &len);
    } else {
        body = body_text(d, &dec, REASON_DEGRADED, false, NULL, true, &len);
    }
    finish(d, body, len, reason);
    free(body);
}

/* ------------------------------------------------------------------ */
/* Record                                                             */

static void decide_and_record(decide_ctx_t *d);

static void on_record(redisReply *reply, void *privdata)
{
    decide_ctx_t *d = privdata;
    d->record_out = false;
    if (d->answered) {
        /* Answered by the deadline. A record that arrives anyway changed
         * Redis as decided: it is logged, and the producer was told
         * degraded (docs/operations.md). */
        if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
            reply->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(reply->element[0]->str, "ok") == 0 && d->chosen >= 0) {
            static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
            log_limited(&rl, LOG_WARN, "decide recorded a send after its deadline answer",
                        "%s", "");
        }
        decide_ctx_free(d);
        return;
    }
    bool ok = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
              reply->element[0]->type == REDIS_REPLY_STRING;
    if (!ok) {
        d->cause = METRICS_DEGRADED_CONNECTION;
        if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
            static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
            log_limited(&rl, LOG_ERROR, "decide record failed", "error=\"%s\"", reply->str);
            d->cause = METRICS_DEGRADED_ERROR_REPLY;
        } else if (reply != NULL) {
            d->cause = METRICS_DEGRADED_INTERNAL;
        }
        answer_degraded(d);
        return;
    }
    const char *outcome = reply->element[0]->str;
    if (strcmp(outcome, "dup") == 0 && reply->elements == 2 &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        /* Another request recorded this opportunity first: its answer wins. */
        finish_duplicate(d, reply->element[1]->str, reply->element[1]->len);
        return;
    }
    if (strcmp(outcome, "sent_already") == 0 && d->chosen >= 0) {
        /* Another instance sent this message to the member since the read:
         * decide again without it. Nothing was recorded; each round takes
         * one more candidate out, so this ends. */
        d->r.last_sent[d->chosen] = (double)d->r.ts;
        free(d->body);
        free(d->capped_body);
        d->body = d->capped_body = NULL;
        decide_and_record(d);
        return;
    }
    if (strcmp(outcome, "cap") == 0 && d->capped_body != NULL)
        finish(d, d->capped_body, d->capped_len, REASON_CAP_REACHED);
    else
        finish(d, d->body, d->body_len, d->reason);
}

/* The recent-scores list after this decision, as comma-separated numbers
 * (one field of the week hash): its best score first, then those the
 * overlay added since the read, then the list as read. The read list is
 * passed through as text: formatting a hundred numbers per decide was a
 * tenth of notifd's CPU. */
static char *scores_text(const member_view_t *v, double best, int keep, const char *raw,
                         size_t raw_len, size_t *len)
{
    size_t added = v->n_recent_new < (size_t)keep - 1 ? v->n_recent_new : (size_t)keep - 1;
    size_t from_raw = (size_t)keep - 1 - added;
    char *s = malloc((added + 1) * (NUMBER_FORMAT_MAX + 1) + raw_len + 2);
    if (s == NULL)
        return NULL;
    /* Five significant digits: plenty for a quantile of utilities, and the
     * list goes through the record script on every decide. */
    size_t at = number_format_g(s, best, DECISION_SCORE_DIGITS);
    for (size_t i = 0; i < added; i++) {
        s[at++] = ',';
        at += number_format_g(s + at, v->recent[i], DECISION_SCORE_DIGITS);
    }
    /* The first from_raw entries of the read list. */
    size_t take = 0, entries = 0;
    while (from_raw > 0 && take < raw_len) {
        const char *comma = memchr(raw + take, ',', raw_len - take);
        size_t stop = comma ? (size_t)(comma - raw) : raw_len;
        if (++entries == from_raw || comma == NULL) {
            take = stop;
            break;
        }
        take = stop + 1;
    }
    if (from_raw > 0 && take > 0) {
        s[at++] = ',';
        memcpy(s + at, raw, take);
        at += take;
    }
    s[at] = '\0';
    *len = at;
    return s;
}

/* "<ch>:<week><kind>": a weekly counter of the week hash (":opp", ":sent"). */
static void week_counter_field(char *out, size_t cap, const char *ch, int64_t week,
                               const char *kind)
{
    char wk[NUMBER_FORMAT_MAX];
    number_format_i64(wk, week);
    size_t n = key_field(out, cap, ch, ":");
    n += key_field(out + n, cap - n, wk, "");
    key_field(out + n, cap - n, kind, "");
}

/* Sends the record script for decision `dec`; false if it could not. A
 * decision to send goes through decide_record (cap checks, sent set,
 * member features); any other through decide_skip, which takes a third of
 * the arguments: most decisions are not to send, and Redis's cost of a
 * script grows with its arguments (redis_scripts.c). */
static bool send_record(decide_ctx_t *d, const decision_t *dec, const opportunity_fold_t *fold,
                        overlay_effect_t *effect)
{
    const config_t *cfg = d->req->cfg;
    const decide_request_t *r = &d->r;
    const fast_config_t *fast = d->fast;
    const char *prefix = cfg->redis.prefix;
    const char *ch = cfg->channels[r->channel];
    const bool full = dec->send;

    enum { MAXKEYS = 4, FIXED = 17, MAXARGS = MAXKEYS + FIXED + MAX_STALE_FIELDS + 10 };
    const char *argv[MAXARGS];
    size_t lens[MAXARGS];
    int argc = 0;
#define ARG(p, l) (argv[argc] = (p), lens[argc] = (l), argc++)
#define ARGS(p) ARG(p, strlen(p))

    char k_idem[KEY_MAX], k_week[KEY_MAX], k_sent[KEY_MAX], k_member[KEY_MAX];
    ARG(k_idem, idem_key(k_idem, cfg, r));
    ARG(k_week, key_member(k_week, prefix, "week", r->member, r->member_len, "", 0));
    if (full) {
        ARG(k_sent, key_member(k_sent, prefix, "sent", r->member, r->member_len, "", 0));
        ARG(k_member, key_member(k_member, prefix, "member", r->member, r->member_len, "", 0));
    }
    const int nkeys = argc;

    char a_ts[24], a_cap[24], a_idem_ttl[24], a_dedup[24], a_hl[32];
    char a_week_ttl[24], a_member_ttl[24], a_ndel[NUMBER_FORMAT_MAX], f_opp[64], f_sent[64];
    char f_msent[48], f_mlast[48];
    number_format_i64(a_idem_ttl, fast->idempotency_ttl_s);
    number_format_i64(a_week_ttl, WEEK_TTL_S);
    number_format_i64(a_ndel, d->n_stale);
    /* The week's opportunity counter, if this one counts ('' if not). */
    if (dec->reached_coin)
        week_counter_field(f_opp, sizeof f_opp, ch, d->view.week, ":opp");
    else
        f_opp[0] = '\0';
    /* The rolling cap's field and cap: checked against the stored send
     * times, since what was read may miss another instance's send. */
    char f_sends[48], a_rolling[24];
    if (!full) {
        ARG(d->body, d->body_len);
        ARGS(a_idem_ttl);
        ARGS(f_opp);
        ARGS(a_week_ttl);
    } else {
        /* decide_record: see its contract in redis_scripts.c. */
        week_counter_field(f_sent, sizeof f_sent, ch, d->view.week, ":sent");
        number_format_i64(a_ts, r->ts);
        number_format_i64(a_cap, dec->cap);
        number_format_i64(a_dedup, (int64_t)fast->dedup_days * 86400);
        snprintf(a_hl, sizeof a_hl, "%.17g", cfg->policy.half_life_s);
        number_format_i64(a_member_ttl, policy_member_ttl_s(cfg));
        ARGS(a_ts);
        ARGS(f_sent);
        ARGS(f_opp);
        ARGS(a_cap);
        bool chosen = dec->chosen >= 0; /* a send has chosen a message */
        ARG(chosen ? r->candidates[dec->chosen].id : "",
            chosen ? r->candidates[dec->chosen].id_len : 0);
        ARGS(a_idem_ttl);
        ARGS(a_dedup);
        ARG(d->body, d->body_len);
        ARG(d->capped_body, d->capped_len);
        ARGS(a_hl);
        ARGS(a_week_ttl);
        ARGS(a_member_ttl);
        if (fast->rolling_cap) {
            key_field(f_sends, sizeof f_sends, ch, ":sends");
            number_format_i64(a_rolling, dec->rolling_cap);
            ARGS(f_sends);
            ARGS(a_rolling);
        } else {
            ARG("", 0);
            ARG("", 0);
        }
        ARG(f_msent, key_field(f_msent, sizeof f_msent, ch, "_sent"));
        ARG(f_mlast, key_field(f_mlast, sizeof f_mlast, ch, "_last_sent"));
    }
    ARGS(a_ndel);
    for (int i = 0; i < d->n_stale; i++)
        ARGS(d->stale[i]);

    /* Week-hash fields computed here, from what was read. */
    char f_ewma[48], v_ewma[32], f_ewma_week[48], v_ewma_week[24];
    char f_first[48], v_first[24], f_frac[48], v_frac[32], f_scores[48];
    if (fold->store_ewma) {
        key_field(f_ewma, sizeof f_ewma, ch, ":ewma");
        snprintf(v_ewma, sizeof v_ewma, "%.17g", fold->ewma);
        ARGS(f_ewma);
        ARGS(v_ewma);
    }
    if (fold->store_ewma_week) {
        key_field(f_ewma_week, sizeof f_ewma_week, ch, ":ewma_week");
        number_format_i64(v_ewma_week, fold->ewma_week);
        ARGS(f_ewma_week);
        ARGS(v_ewma_week);
    }
    if (effect->set_first_week) {
        key_field(f_first, sizeof f_first, ch, ":first_week");
        number_format_i64(v_first, effect->first_week);
        key_field(f_frac, sizeof f_frac, ch, ":first_frac");
        snprintf(v_frac, sizeof v_frac, "%.6f", effect->first_fraction);
        ARGS(f_first);
        ARGS(v_first);
        ARGS(f_frac);
        ARGS(v_frac);
    }
    char *scores = NULL;
    if (effect->have_score) {
        size_t sl = 0;
        scores = scores_text(&d->view, effect->score, fast->quality_history, d->scores_raw,
                             d->scores_raw_len, &sl);
        if (scores == NULL)
            return false;
        key_field(f_scores, sizeof f_scores, ch, ":scores");
        ARGS(f_scores);
        ARG(scores, sl);
    }
#undef ARG
#undef ARGS
    policy_state_t *ps = policy_state(d->app);
    int rc = store_eval_until(d->app->store, d->deadline_ns,
                              full ? ps->script_record : ps->script_skip, on_record, d, nkeys,
                              argc - nkeys, argv, lens);
    free(scores);
    if (rc != 0) {
        d->cause = store_refusal_cause(d);
        return false;
    }
    d->record_out = true;
    effect->seq = store_position(d->app->store);
    return true;
}

static void decide_and_record(decide_ctx_t *d)
{
    const config_t *cfg = d->req->cfg;
    app_t *app = d->app;
    policy_state_t *ps = policy_state(app);
    const fast_config_t *fast = d->fast;
    decide_request_t *r = &d->r;
    bool th_mode = threshold_mode(d);

    /* Bring the read up to date with the member's decisions recorded since. */
    overlay_apply_since(d->overlay, d->read_seq, &d->view, r->candidates, r->n, r->last_sent);

    opportunity_fold_t fold;
    decision_fold_history(&d->view.history, d->view.week, fast->pacing.ewma_alpha, &fold);

    plan_t plan;
    if (!th_mode && !(d->have_plan && plan_in_force(&d->plan, r->ts))) {
        default_plan(cfg, &plan);
        /* No plan in force: a new member or an expired plan. Either way the
         * planner should see this member now. */
        schedule_member(app, cfg, r->member, r->member_len, r->ts);
    } else {
        plan = d->plan;
    }
    if (!th_mode)
        complete_plan(cfg, fast, &plan);

    threshold_state_t *th = NULL;
    if (th_mode) {
        /* One calibrator per fast arm and channel: arms with other targets
         * must not pull each other's thresholds. */
        int a = d->fast_arm + 1;
        if (!ps->threshold_ready[a][r->channel]) {
            threshold_init(&ps->threshold[a][r->channel], fast->threshold_initial);
            ps->threshold_ready[a][r->channel] = true;
        }
        th = &ps->threshold[a][r->channel];
    }
    decision_input_t in = {
        .fast = fast, .seed = cfg->seed, .member = r->member, .member_len = r->member_len,
        .opportunity = r->opportunity, .opportunity_len = r->opportunity_len,
        .channel_name = cfg->channels[r->channel], .channel = r->channel, .ts = r->ts,
        .tz_offset_min = d->tz, .plan = th_mode ? NULL : &plan,
        .unsubscribed = d->unsubscribed, .member_open_rate = d->open_rate,
        .candidates = r->candidates, .n_candidates = r->n, .last_sent_ts = r->last_sent,
        .utility = r->utility, .select_prob = r->select_prob,
        .sent_this_week = d->view.sent_this_week, .recent_sends = d->view.sends,
        .n_recent_sends = d->view.n_sends, .expected_opportunities = fold.expected,
        .recent_best = d->view.recent, .n_recent = d->view.n_recent, .threshold = th,
    };
    decision_t dec;
    decision_evaluate(&in, &dec);
    d->ranked = dec.have_best;
    if (th != NULL && dec.have_best)
        threshold_observe(th, dec.best_score, fast->threshold_target_send_rate);

    const plan_t *shown = th_mode ? NULL : &plan;
    d->reason = dec.reason;
    d->chosen = dec.send ? dec.chosen : -1;
    d->body = body_text(d, &dec, dec.reason, dec.send, shown, false, &d->body_len);
    /* Only a send can be stopped by the cap inside the record script. */
    if (dec.send)
        d->capped_body = body_text(d, &dec, REASON_CAP_REACHED, false, shown, false,
                                   &d->capped_len);

    overlay_effect_t effect = {
        .channel = r->channel, .channel_key = d->view.channel_key, .week = d->view.week,
        .ts = r->ts,
        .counted_opp = dec.reached_coin, .sent = dec.send,
        .store_ewma = fold.store_ewma, .ewma = fold.ewma,
        .store_ewma_week = fold.store_ewma_week, .ewma_week = fold.ewma_week,
        .set_first_week = dec.reached_coin && !d->view.history.have_first_week,
        .first_week = d->view.week,
        .first_fraction = 1.0 - (double)calendar_seconds_into_week(r->ts, d->tz) /
                                    NOTIFD_SECONDS_PER_WEEK,
        .have_score = dec.have_best && fast->pacing.strategy == PACING_QUALITY && !th_mode,
        .score = dec.best_score,
        .msg = dec.chosen >= 0 ? r->candidates[dec.chosen].id : NULL,
        .msg_len = dec.chosen >= 0 ? r->candidates[dec.chosen].id_len : 0,
    };
    d->cause = METRICS_DEGRADED_INTERNAL;
    if (d->body == NULL || (dec.send && d->capped_body == NULL) ||
        !send_record(d, &dec, &fold, &effect)) {
        answer_degraded(d);
        return;
    }
    /* Later decisions of this member whose reads are already out see this
     * record through the overlay; this one needs it no more. */
    overlay_add(d->overlay, &effect);
    leave_overlay(d);
}

/* ------------------------------------------------------------------ */
/* Read                                                               */

/* Stored values the read treated as missing: counted, and logged now and
 * then (a poisoned member is read on every one of its decides). */
static void report_invalid(decide_ctx_t *d)
{
    if (stored_invalid_total(&d->invalid) == 0)
        return;
    metrics_observe_stored_invalid(d->app->metrics, &d->invalid);
    static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
    for (int f = 0; f < STORED_FIELD_COUNT; f++)
        if (d->invalid.n[f] > 0) {
            log_limited(&rl, LOG_WARN, "stored value out of range, treated as missing",
                        "field=%s", stored_field_name((stored_field_t)f));
            break;
        }
}

static void read_done(decide_ctx_t *d)
{
    if (--d->outstanding > 0)
        return;
    if (d->answered) {
        decide_ctx_free(d);
        return;
    }
    report_invalid(d);
    if (d->failed)
        answer_degraded(d);
    else
        decide_and_record(d);
}

/* True when the reply is not to be read: a failure (the decide degrades)
 * or a decide answered already by its deadline. */
static bool reply_failed(decide_ctx_t *d, redisReply *r)
{
    if (d->answered)
        return true;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (!d->failed)
            d->cause = METRICS_DEGRADED_CONNECTION;
        if (r != NULL) {
            static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
            log_limited(&rl, LOG_ERROR, "decide read failed", "error=\"%s\"", r->str);
            if (!d->failed)
                d->cause = METRICS_DEGRADED_ERROR_REPLY;
        }
        d->failed = true;
        return true;
    }
    return false;
}

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* A plan this instance read less than fast.plan_cache_ms ago and still in
 * force at the decision's ts (plan_cache.h), parsed under this decide's
 * own config snapshot: per_week is indexed by that config's channels. */
static bool cached_plan(decide_ctx_t *d)
{
    const policy_state_t *ps = policy_state(d->app);
    plan_t p;
    if (d->fast->plan_cache_ms <= 0 ||
        !plan_cache_get(ps->plan_cache, d->r.member, d->r.member_len, d->req->cfg->generation,
                        now_ms(), (uint64_t)d->fast->plan_cache_ms, &p) ||
        !plan_in_force(&p, d->r.ts))
        return false;
    d->plan = p;
    d->have_plan = true;
    return true;
}

static void cache_plan(decide_ctx_t *d)
{
    enum { SLOTS = 16384 };
    policy_state_t *ps = policy_state(d->app);
    if (ps->plan_cache == NULL)
        ps->plan_cache = plan_cache_new(SLOTS);
    /* Under the generation on_plan parsed it with (d->req->cfg): a decide
     * that read before a reload answers after it, and must not hand its
     * plan to decides of the new config. */
    plan_cache_put(ps->plan_cache, d->r.member, d->r.member_len, d->req->cfg->generation,
                   now_ms(), &d->plan);
}

/* Splits an HGETALL reply into parallel arrays for the pure parsers. */
static size_t hash_pairs(redisReply *r, const char **f, size_t *fl, const char **v, size_t *vl,
                         size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i + 1 < r->elements && n < max; i += 2) {
        if (r->element[i]->type != REDIS_REPLY_STRING || r->element[i + 1]->type != REDIS_REPLY_STRING)
            continue;
        f[n] = r->element[i]->str;
        fl[n] = r->element[i]->len;
        v[n] = r->element[i + 1]->str;
        vl[n] = r->element[i + 1]->len;
        n++;
    }
    return n;
}

static void on_plan(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (!reply_failed(d, r) && r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        enum { MAXP = 64 };
        const char *f[MAXP], *v[MAXP];
        size_t fl[MAXP], vl[MAXP];
        size_t n = hash_pairs(r, f, fl, v, vl, MAXP);
        const config_t *cfg = d->req->cfg;
        const char *names[NOTIFD_MAX_CHANNELS];
        for (int c = 0; c < cfg->n_channels; c++)
            names[c] = cfg->channels[c];
        d->have_plan = plan_parse_hash(&d->plan, names, cfg->n_channels,
                                       cfg->policy.slow.max_per_week, f, fl, v, vl, n,
                                       &d->invalid);
        if (d->have_plan && d->fast->plan_cache_ms > 0)
            cache_plan(d);
    }
    read_done(d);
}

/* A reply element's bytes, or NULL when Redis had no string there. */
static const char *reply_str(const redisReply *r, size_t *len)
{
    *len = r->type == REDIS_REPLY_STRING ? r->len : 0;
    return r->type == REDIS_REPLY_STRING ? r->str : NULL;
}

/* HMGET member: tz_offset_min, <ch>_unsub, <ch>_open, <ch>_click, <ch>_sent, <ch>_delivered */
static void on_member(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (!reply_failed(d, r) && r->type == REDIS_REPLY_ARRAY &&
        r->elements == STORED_MEMBER_FIELDS) {
        const char *v[STORED_MEMBER_FIELDS];
        size_t vl[STORED_MEMBER_FIELDS];
        for (size_t i = 0; i < STORED_MEMBER_FIELDS; i++)
            v[i] = reply_str(r->element[i], &vl[i]);
        stored_member_t m;
        stored_read_member(v, vl, &m, &d->invalid);
        d->tz = m.tz_offset_min;
        d->unsubscribed = m.unsubscribed;
        d->open_rate = m.open_rate;
    }
    read_done(d);
}

static void on_optout_copied(redisReply *reply, void *privdata)
{
    (void)reply; /* lost: the next decide of the member copies it again */
    (void)privdata;
}

static void copy_optout(const decide_ctx_t *d)
{
    const config_t *cfg = d->req->cfg;
    const char *ch = cfg->channels[d->r.channel];
    char key[KEY_MAX];
    size_t kl = key_member(key, cfg->redis.prefix, "optout", d->r.member, d->r.member_len, "", 0);
    (void)store_command(d->app->store, on_optout_copied, NULL, 4,
                        (const char *[]){"HSET", key, ch, "1"},
                        (size_t[]){4, kl, strlen(ch), 1});
}

/* HGET P optout:{M} <ch>: an opt-out kept until a resubscribe. The member
 * hash's flag (read just before) counts too: an opt-out recorded before
 * the durable key existed is copied into it, once. */
static void on_optout(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (!reply_failed(d, r)) {
        bool durable = false;
        if (r->type == REDIS_REPLY_STRING)
            stored_parse_flag(STORED_UNSUB, r->str, r->len, &durable, &d->invalid);
        if (d->unsubscribed && !durable)
            copy_optout(d);
        d->unsubscribed = d->unsubscribed || durable;
    }
    read_done(d);
}

static void on_week(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (!reply_failed(d, r) && r->type == REDIS_REPLY_ARRAY) {
        const char *ch = d->req->cfg->channels[d->r.channel];
        size_t chl = strlen(ch);
        /* The member's time zone arrived just before (HMGET member). */
        d->view.week = calendar_week_index(d->r.ts, d->tz);
        stored_week_t w = {.view = &d->view};
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            size_t fl, vl;
            const char *f = reply_str(r->element[i], &fl);
            const char *v = reply_str(r->element[i + 1], &vl);
            stored_read_week_field(&w, ch, chl, f, fl, v, vl, &d->invalid);
        }
        _Static_assert(sizeof d->stale == sizeof w.stale, "stale field lists differ");
        memcpy(d->stale, w.stale, sizeof d->stale);
        d->n_stale = w.n_stale;
        /* The scores list is passed through by the record (scores_text). */
        if (w.scores != NULL && (d->scores_raw = malloc(w.scores_len + 1)) != NULL) {
            memcpy(d->scores_raw, w.scores, w.scores_len);
            d->scores_raw_len = w.scores_len;
        }
    }
    read_done(d);
}

static void on_sent(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (!reply_failed(d, r) && r->type == REDIS_REPLY_ARRAY && r->elements == d->r.n) {
        for (size_t i = 0; i < d->r.n; i++) {
            size_t len;
            const char *s = reply_str(r->element[i], &len);
            double x;
            if (s != NULL && stored_read_sent_time(s, len, &x, &d->invalid))
                d->r.last_sent[i] = x;
        }
    }
    read_done(d);
}

/* Sends one read command; on refusal marks the read failed. The callback of
 * a sent command decrements `outstanding` itself. */
static void read_send(decide_ctx_t *d, store_reply_fn fn, int argc, const char **argv,
                      const size_t *lens)
{
    d->outstanding++;
    if (d->failed ||
        store_command_until(d->app->store, d->deadline_ns, fn, d, argc, argv, lens) != 0) {
        if (!d->failed)
            d->cause = store_refusal_cause(d);
        d->failed = true;
        d->outstanding--;
    }
}

/* Sends the read pipeline of one decision (see the file comment). */
static void start_read(decide_ctx_t *d)
{
    const config_t *cfg = d->req->cfg;
    const decide_request_t *r = &d->r;
    const char *prefix = cfg->redis.prefix;
    const char *chname = cfg->channels[r->channel];
    char key[KEY_MAX];
    size_t kl;

    overlay_table_t *t = overlay_table(d->app);
    d->read_seq = store_position(d->app->store);
    d->overlay = t ? overlay_join(t, r->member, r->member_len, d->read_seq) : NULL;

    /* Every command goes out before any reply is read. A reference keeps
     * `d` alive until all of them are sent. */
    d->outstanding = 1;
    if (!threshold_mode(d) && !cached_plan(d)) {
        kl = key_member(key, prefix, "plan", r->member, r->member_len, "", 0);
        read_send(d, on_plan, 2, (const char *[]){"HGETALL", key}, (size_t[]){7, kl});
    }
    char f_unsub[32], f_open[32], f_click[32], f_sent[32], f_deliv[32];
    kl = key_member(key, prefix, "member", r->member, r->member_len, "", 0);
    {
        const char *argv[] = {"HMGET", key, "tz_offset_min", f_unsub, f_open, f_click, f_sent, f_deliv};
        size_t lens[] = {5,
                         kl,
                         13,
                         key_field(f_unsub, sizeof f_unsub, chname, "_unsub"),
                         key_field(f_open, sizeof f_open, chname, "_open"),
                         key_field(f_click, sizeof f_click, chname, "_click"),
                         key_field(f_sent, sizeof f_sent, chname, "_sent"),
                         key_field(f_deliv, sizeof f_deliv, chname, "_delivered")};
        read_send(d, on_member, 8, argv, lens);
    }
    /* The durable opt-out (no TTL): it outlives the member hash. */
    kl = key_member(key, prefix, "optout", r->member, r->member_len, "", 0);
    read_send(d, on_optout, 3, (const char *[]){"HGET", key, chname},
              (size_t[]){4, kl, strlen(chname)});
    kl = key_member(key, prefix, "week", r->member, r->member_len, "", 0);
    read_send(d, on_week, 2, (const char *[]){"HGETALL", key}, (size_t[]){7, kl});
    if (r->n > 0 && d->fast->dedup_days > 0) {
        enum { STACK_ARGS = 66 };
        const char *sargv[STACK_ARGS];
        size_t slens[STACK_ARGS];
        bool heap = r->n + 2 > STACK_ARGS;
        const char **argv = heap ? malloc((r->n + 2) * sizeof *argv) : sargv;
        size_t *lens = heap ? malloc((r->n + 2) * sizeof *lens) : slens;
        if (argv == NULL || lens == NULL) {
            if (!d->failed)
                d->cause = METRICS_DEGRADED_INTERNAL;
            d->failed = true;
        } else {
            kl = key_member(key, prefix, "sent", r->member, r->member_len, "", 0);
            argv[0] = "ZMSCORE";
            lens[0] = 7;
            argv[1] = key;
            lens[1] = kl;
            for (size_t i = 0; i < r->n; i++) {
                argv[i + 2] = r->candidates[i].id;
                lens[i + 2] = r->candidates[i].id_len;
            }
            read_send(d, on_sent, (int)r->n + 2, argv, lens);
        }
        if (heap) {
            free(argv);
            free(lens);
        }
    }
    read_done(d); /* drop the sending reference */
}

/* fast.deadline_ms passed: answer degraded now. Commands of this decide
 * still queued in the store expire unsent (their deadline is the same). */
static void on_deadline(deadline_entry_t *e)
{
    decide_ctx_t *d = (decide_ctx_t *)((char *)e - offsetof(decide_ctx_t, deadline));
    if (d->answered)
        return;
    d->cause = METRICS_DEGRADED_DEADLINE;
    answer_degraded(d);
}

static void arm_deadline(decide_ctx_t *d)
{
    if (d->fast->deadline_ms <= 0)
        return;
    policy_state_t *ps = policy_state(d->app);
    if (ps->deadlines == NULL && (ps->deadlines = deadline_list_new(d->app->loop)) == NULL)
        return;
    d->deadline_ns = d->req->start_ns + (uint64_t)d->fast->deadline_ms * 1000000u;
    deadline_list_add(ps->deadlines, &d->deadline, d->deadline_ns, on_deadline);
}

void op_decide(request_t *req)
{
    const config_t *cfg = req->cfg;
    decide_ctx_t *d = calloc(1, sizeof *d);
    if (d == NULL) {
        request_reply_error(req, PROTO_INTERNAL, "out of memory");
        return;
    }
    d->req = req;
    d->app = req->app;
    const char *why = decide_request_parse(&d->r, req->root, cfg, now_unix());
    if (why != NULL) {
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        decide_ctx_free(d);
        return;
    }
    d->open_rate = -1.0;
    d->fast = policy_fast_for(&cfg->policy, d->r.member, d->r.member_len, &d->fast_arm,
                              &d->fast_arm_name);
    policy_slow_for(&cfg->policy, d->r.member, d->r.member_len, &d->slow_arm, &d->slow_arm_name);
    d->view.channel = d->r.channel;
    d->view.channel_key = hash_bytes(0, cfg->channels[d->r.channel],
                                     strlen(cfg->channels[d->r.channel]));
    /* Only quality pacing keeps and reads the recent best scores. */
    if (!threshold_mode(d) && d->fast->pacing.strategy == PACING_QUALITY)
        d->view.max_recent = (size_t)d->fast->quality_history;
    arm_deadline(d);
    start_read(d);
}
