/*
 * feedback.c - the feedback and plan ops.
 *
 * feedback records what a member did with what notifd sent (delivered,
 * open, click, dismiss, unsubscribe, resubscribe, visit) into the member's
 * feature hash, `P member:{M}`, with one Lua script (src/store/lua/feedback.lua) that
 * also decays older counts. Both policies read those features: the decide
 * path for opt-outs, time zone and open rate; the planner for everything.
 *
 * Feedback that Redis cannot take (not ready, a dropped connection, an
 * outage error) goes to the feedback queue (feedback_queue.c) and is
 * answered {"recorded": false, "queued": true}.
 *
 * plan returns the member's stored plan, or the default plan with
 * source "default" when none is in force.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifd/events/events.h"
#include "notifd/fast/feedback.h"
#include "notifd/fast/feedback_queue.h"
#include "notifd/core/feedback_retry.h"
#include "notifd/core/keys.h"
#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/ops_policy.h"
#include "notifd/core/plan.h"
#include "notifd/policy.h"
#include "notifd/slow/schedule.h"



static const char *const feedback_events[] = {
    "delivered", "open", "click", "dismiss", "unsubscribe", "resubscribe", "visit", NULL,
};

bool feedback_parse(const json_t *root, const config_t *cfg, int64_t now, int64_t ts_window,
                    feedback_fields_t *out, const char **why)
{
    memset(out, 0, sizeof *out);
    json_t *member = json_object_get(root, "member");
    if ((*why = ops_check_member(member)) != NULL)
        return false;
    out->member = json_string_value(member);
    out->member_len = json_string_length(member);
    const char *event = json_string_value(json_object_get(root, "event"));
    for (const char *const *e = feedback_events; event != NULL && *e != NULL; e++)
        if (strcmp(*e, event) == 0)
            out->event = *e;
    if (out->event == NULL) {
        *why = "\"event\" must be one of delivered, open, click, dismiss, unsubscribe, "
               "resubscribe, visit";
        return false;
    }
    json_t *ch = json_object_get(root, "channel");
    out->channel = json_is_string(ch) ? config_channel_index(cfg, json_string_value(ch),
                                                             json_string_length(ch))
                                      : -1;
    bool visit = strcmp(event, "visit") == 0;
    if (out->channel < 0 && !(visit && (ch == NULL || json_is_null(ch)))) {
        *why = "\"channel\" must be a configured channel (optional only for visit)";
        return false;
    }
    json_t *msg = json_object_get(root, "message");
    if (msg != NULL && !json_is_null(msg) && !json_is_string(msg)) {
        *why = "\"message\" must be a string id";
        return false;
    }
    out->message = json_string_value(msg);
    if (!ops_get_ts_at(root, now, ts_window, &out->ts, why))
        return false;
    json_t *tzv = json_object_get(root, "tz_offset_min");
    if (tzv != NULL && !json_is_null(tzv)) {
        /* The stored field's range (stored_fields.h), or every reader of
         * the member would treat what was accepted here as missing. */
        if (!json_is_integer(tzv) || json_integer_value(tzv) < STORED_TZ_MIN ||
            json_integer_value(tzv) > STORED_TZ_MAX) {
            *why = "\"tz_offset_min\" must be minutes east of UTC in -720..840";
            return false;
        }
        snprintf(out->tz, sizeof out->tz, "%lld", (long long)json_integer_value(tzv));
    }
    /* Optional: makes a producer's retries (and a replay) count once. */
    json_t *eid = json_object_get(root, "event_id");
    if (eid != NULL && !json_is_null(eid)) {
        bool ok = json_is_string(eid) && json_string_length(eid) >= 1 &&
                  json_string_length(eid) <= FEEDBACK_EVENT_ID_MAX;
        for (size_t i = 0; ok && i < json_string_length(eid); i++)
            ok = (unsigned char)json_string_value(eid)[i] >= 0x20;
        if (!ok) {
            *why = "\"event_id\" must be a string of 1..256 bytes without control characters";
            return false;
        }
        out->event_id = json_string_value(eid);
        out->event_id_len = json_string_length(eid);
    }
    return true;
}

