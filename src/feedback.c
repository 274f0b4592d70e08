/*
 * feedback.c - the feedback and plan ops.
 *
 * feedback records what a member did with what notifd sent (delivered,
 * open, click, dismiss, unsubscribe, resubscribe, visit) into the member's
 * feature hash, `P member:{M}`, with one Lua script (redis_scripts.c) that
 * also decays older counts. Both policies read those features: the decide
 * path for opt-outs, time zone and open rate; the planner for everything.
 *
 * plan returns the member's stored plan, or the default plan with
 * source "default" when none is in force.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifd/events.h"
#include "notifd/keys.h"
#include "notifd/log.h"
#include "notifd/metrics.h"
#include "notifd/ops_policy.h"
#include "notifd/plan.h"
#include "notifd/policy.h"
#include "notifd/schedule.h"

json_t *decide_plan_json(const config_t *cfg, const plan_t *plan);

#define FEEDBACK_EVENT_ID_MAX 256

static const char *const feedback_events[] = {
    "delivered", "open", "click", "dismiss", "unsubscribe", "resubscribe", "visit", NULL,
};

typedef struct feedback_ctx {
    request_t *req;
    char *member;
    size_t member_len;
    int64_t ts;
    int channel;
} feedback_ctx_t;

static void publish_event(feedback_ctx_t *f)
{
    request_t *req = f->req;
    const config_t *cfg = req->cfg;
    if (cfg->events.url[0] == '\0')
        return;
    /* Copies, not references: the request tree lives in the request's arena
     * (json_arena.h) and the event outlives the request. */
    json_t *msg = json_object_get(req->root, "message");
    json_t *ev = json_pack("{s:s,s:I,s:s%,s:s?,s:s?,s:s?}", "type", "feedback", "ts",
                           (json_int_t)f->ts, "member", f->member, f->member_len, "channel",
                           f->channel >= 0 ? cfg->channels[f->channel] : NULL, "event",
                           json_string_value(json_object_get(req->root, "event")), "message",
                           json_string_value(msg));
    if (ev != NULL)
        events_publish(req->app, ev);
}

static void on_feedback(redisReply *reply, void *privdata)
{
    feedback_ctx_t *f = privdata;
    request_t *req = f->req;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply != NULL) {
            static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
            log_limited(&rl, LOG_ERROR, "feedback write failed", "error=\"%s\"", reply->str);
        }
        request_reply_error(req, PROTO_UNAVAILABLE,
                            "the feature store did not take the event; retry it");
    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == -1) {
        /* A repeat of an event_id already recorded: counted once. */
        request_reply_ok(req, json_pack("{s:b,s:b}", "recorded", 1, "duplicate", 1));
    } else {
        if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
            schedule_member(req->app, req->cfg, f->member, f->member_len, f->ts);
        publish_event(f);
        request_reply_ok(req, json_pack("{s:b}", "recorded", 1));
    }
    free(f->member);
    free(f);
}

