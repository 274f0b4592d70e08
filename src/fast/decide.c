/*
 * decide.c - the decide op's flow: validate, read the member's state from Redis
 * in one round trip, decide (decision.c, pure), record in a second round
 * trip, answer.
 *
 * The read is a pipeline of plain commands, all sent at once; hiredis
 * answers them in order, so each callback can rely on the ones before it:
 *   HGETALL P plan:{M}        the pacing plan (hierarchical mode only)
 *   HMGET   P member:{M} ...  time zone, opt-out, open rate of the channel
 *   HGET    P optout:{M} ch   the durable opt-out
 *   HGETALL P week:{M}        weekly counters, the opportunity EWMA, and the
 *                             recent best scores (quality pacing)
 *   ZMSCORE P sent:{M} ids    when each candidate was last sent (dedup)
 * The record is one Lua script (src/store/lua/decide_record.lua) that enforces the weekly
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
 *
 * This file is the flow, in the order a decide happens; the read pipeline
 * is decide_read.c, the record script's arguments decide_record.c, the
 * answers and their bookkeeping decide_answer.c (decide_internal.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decide_internal.h"
#include "notifd/lib/hash.h"
#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/ops_policy.h"
#include "notifd/core/plan_cache.h"
#include "notifd/policy.h"
#include "notifd/slow/schedule.h"
#include "notifd/fast/decide_request.h"
#include "notifd/fast/stored_answer.h"

/* In the order a decide happens; helpers after the flow. */
static void arm_deadline(decide_ctx_t *d);
static void on_deadline(deadline_entry_t *e);
static void answer_degraded(decide_ctx_t *d);
static void finish(decide_ctx_t *d, const char *body, size_t len, decision_reason_t reason);
static void finish_duplicate(decide_ctx_t *d, const char *text, size_t len);
static void decide_done(decide_ctx_t *d);
static void decide_ctx_free(decide_ctx_t *d);
static int64_t now_unix(void);

/* The share of the first week as the week hash stores it ("%.6f",
 * decide_record.c): a decision that learns it from this record, through
 * the overlay or the member cache, must see what a read would. */
static double as_stored_fraction(double x)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.6f", x);
    return strtod(buf, NULL);
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
    const char *why = decide_request_of(req, &d->r, cfg, now_unix());
    if (why != NULL) {
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        decide_ctx_free(d);
        return;
    }
    decide_ctx_init(d, cfg);
    arm_deadline(d);
    if (decide_from_cache(d)) {
        decide_and_record(d); /* a member seen recently: no read round trip */
        return;
    }
    decide_start_read(d);
}

