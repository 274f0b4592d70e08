/*
 * planner_ops.c - the replan and planner_run ops of the producer protocol.
 *
 * replan runs the slow policy for one member on the loop thread, with the
 * request's own config snapshot and the fast path's async store: read the
 * features and the stored plan version (one pipelined round trip), plan
 * (slow_plan_member, pure and sub-microsecond, so it is fine on the loop),
 * then write the plan with the worker's plan-write script and add the member
 * to its partition's cadence set at its phase (cadence.h; a second round
 * trip, both commands pipelined). The answer carries the plan as stored.
 *
 * planner_run hands one full pass to the planner thread (planner.c) and
 * answers when the thread posts the result back; the loop keeps serving
 * other requests meanwhile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifd/core/features.h"
#include "notifd/core/keys.h"
#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/ops_policy.h"
#include "notifd/slow/planner.h"
#include "notifd/policy.h"
#include "notifd/core/cadence.h"
#include "notifd/slow/schedule.h"
#include "notifd/core/slow_policy.h"
#include "notifd/core/stored_fields.h"



/* ------------------------------------------------------------------ */
/* replan                                                             */

typedef struct replan_ctx {
    request_t *req;
    char member[MEMBER_ID_MAX + 1];
    size_t member_len;
    int64_t ts;
    int outstanding;      /* replies still expected in the current round */
    bool failed;          /* a command failed: answer unavailable */
    char error[160];
    bool have_features;
    member_features_t features;
    int64_t old_version;
    plan_t plan;
    int64_t written_version;    /* what the plan-write script stored */
} replan_ctx_t;

static void replan_fail(replan_ctx_t *r, const redisReply *reply)
{
    r->failed = true;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && r->error[0] == '\0') {
        snprintf(r->error, sizeof r->error, "%s", reply->str);
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
        log_limited(&rl, LOG_ERROR, "replan: redis error", "error=\"%s\"", reply->str);
    }
}

static void replan_answer_unavailable(replan_ctx_t *r)
{
    if (r->error[0] != '\0')
        request_reply_error(r->req, PROTO_UNAVAILABLE,
                            "the feature store refused the replan (%s); retry later", r->error);
    else
        request_reply_error(r->req, PROTO_UNAVAILABLE,
                            "the feature store is unavailable; retry the replan later");
    free(r);
}

static void on_written(redisReply *reply, void *privdata);

static void replan_write(replan_ctx_t *r)
{
    request_t *req = r->req;
    const config_t *cfg = req->cfg;
    /* The member's slow experiment arm, or the base parameters (control). */
    const char *arm_name = "control";
    const slow_config_t *slow = policy_slow_for(&cfg->policy, r->member, r->member_len, NULL,
                                                &arm_name);
    plan_t *plan = &r->plan;
    memset(plan, 0, sizeof *plan);
    if (planner_plan_member(cfg, slow, r->member, r->member_len, &r->features, r->ts,
                            plan) < 0) {
        request_reply_error(req, PROTO_INTERNAL, "the action grid is empty");
        free(r);
        return;
    }
    snprintf(plan->arm, sizeof plan->arm, "%s", arm_name);
    plan->version = r->old_version + 1;
    plan->computed_at = r->ts;
    plan->valid_until = planner_valid_until(cfg, r->member, r->member_len, r->ts);
    snprintf(plan->source, sizeof plan->source, "planner");

    char key[KEY_MAX];
    size_t kl = key_member(key, cfg->redis.prefix, "plan", r->member, r->member_len, "", 0);
    planner_write_args_t wa;
    int64_t ttl = planner_plan_ttl_set_s(cfg, plan->computed_at, plan->valid_until);
    planner_write_args_build(&wa, cfg, key, kl, plan, ttl, (int64_t)time(NULL) + ttl);
    if (store_eval(req->app->store, policy_state(req->app)->script_plan_write, on_written, r, 1,
                   wa.argc - 1, wa.argv, wa.lens) != 0)
        replan_answer_unavailable(r);
}