void op_feedback(request_t *req)
{
    json_t *root = req->root;
    const config_t *cfg = req->cfg;
    const char *why = ops_check_member(json_object_get(root, "member"));
    if (why != NULL) {
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        return;
    }
    const char *event = json_string_value(json_object_get(root, "event"));
    bool known = false;
    for (const char *const *e = feedback_events; event != NULL && *e != NULL; e++)
        known |= strcmp(*e, event) == 0;
    if (!known) {
        request_reply_error(req, PROTO_BAD_REQUEST,
                            "\"event\" must be one of delivered, open, click, dismiss, "
                            "unsubscribe, resubscribe, visit");
        return;
    }
    json_t *ch = json_object_get(root, "channel");
    int channel = json_is_string(ch) ? config_channel_index(cfg, json_string_value(ch),
                                                            json_string_length(ch))
                                     : -1;
    bool visit = strcmp(event, "visit") == 0;
    if (channel < 0 && !(visit && (ch == NULL || json_is_null(ch)))) {
        request_reply_error(req, PROTO_BAD_REQUEST,
                            "\"channel\" must be a configured channel (optional only for visit)");
        return;
    }
    json_t *msg = json_object_get(root, "message");
    if (msg != NULL && !json_is_null(msg) && !json_is_string(msg)) {
        request_reply_error(req, PROTO_BAD_REQUEST, "\"message\" must be a string id");
        return;
    }
    int64_t ts;
    if (!ops_get_ts(root, cfg, &ts, &why)) {
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        return;
    }
    char tz[16] = "";
    json_t *tzv = json_object_get(root, "tz_offset_min");
    if (tzv != NULL && !json_is_null(tzv)) {
        /* The stored field's range (stored_fields.h), or every reader of
         * the member would treat what was accepted here as missing. */
        if (!json_is_integer(tzv) || json_integer_value(tzv) < STORED_TZ_MIN ||
            json_integer_value(tzv) > STORED_TZ_MAX) {
            request_reply_error(req, PROTO_BAD_REQUEST,
                                "\"tz_offset_min\" must be minutes east of UTC in -720..840");
            return;
        }
        snprintf(tz, sizeof tz, "%lld", (long long)json_integer_value(tzv));
    }

    /* Optional: makes a producer's retries (and a replay) count once. */
    json_t *eid = json_object_get(root, "event_id");
    if (eid != NULL && !json_is_null(eid)) {
        bool ok = json_is_string(eid) && json_string_length(eid) >= 1 &&
                  json_string_length(eid) <= FEEDBACK_EVENT_ID_MAX;
        for (size_t i = 0; ok && i < json_string_length(eid); i++)
            ok = (unsigned char)json_string_value(eid)[i] >= 0x20;
        if (!ok) {
            request_reply_error(req, PROTO_BAD_REQUEST,
                                "\"event_id\" must be a string of 1..256 bytes without control "
                                "characters");
            return;
        }
    } else {
        eid = NULL;
    }

    json_t *member = json_object_get(root, "member");
    feedback_ctx_t *f = calloc(1, sizeof *f);
    if (f == NULL || (f->member = malloc(json_string_length(member) + 1)) == NULL) {
        free(f);
        request_reply_error(req, PROTO_INTERNAL, "out of memory");
        return;
    }
    f->req = req;
    f->member_len = json_string_length(member);
    memcpy(f->member, json_string_value(member), f->member_len + 1);
    f->ts = ts;
    f->channel = channel;

    char key[KEY_MAX], k_opt[KEY_MAX], k_evt[KEY_MAX], a_ts[24], a_hl[32], a_win[32], a_ttl[24];
    char a_evt[24];
    size_t kl = key_member(key, cfg->redis.prefix, "member", f->member, f->member_len, "", 0);
    snprintf(a_ts, sizeof a_ts, "%lld", (long long)ts);
    snprintf(a_hl, sizeof a_hl, "%.17g", cfg->policy.half_life_s);
    snprintf(a_win, sizeof a_win, "%.17g", cfg->policy.attribution_window_s);
    snprintf(a_ttl, sizeof a_ttl, "%lld", policy_member_ttl_s(cfg));
    const char *chname = channel >= 0 ? cfg->channels[channel] : "";
    /* KEYS then ARGV; with an event_id its key goes third and its TTL last. */
    const char *argv[11] = {key, k_opt};
    size_t lens[11] = {kl, key_member(k_opt, cfg->redis.prefix, "optout", f->member,
                                      f->member_len, "", 0)};
    int nkeys = 2;
    if (eid != NULL) {
        char suffix[FEEDBACK_EVENT_ID_MAX + 2];
        suffix[0] = ':';
        memcpy(suffix + 1, json_string_value(eid), json_string_length(eid));
        argv[2] = k_evt;
        lens[2] = key_member(k_evt, cfg->redis.prefix, "evt", f->member, f->member_len, suffix,
                             json_string_length(eid) + 1);
        nkeys = 3;
    }
    snprintf(a_evt, sizeof a_evt, "%lld", (long long)cfg->policy.event_id_ttl_s);
    const char *args[] = {a_ts, chname, event, a_hl, a_win, a_ttl, tz, a_evt};
    for (int i = 0; i < 8; i++) {
        argv[nkeys + i] = args[i];
        lens[nkeys + i] = strlen(args[i]);
    }
    if (store_eval(req->app->store, policy_state(req->app)->script_feedback, on_feedback, f,
                   nkeys, 8, argv, lens) != 0) {
        free(f->member);
        free(f);
        request_reply_error(req, PROTO_UNAVAILABLE,
                            "the feature store is unavailable; retry the event later");
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