void decide_ctx_init(decide_ctx_t *d, const config_t *cfg)
{
    d->open_rate = -1.0;
    d->fast = policy_fast_for(&cfg->policy, d->r.member, d->r.member_len, &d->fast_arm,
                              &d->fast_arm_name);
    policy_slow_for(&cfg->policy, d->r.member, d->r.member_len, &d->slow_arm, &d->slow_arm_name);
    d->holdout = policy_in_holdout(&cfg->policy, d->r.member, d->r.member_len);
    d->view.channel = d->r.channel;
    d->view.channel_key = hash_bytes(0, cfg->channels[d->r.channel],
                                     strlen(cfg->channels[d->r.channel]));
    /* Only quality pacing keeps and reads the recent best scores. */
    if (!decide_threshold_mode(d) && d->fast->pacing.strategy == PACING_QUALITY)
        d->view.max_recent = (size_t)d->fast->quality_history;
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

void decide_read_done(decide_ctx_t *d)
{
    if (--d->outstanding > 0)
        return;
    if (d->explain) {
        explain_read_done(d);
        return;
    }
    if (d->answered) {
        decide_ctx_free(d);
        return;
    }
    decide_report_invalid(d);
    if (d->failed)
        answer_degraded(d);
    else
        decide_and_record(d);
}

void decide_prepare(decide_ctx_t *d, threshold_state_t *th, decide_prep_t *p)
{
    const config_t *cfg = d->req->cfg;
    const fast_config_t *fast = d->fast;
    decide_request_t *r = &d->r;
    bool th_mode = decide_threshold_mode(d);

    /* Bring the read up to date with the member's decisions recorded since. */
    overlay_apply_since(d->overlay, d->read_seq, &d->view, r->candidates, r->n, r->last_sent);

    p->plan_defaulted = false;
    if (!th_mode && !(d->have_plan && plan_in_force(&d->plan, r->ts))) {
        decide_default_plan(cfg, &p->plan);
        p->plan_defaulted = true;
    } else {
        p->plan = d->plan;
    }
    if (!th_mode)
        decide_complete_plan(cfg, fast, &p->plan);

    double per_week = !th_mode && plan_has_channel(&p->plan, r->channel)
                          ? p->plan.per_week[r->channel]
                          : 0.0;
    decision_fold_history(&d->view.history, d->view.week, fast->pacing.ewma_alpha, per_week,
                          &p->fold);
    p->in = (decision_input_t){
        .fast = fast, .seed = cfg->seed, .member = r->member, .member_len = r->member_len,
        .opportunity = r->opportunity, .opportunity_len = r->opportunity_len,
        .channel_name = cfg->channels[r->channel], .channel = r->channel, .ts = r->ts,
        .tz_offset_min = d->tz, .plan = th_mode ? NULL : &p->plan,
        .unsubscribed = d->unsubscribed, .holdout = d->holdout, .member_open_rate = d->open_rate,
        .candidates = r->candidates, .n_candidates = r->n, .last_sent_ts = r->last_sent,
        .utility = r->utility, .select_prob = r->select_prob,
        .sent_this_week = d->view.sent_this_week,
        .fraction_balance = p->fold.balance,
        .recent_sends = d->view.sends,
        .n_recent_sends = d->view.n_sends, .expected_opportunities = p->fold.expected,
        .recent_best = d->view.recent, .n_recent = d->view.n_recent, .threshold = th,
    };
}

void decide_and_record(decide_ctx_t *d)
{
    const config_t *cfg = d->req->cfg;
    app_t *app = d->app;
    policy_state_t *ps = policy_state(app);
    const fast_config_t *fast = d->fast;
    decide_request_t *r = &d->r;
    bool th_mode = decide_threshold_mode(d);

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
    decide_prep_t prep;
    decide_prepare(d, th, &prep);
    if (prep.plan_defaulted)
        /* No plan in force: a new member or an expired plan. Either way the
         * planner should see this member now. */
        schedule_member(app, cfg, r->member, r->member_len, r->ts);
    const opportunity_fold_t *fold = &prep.fold;
    decision_t dec;
    decision_evaluate(&prep.in, &dec);
    d->ranked = dec.have_best;
    if (th != NULL && dec.have_best)
        threshold_observe(th, dec.best_score, fast->threshold_target_send_rate);

    const plan_t *shown = th_mode ? NULL : &prep.plan;
    d->reason = dec.reason;
    d->priority = dec.priority;
    d->chosen = dec.send ? dec.chosen : -1;
    d->body = decide_answer_text(d, &dec, dec.reason, dec.send, shown, false, &d->body_len);
    /* Only a send can be stopped by the cap inside the record script. */
    if (dec.send)
        d->capped_body = decide_answer_text(d, &dec, REASON_CAP_REACHED, false, shown, false,
                                   &d->capped_len);
    /* A send that meets a global rate limit may be stopped there too. */
    free(d->limited_body);
    d->limited_body = NULL;
    if (decide_rate_limiters(d, &dec) > 0)
        d->limited_body = decide_limited_text(d, &dec, shown, &d->limited_len);

    overlay_effect_t effect = {
        .channel = r->channel, .channel_key = d->view.channel_key, .week = d->view.week,
        .ts = r->ts,
        .counted_opp = dec.reached_coin, .sent = dec.send, .unpaced = dec.unpaced,
        .store_ewma = fold->store_ewma, .ewma = fold->ewma,
        .store_ewma_week = fold->store_ewma_week, .ewma_week = fold->ewma_week,
        .store_balance = fold->store_balance, .balance = fold->balance,
        .set_first_week = dec.reached_coin && !d->view.history.have_first_week,
        .first_week = d->view.week,
        .first_fraction = as_stored_fraction(1.0 - (double)calendar_seconds_into_week(r->ts, d->tz) /
                                                       NOTIFD_SECONDS_PER_WEEK),
        .have_score = dec.have_best && fast->pacing.strategy == PACING_QUALITY && !th_mode,
        .score = dec.best_score,
        .msg = dec.chosen >= 0 ? r->candidates[dec.chosen].id : NULL,
        .msg_len = dec.chosen >= 0 ? r->candidates[dec.chosen].id_len : 0,
    };
    d->cause = METRICS_DEGRADED_INTERNAL;
    if (d->body == NULL || (dec.send && d->capped_body == NULL) ||
        (d->n_limiters > 0 && d->limited_body == NULL) ||
        !decide_send_record(d, &dec, fold, &effect)) {
        answer_degraded(d);
        return;
    }
    decide_cache_fill(d, &effect);
    /* Later decisions of this member whose reads are already out see this
     * record through the overlay; this one needs it no more. */
    overlay_add(d->overlay, &effect);
    decide_leave_overlay(d);
}

void decide_on_record(redisReply *reply, void *privdata)
{
    decide_ctx_t *d = privdata;
    d->record_out = false;
    if (d->answered) {
        /* Answered by the deadline. A record that arrives anyway changed
         * Redis as decided: it is logged, and the producer was told
         * degraded (docs/operations.md). Whether it did is not known
         * here, so the member's cached state goes. */
        decide_cache_drop(d);
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
    /* The view predicted "sent" or "skip", and the week hash's version one
     * above its own; anything else means someone else wrote the member's
     * state since (or it is unknown now): its cached view goes. */
    if (!ok || strcmp(reply->element[0]->str, d->chosen >= 0 ? "sent" : "skip") != 0 ||
        reply->elements < 2 || reply->element[1]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->integer != d->expect_version)
        decide_cache_drop(d);
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
    /* The global rate limiters' letters (decide_record.lua), when any. */
    if (reply->elements >= 3 && reply->element[2]->type == REDIS_REPLY_STRING)
        decide_count_rate_limits(d, reply->element[2]->str, reply->element[2]->len);
    if (strcmp(outcome, "dup") == 0 && reply->elements == 2 &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        /* Another request recorded this opportunity first: its answer wins. */
        finish_duplicate(d, reply->element[1]->str, reply->element[1]->len);
        return;
    }
    if (strcmp(outcome, "unsubscribed") == 0 && d->chosen >= 0) {
        /* An opt-out recorded since the view was read (or cached): nothing
         * was recorded. The script's answer is the fresh state that matters:
         * the opt-out comes before every other guardrail, so deciding again
         * with it gives what a fresh read would, without the read. */
        metrics_observe_member_cache(d->app->metrics, METRICS_MEMBER_CACHE_CONFLICT);
        d->unsubscribed = true;
        free(d->body);
        free(d->capped_body);
        free(d->scores_new);
        d->body = d->capped_body = d->scores_new = NULL;
        d->no_fill = true;
        decide_and_record(d);
        return;
    }
    if (strcmp(outcome, "sent_already") == 0 && d->chosen >= 0) {
        /* Another instance sent this message to the member since the read:
         * decide again without it. Nothing was recorded; each round takes
         * one more candidate out, so this ends. */
        d->r.last_sent[d->chosen] = (double)d->r.ts;
        free(d->body);
        free(d->capped_body);
        free(d->scores_new);
        d->body = d->capped_body = d->scores_new = NULL;
        d->no_fill = true;
        if (d->from_cache)
            metrics_observe_member_cache(d->app->metrics, METRICS_MEMBER_CACHE_CONFLICT);
        decide_and_record(d);
        return;
    }
    if (strcmp(outcome, "rate_limited") == 0 && d->limited_body != NULL) {
        /* The script completed the answer with its retry_at; it came from
         * Redis, so it is replayed only if fit, as a stored answer is. */
        if (reply->elements >= 4 && reply->element[3]->type == REDIS_REPLY_STRING &&
            stored_answer_valid(reply->element[3]->str, reply->element[3]->len)) {
            finish(d, reply->element[3]->str, reply->element[3]->len, REASON_RATE_LIMITED);
        } else {
            d->cause = METRICS_DEGRADED_INTERNAL;
            answer_degraded(d);
        }
    } else if (strcmp(outcome, "cap") == 0 && d->capped_body != NULL)
        finish(d, d->capped_body, d->capped_len, REASON_CAP_REACHED);
    else
        finish(d, d->body, d->body_len, d->reason);
}

void decide_on_skip_recorded(decide_ctx_t *d)
{
    d->record_out = false;
    if (d->answered) {
        /* Answered by the deadline: see decide_on_record. */
        decide_cache_drop(d);
        decide_ctx_free(d);
        return;
    }
    if (d->skip_failed || d->skip_dup != NULL || d->skip_stale)
        decide_cache_drop(d);
    if (d->skip_failed) {
        d->cause = d->skip_cause;
        answer_degraded(d);
    } else if (d->skip_dup != NULL) {
        /* Another request recorded this opportunity first: its answer wins. */
        finish_duplicate(d, d->skip_dup, d->skip_dup_len);
    } else {
        finish(d, d->body, d->body_len, d->reason);
    }
}

/* Why the store refused a command of this decide. */
int decide_refusal_cause(const decide_ctx_t *d)
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
    decide_leave_overlay(d);
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
    if (d->fast->on_store_error == STORE_ERROR_DEFAULT_PLAN && !decide_threshold_mode(d)) {
        plan_t plan;
        decide_default_plan(cfg, &plan);
        decide_complete_plan(cfg, d->fast, &plan);
        decision_input_t in = {
            .fast = d->fast, .seed = cfg->seed, .member = r->member, .member_len = r->member_len,
            .opportunity = r->opportunity, .opportunity_len = r->opportunity_len,
            .channel_name = cfg->channels[r->channel], .channel = r->channel, .ts = r->ts,
            .plan = &plan, .holdout = d->holdout, .member_open_rate = -1.0,
            .candidates = r->candidates,
            .n_candidates = r->n, .last_sent_ts = NULL, .utility = r->utility,
            .select_prob = r->select_prob, .expected_opportunities = -1.0,
        };
        decision_evaluate(&in, &dec);
        d->ranked = dec.have_best;
        d->priority = dec.priority;
        reason = dec.reason;
        if (decide_rate_limit_unchecked(d, &dec)) {
            /* limits.on_error "closed": no send a limit could not check. */
            dec.retry_at = now_unix() + 1;
            reason = REASON_RATE_LIMITED;
            body = decide_answer_text(d, &dec, reason, false, &plan, true, &len);
        } else {
            body = decide_answer_text(d, &dec, dec.reason, dec.send, &plan, true, &len);
        }
    } else {
        body = decide_answer_text(d, &dec, REASON_DEGRADED, false, NULL, true, &len);
    }
    finish(d, body, len, reason);
    free(body);
}

/* Answers with a decision computed by this request. */
static void finish(decide_ctx_t *d, const char *body, size_t len, decision_reason_t reason)
{
    if (body == NULL) {
        request_reply_error(d->req, PROTO_INTERNAL, "out of memory");
        decide_done(d);
        return;
    }
    decide_account(d, body, len, reason);
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
    metrics_observe_decision(d->app->metrics, d->r.channel, decide_threshold_mode(d) ? 1 : 0,
                             METRICS_REASON_DUPLICATE,
                             (double)(uv_hrtime() - d->req->start_ns) / 1e9);
    request_reply_ok_text(d->req, text, len, "\"duplicate\":true");
    decide_done(d);
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
    decide_leave_overlay(d);
    if (d->outstanding == 0 && !d->record_out)
        decide_ctx_free(d);
}

static void decide_ctx_free(decide_ctx_t *d)
{
    policy_state_t *ps = policy_state(d->app);
    if (ps->deadlines != NULL)
        deadline_list_remove(ps->deadlines, &d->deadline);
    decide_leave_overlay(d);
    free(d->body);
    free(d->capped_body);
    free(d->limited_body);
    free(d->scores_raw);
    free(d->scores_new);
    free(d->sent_buf);
    free(d->skip_dup);
    decide_request_free(&d->r);
    free(d);
}

overlay_table_t *decide_overlay_table(app_t *app)
{
    policy_state_t *ps = policy_state(app);
    if (ps->overlay == NULL)
        ps->overlay = overlay_table_new();
    return ps->overlay;
}

void decide_leave_overlay(decide_ctx_t *d)
{
    if (d->overlay != NULL) {
        overlay_leave(policy_state(d->app)->overlay, d->overlay, d->read_seq);
        d->overlay = NULL;
    }
}

static int64_t now_unix(void) { return (int64_t)time(NULL); }

bool ops_get_ts(const json_t *root, const config_t *cfg, int64_t *ts, const char **why)
{
    return ops_get_ts_at(root, now_unix(), cfg->limits.ts_window_s, ts, why);
}