int feedback_send(app_t *app, const config_t *cfg, const feedback_fields_t *f,
                  store_reply_fn fn, void *privdata)
{
    char key[KEY_MAX], k_opt[KEY_MAX], k_evt[KEY_MAX], a_ts[24], a_hl[32], a_win[32], a_ttl[24];
    char a_evt[24];
    size_t kl = key_member(key, cfg->redis.prefix, "member", f->member, f->member_len, "", 0);
    snprintf(a_ts, sizeof a_ts, "%lld", (long long)f->ts);
    snprintf(a_hl, sizeof a_hl, "%.17g", cfg->policy.half_life_s);
    snprintf(a_win, sizeof a_win, "%.17g", cfg->policy.attribution_window_s);
    snprintf(a_ttl, sizeof a_ttl, "%lld", policy_member_ttl_s(cfg));
    const char *chname = f->channel >= 0 ? cfg->channels[f->channel] : "";
    /* KEYS then ARGV; with an event_id its key goes third and its TTL last. */
    const char *argv[11] = {key, k_opt};
    size_t lens[11] = {kl, key_member(k_opt, cfg->redis.prefix, "optout", f->member,
                                      f->member_len, "", 0)};
    int nkeys = 2;
    if (f->event_id != NULL) {
        char suffix[FEEDBACK_EVENT_ID_MAX + 2];
        suffix[0] = ':';
        memcpy(suffix + 1, f->event_id, f->event_id_len);
        argv[2] = k_evt;
        lens[2] = key_member(k_evt, cfg->redis.prefix, "evt", f->member, f->member_len, suffix,
                             f->event_id_len + 1);
        nkeys = 3;
    }
    snprintf(a_evt, sizeof a_evt, "%lld",
             (long long)(f->event_id_ttl_s > 0 ? f->event_id_ttl_s : cfg->policy.event_id_ttl_s));
    const char *args[] = {a_ts, chname, f->event, a_hl, a_win, a_ttl, f->tz, a_evt};
    for (int i = 0; i < 8; i++) {
        argv[nkeys + i] = args[i];
        lens[nkeys + i] = strlen(args[i]);
    }
    /* Redis does not report this connection's own writes (NOLOOP): what
     * the decide path cached of the member goes now. */
    policy_forget_member(app, f->member, f->member_len);
    return store_eval(app->store, policy_state(app)->script_feedback, fn, privdata, nkeys, 8,
                      argv, lens);
}

bool feedback_applied(app_t *app, const config_t *cfg, const feedback_fields_t *f,
                      long long result)
{
    if (result == -1)
        return false; /* a repeat of an event_id already recorded: counted once */
    if (result == 1)
        schedule_member(app, cfg, f->member, f->member_len, f->ts);
    if (cfg->events.url[0] == '\0')
        return true;
    /* Copies, not references: the fields point into a request's arena
     * (json_arena.h) or a queue record, and the event outlives both. */
    json_t *ev = json_pack("{s:s,s:I,s:s%,s:s?,s:s,s:s?}", "type", "feedback", "ts",
                           (json_int_t)f->ts, "member", f->member, f->member_len, "channel",
                           f->channel >= 0 ? cfg->channels[f->channel] : NULL, "event",
                           f->event, "message", f->message);
    /* Holdout members' feedback flows like everyone's; the mark lets an
     * analysis split it without the salt. */
    if (ev != NULL && policy_in_holdout(&cfg->policy, f->member, f->member_len))
        json_object_set_new(ev, "holdout", json_true());
    if (ev != NULL)
        events_publish(app, ev);
    return true;
}

json_t *feedback_record(const config_t *cfg, const feedback_fields_t *f, const char *event_id)
{
    json_t *r = json_pack("{s:s%,s:s,s:I}", "member", f->member, f->member_len, "event",
                          f->event, "ts", (json_int_t)f->ts);
    if (r == NULL)
        return NULL;
    if (f->channel >= 0)
        json_object_set_new(r, "channel", json_string(cfg->channels[f->channel]));
    if (f->tz[0] != '\0')
        json_object_set_new(r, "tz_offset_min", json_integer(strtoll(f->tz, NULL, 10)));
    if (f->message != NULL)
        json_object_set_new(r, "message", json_string(f->message));
    if (f->event_id != NULL)
        json_object_set_new(r, "event_id", json_stringn(f->event_id, f->event_id_len));
    else
        json_object_set_new(r, "event_id", json_string(event_id));
    return r;
}

/* The answer for an event the feedback queue took. */
static void reply_queued(request_t *req, const feedback_fields_t *f)
{
    const char *why = NULL;
    if (feedback_queue_put(req->app, req->cfg, f, &why) == 0)
        request_reply_ok(req, json_pack("{s:b,s:b}", "recorded", 0, "queued", 1));
    else
        request_reply_error(req, PROTO_UNAVAILABLE, "%s", why);
}

typedef struct feedback_ctx {
    request_t *req;
    feedback_fields_t f;            /* points into req->root, alive until the answer */
    char live_id[FEEDBACK_QUEUED_ID_MAX];
} feedback_ctx_t;

static void on_feedback(redisReply *reply, void *privdata)
{
    feedback_ctx_t *ctx = privdata;
    request_t *req = ctx->req;
    if (reply == NULL ||
        (reply->type == REDIS_REPLY_ERROR && feedback_error_is_outage(reply->str, reply->len))) {
        /* The connection dropped (or Redis cannot write now): the event
         * waits in the queue and is applied when Redis is back. */
        reply_queued(req, &ctx->f);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
        log_limited(&rl, LOG_ERROR, "feedback write failed", "error=\"%s\"", reply->str);
        request_reply_error(req, PROTO_INTERNAL, "the feature store refused the event: %s",
                            reply->str);
    } else {
        long long result = reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
        if (feedback_applied(req->app, req->cfg, &ctx->f, result))
            request_reply_ok(req, json_pack("{s:b}", "recorded", 1));
        else
            request_reply_ok(req, json_pack("{s:b,s:b}", "recorded", 1, "duplicate", 1));
    }
    free(ctx);
}