static void replan_answer(replan_ctx_t *r);

/* The plan is stored by now, so a cadence set of the wrong type does not
 * fail the replan: it is logged, and the member comes back through the due
 * set when its plan runs out, as with the planner's own walks of a broken
 * partition. Any other error is Redis's as a whole: unavailable. */
static void on_scheduled(redisReply *reply, void *privdata)
{
    replan_ctx_t *r = privdata;
    if (reply == NULL ||
        (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "WRONGTYPE", 9) != 0)) {
        replan_fail(r, reply);
        replan_answer_unavailable(r);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
        log_limited(&rl, LOG_WARN, "replan: the cadence set refused the member",
                    "error=\"%s\"", reply->str);
    }
    replan_answer(r);
}

/* The plan is stored: now (and only now) the member joins the cadence at
 * its phase (a plain ZADD: the phase is a function of the id), so the
 * planner replans it as the phase comes round after half an interval. */
static void on_written(redisReply *reply, void *privdata)
{
    replan_ctx_t *r = privdata;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER || reply->integer <= 0) {
        replan_fail(r, reply);
        replan_answer_unavailable(r);
        return;
    }
    const config_t *cfg = r->req->cfg;
    r->written_version = reply->integer;
    /* Usually old + 1; more if another writer got in between (the hash
     * still holds the valid_until sent, which is what the answer shows). */
    r->plan.version = r->written_version;
    char skey[KEY_MAX], due[32];
    size_t sl = key_global(skey, cfg->redis.prefix, "cadence",
                           schedule_partition(r->member, r->member_len));
    int dl = snprintf(due, sizeof due, "%.17g", cadence_phase(r->member, r->member_len));
    const char *argv[] = {"ZADD", skey, due, r->member};
    size_t lens[] = {4, sl, (size_t)dl, r->member_len};
    if (store_command(r->req->app->store, on_scheduled, r, 4, argv, lens) != 0)
        replan_answer_unavailable(r);
}

static void replan_answer(replan_ctx_t *r)
{
    const config_t *cfg = r->req->cfg;
    policy_forget_plan(r->req->app, r->member, r->member_len);
    json_t *pj = decide_plan_json(cfg, &r->plan);
    json_object_set_new(pj, "action", json_integer(r->plan.action));
    json_object_set_new(pj, "computed_at", json_integer((json_int_t)r->plan.computed_at));
    json_object_set_new(pj, "valid_until", json_integer((json_int_t)r->plan.valid_until));
    json_object_set_new(pj, "arm", json_string(r->plan.arm));
    request_reply_ok(r->req, json_pack("{s:o,s:b}", "plan", pj, "features", r->have_features));
    free(r);
}

static void on_features(redisReply *reply, void *privdata)
{
    replan_ctx_t *r = privdata;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR || reply->type != REDIS_REPLY_ARRAY) {
        replan_fail(r, reply);
    } else if (reply->elements > 0) {
        enum { MAXP = 256 };
        const char *f[MAXP], *v[MAXP];
        size_t fl[MAXP], vl[MAXP], n = 0;
        for (size_t i = 0; i + 1 < reply->elements && n < MAXP; i += 2) {
            if (reply->element[i]->type != REDIS_REPLY_STRING ||
                reply->element[i + 1]->type != REDIS_REPLY_STRING)
                continue;
            f[n] = reply->element[i]->str;
            fl[n] = reply->element[i]->len;
            v[n] = reply->element[i + 1]->str;
            vl[n] = reply->element[i + 1]->len;
            n++;
        }
        const config_t *cfg = r->req->cfg;
        const char *names[NOTIFD_MAX_CHANNELS];
        for (int c = 0; c < cfg->n_channels; c++)
            names[c] = cfg->channels[c];
        features_parse_hash(&r->features, names, cfg->n_channels, f, fl, v, vl, n);
        metrics_observe_stored_invalid(r->req->app->metrics, &r->features.invalid);
        r->have_features = true;
    }
    if (--r->outstanding == 0) {
        if (r->failed)
            replan_answer_unavailable(r);
        else
            replan_write(r);
    }
}