void op_feedback(request_t *req)
{
    feedback_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        request_reply_error(req, PROTO_INTERNAL, "out of memory");
        return;
    }
    ctx->req = req;
    const char *why;
    if (!feedback_parse(req->root, req->cfg, (int64_t)time(NULL), req->cfg->limits.ts_window_s,
                        &ctx->f, &why)) {
        free(ctx);
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        return;
    }
    /* An event sent without an id gets one Redis keeps for a short while
     * (feedback.live_id_ttl_s): when the connection drops with the command
     * unanswered, Redis may still run it (a stalled Redis runs what it had
     * received when it wakes), and the queued copy, with the same id, then
     * counts once. */
    if (ctx->f.event_id == NULL && req->cfg->feedback.live_id_ttl_s > 0 &&
        feedback_queue_live_id(req->app, ctx->live_id, sizeof ctx->live_id)) {
        ctx->f.event_id = ctx->live_id;
        ctx->f.event_id_len = strlen(ctx->live_id);
        ctx->f.event_id_ttl_s = req->cfg->feedback.live_id_ttl_s;
    }
    /* While anything waits in the queue, new events join it, so events of
     * one member are applied in the order they were accepted. */
    if (feedback_queue_busy(req->app) ||
        feedback_send(req->app, req->cfg, &ctx->f, on_feedback, ctx) != 0) {
        reply_queued(req, &ctx->f);
        free(ctx);
    }
}

/* A plan read: the request and the ts its validity is judged at. */
typedef struct plan_read {
    request_t *req;
    int64_t ts;
} plan_read_t;

static void on_plan_read(redisReply *reply, void *privdata)
{
    plan_read_t *pr = privdata;
    request_t *req = pr->req;
    const int64_t ts = pr->ts;
    free(pr);
    const config_t *cfg = req->cfg;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        request_reply_error(req, PROTO_UNAVAILABLE, "the feature store is unavailable");
        return;
    }
    enum { MAXP = 64 };
    const char *f[MAXP], *v[MAXP];
    size_t fl[MAXP], vl[MAXP], n = 0;
    for (size_t i = 0; i + 1 < reply->elements && n < MAXP; i += 2) {
        f[n] = reply->element[i]->str;
        fl[n] = reply->element[i]->len;
        v[n] = reply->element[i + 1]->str;
        vl[n] = reply->element[i + 1]->len;
        n++;
    }
    const char *names[NOTIFD_MAX_CHANNELS];
    for (int c = 0; c < cfg->n_channels; c++)
        names[c] = cfg->channels[c];
    plan_t plan;
    stored_invalid_t invalid = {{0}};
    bool stored = plan_parse_hash(&plan, names, cfg->n_channels, cfg->policy.slow.max_per_week,
                                  f, fl, v, vl, n, &invalid) &&
                  plan_in_force(&plan, ts);
    metrics_observe_stored_invalid(req->app->metrics, &invalid);
    if (!stored)
        plan_make_default(&plan, cfg->policy.slow.default_mask, cfg->policy.slow.default_per_week);
    /* As a decide would pace it: what the plan leaves out, defaulted. */
    plan_complete(&plan, (1u << cfg->n_channels) - 1u, cfg->policy.slow.default_mask,
                  cfg->policy.slow.default_per_week, cfg->policy.fast.unplanned_per_week,
                  cfg->policy.fast.unpaced_mask);
    json_t *pj = decide_plan_json(cfg, &plan);
    if (stored) {
        json_object_set_new(pj, "action", json_integer(plan.action));
        json_object_set_new(pj, "computed_at", json_integer((json_int_t)plan.computed_at));
        json_object_set_new(pj, "valid_until", json_integer((json_int_t)plan.valid_until));
        if (plan.arm[0])
            json_object_set_new(pj, "arm", json_string(plan.arm));
    }
    request_reply_ok(req, json_pack("{s:o}", "plan", pj));
}

void op_plan(request_t *req)
{
    json_t *member = json_object_get(req->root, "member");
    const char *why = ops_check_member(member);
    if (why != NULL) {
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        return;
    }
    /* Like every other op, the plan in force as of the request's ts. */
    int64_t ts;
    if (!ops_get_ts(req->root, req->cfg, &ts, &why)) {
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        return;
    }
    plan_read_t *pr = malloc(sizeof *pr);
    if (pr == NULL) {
        request_reply_error(req, PROTO_INTERNAL, "out of memory");
        return;
    }
    *pr = (plan_read_t){.req = req, .ts = ts};
    char key[KEY_MAX];
    size_t kl = key_member(key, req->cfg->redis.prefix, "plan", json_string_value(member),
                           json_string_length(member), "", 0);
    const char *argv[] = {"HGETALL", key};
    size_t lens[] = {7, kl};
    if (store_command(req->app->store, on_plan_read, pr, 2, argv, lens) != 0) {
        free(pr);
        request_reply_error(req, PROTO_UNAVAILABLE, "the feature store is unavailable");
    }
}