static void on_version(redisReply *reply, void *privdata)
{
    replan_ctx_t *r = privdata;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        replan_fail(r, reply);
    } else if (reply->type == REDIS_REPLY_STRING) {
        /* Out of range (stored_fields.h): as if there were none, so the
         * next version is 1, never an overflow past INT64_MAX. */
        int64_t v = 0;
        stored_parse_int(STORED_PLAN_VERSION, reply->str, reply->len, &v, NULL);
        r->old_version = v;
    }
    if (--r->outstanding == 0) {
        if (r->failed)
            replan_answer_unavailable(r);
        else
            replan_write(r);
    }
}

void op_replan(request_t *req)
{
    json_t *root = req->root;
    const config_t *cfg = req->cfg;
    json_t *member = json_object_get(root, "member");
    const char *why = ops_check_member(member);
    if (why != NULL) {
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        return;
    }
    int64_t ts;
    if (!ops_get_ts(root, req->cfg, &ts, &why)) {
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        return;
    }
    replan_ctx_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        request_reply_error(req, PROTO_INTERNAL, "out of memory");
        return;
    }
    r->req = req;
    r->member_len = json_string_length(member);
    memcpy(r->member, json_string_value(member), r->member_len);
    r->ts = ts;
    features_init(&r->features);

    char key[KEY_MAX];
    size_t kl = key_member(key, cfg->redis.prefix, "member", r->member, r->member_len, "", 0);
    r->outstanding = 1; /* the sending reference */
    r->outstanding++;
    if (store_command(req->app->store, on_features, r, 2, (const char *[]){"HGETALL", key},
                      (size_t[]){7, kl}) != 0) {
        r->outstanding--;
        r->failed = true;
    }
    kl = key_member(key, cfg->redis.prefix, "plan", r->member, r->member_len, "", 0);
    if (!r->failed) {
        r->outstanding++;
        if (store_command(req->app->store, on_version, r, 3,
                          (const char *[]){"HGET", key, "version"}, (size_t[]){4, kl, 7}) != 0) {
            r->outstanding--;
            r->failed = true;
        }
    }
    /* Drop the sending reference; this answers if nothing was sent. */
    if (--r->outstanding == 0) {
        if (r->failed)
            replan_answer_unavailable(r);
        else
            replan_write(r);
    }
}

/* ------------------------------------------------------------------ */
/* planner_run                                                        */

static void on_pass_done(const planner_result_t *res, void *arg)
{
    request_t *req = arg;
    if (res->error[0] != '\0') {
        request_reply_error(req, PROTO_UNAVAILABLE,
                            "the planner pass did not complete (%s); %llu members were planned "
                            "before it stopped; run it again",
                            res->error, (unsigned long long)res->planned);
        return;
    }
    if (res->aborted) {
        request_reply_error(req, PROTO_UNAVAILABLE,
                            "notifd is stopping; the pass stopped after %llu members",
                            (unsigned long long)res->planned);
        return;
    }
    policy_forget_plans(req->app);
    request_reply_ok(req, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:i,s:i,s:i}", "planned",
                                    (json_int_t)res->planned, "kept", (json_int_t)res->kept,
                                    "failed", (json_int_t)res->failed,
                                    "removed", (json_int_t)res->removed,
                                    "chunks", (json_int_t)res->chunks,
                                    "chunks_small", (json_int_t)res->chunks_small,
                                    "seconds", res->seconds,
                                    "partitions", res->partitions_done, "partitions_skipped",
                                    res->partitions_skipped, "partitions_failed",
                                    res->partitions_failed));
}

void op_planner_run(request_t *req)
{
    int64_t ts;
    const char *why;
    if (!ops_get_ts(req->root, req->cfg, &ts, &why)) {
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        return;
    }
    if (planner_request_pass(req->app->planner, ts, on_pass_done, req) != 0)
        request_reply_error(req, PROTO_UNAVAILABLE,
                            "the planner is not running (notifd is stopping)");
}
