/*
 * decide.c - the decide op: validate, read the member's state from Redis
 * in one round trip, decide (decision.c, pure), record in a second round
 * trip, answer.
 *
 * The read is a pipeline of plain commands, all sent at once; hiredis
 * answers them in order, so each callback can rely on the ones before it:
 *   GET     P idem:{M}<opp>   a decision already made for this opportunity
 *   HGETALL P plan:{M}        the pacing plan (hierarchical mode only)
 *   HMGET   P member:{M} ...  time zone, opt-out, open rate of the channel
 *   HGETALL P week:{M}        weekly counters and the opportunity EWMA
 *   ZMSCORE P sent:{M} ids    when each candidate was last sent (dedup)
 *   LRANGE  P scores:{M}:<ch> recent best scores (quality pacing only)
 * The record is one Lua script (redis_scripts.c) that enforces the weekly
 * cap atomically and stores the answer under the idempotency key, so a
 * retried opportunity gets the same answer and counts nothing twice.
 *
 * If Redis is not ready or a command fails or times out, the answer comes
 * at once per fast.on_store_error: "skip" (reason degraded) or decide on
 * the default plan without counters; nothing waits for Redis to come back.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifd/decision.h"
#include "notifd/events.h"
#include "notifd/features.h"
#include "notifd/keys.h"
#include "notifd/log.h"
#include "notifd/metrics.h"
#include "notifd/ops_policy.h"
#include "notifd/plan.h"
#include "notifd/request.h"
#include "notifd/policy.h"
#include "notifd/schedule.h"

#define WEEK_TTL_S (21 * 86400)
#define SCORES_TTL_S (30 * 86400)

typedef struct decide_ctx {
    request_t *req;
    decide_request_t request;       /* the validated request (owns the arrays below) */
    const fast_config_t *fast;      /* the member's fast arm, or the base */
    int fast_arm;                   /* -1 control */
    const char *fast_arm_name;
    int slow_arm;
    const char *slow_arm_name;
    const char *member;
    size_t member_len;
    const char *opportunity;
    size_t opportunity_len;
    int channel;
    int64_t ts;
    size_t n;                       /* candidates */
    ranker_candidate_t *cands;
    double *last_sent;
    double *utility;
    double *select_prob;
    double recent[PACING_MAX_RECENT];
    size_t n_recent;

    int outstanding;                /* read replies still expected */
    bool failed;
    char *idem;                     /* a stored decision (JSON), if any */
    bool have_plan;
    plan_t plan;
    int tz;
    bool unsubscribed;
    double open_rate;
    opportunity_history_t history;
    uint32_t sent_this_week;
    bool ranked;                    /* utility and select_prob are filled */
} decide_ctx_t;

static void decide_ctx_free(decide_ctx_t *d)
{
    free(d->idem);
    decide_request_free(&d->request);
    free(d);
}

static int64_t now_unix(void) { return (int64_t)time(NULL); }

bool ops_get_ts(const json_t *root, int64_t *ts, const char **why)
{
    return ops_get_ts_at(root, now_unix(), ts, why);
}

/* P idem:{M}:<opportunity> */
static size_t idem_key(char *key, const config_t *cfg, const decide_ctx_t *d)
{
    char suffix[MEMBER_ID_MAX + 2];
    suffix[0] = ':';
    memcpy(suffix + 1, d->opportunity, d->opportunity_len);
    return key_member(key, cfg->redis.prefix, "idem", d->member, d->member_len, suffix,
                      d->opportunity_len + 1);
}

/* ------------------------------------------------------------------ */
/* Answering                                                          */

static json_t *plan_json(const config_t *cfg, const plan_t *plan)
{
    json_t *per_week = json_object();
    for (int c = 0; c < cfg->n_channels; c++)
        if (plan_has_channel(plan, c))
            json_object_set_new(per_week, cfg->channels[c], json_real(plan->per_week[c]));
    return json_pack("{s:I,s:s,s:o}", "version", (json_int_t)plan->version, "source",
                     plan->source, "per_week", per_week);
}

json_t *decide_plan_json(const config_t *cfg, const plan_t *plan);
json_t *decide_plan_json(const config_t *cfg, const plan_t *plan) { return plan_json(cfg, plan); }

static json_t *decision_body(decide_ctx_t *d, const decision_t *dec, decision_reason_t reason,
                             bool send, const plan_t *plan, bool degraded)
{
    const config_t *cfg = d->req->cfg;
    json_t *body = json_object();
    json_object_set_new(body, "send", json_boolean(send));
    if (send && dec->chosen >= 0)
        json_object_set_new(body, "message", json_stringn(d->cands[dec->chosen].id,
                                                          d->cands[dec->chosen].id_len));
    else
        json_object_set_new(body, "message", json_null());
    json_object_set_new(body, "reason", json_string(decision_reason_name(reason)));
    json_object_set_new(body, "p_send", json_real(reason == REASON_CAP_REACHED ? 0.0 : dec->p_send));
    json_object_set_new(body, "propensity",
                        json_real(send ? dec->propensity
                                       : (reason == REASON_PACED_SKIP ? dec->propensity : 1.0)));
    json_object_set_new(body, "plan", plan ? plan_json(cfg, plan) : json_null());
    json_object_set_new(body, "arm", json_pack("{s:s,s:s}", "slow", d->slow_arm_name, "fast",
                                               d->fast_arm_name));
    json_object_set_new(body, "mode", json_string(d->fast->mode == FAST_MODE_THRESHOLD
                                                      ? "threshold"
                                                      : "hierarchical"));
    if (reason == REASON_QUIET_HOURS)
        json_object_set_new(body, "retry_at", json_integer((json_int_t)dec->retry_at));
    if (degraded)
        json_object_set_new(body, "degraded", json_true());
    return body;
}

/* Decision reasons index the metrics registry's reason labels directly. */
_Static_assert((int)REASON_DEGRADED == METRICS_REASON_DEGRADED &&
                   (int)REASON_SEND == METRICS_REASON_SEND &&
                   (int)REASON_COUNT == METRICS_REASON_DUPLICATE,
               "decision reasons and metrics reason labels must stay in the same order");

/* The decision event: the answer plus what an offline evaluation needs to
 * replay it (every candidate's score, utility and selection probability). */
static void publish_event(decide_ctx_t *d, const json_t *body)
{
    const config_t *cfg = d->req->cfg;
    if (cfg->events.url[0] == '\0')
        return;
    json_t *ev = json_pack("{s:s,s:I,s:s%,s:s,s:s%}", "type", "decision", "ts",
                           (json_int_t)d->ts, "member", d->member, d->member_len, "channel",
                           cfg->channels[d->channel], "opportunity", d->opportunity,
                           d->opportunity_len);
    if (ev == NULL)
        return;
    json_object_update(ev, (json_t *)body);
    json_t *cands = json_array();
    for (size_t i = 0; i < d->n; i++) {
        json_t *c = json_pack("{s:s%,s:f}", "id", d->cands[i].id, d->cands[i].id_len, "score",
                              d->cands[i].score);
        json_object_set_new(c, "utility", d->ranked ? json_real(d->utility[i]) : json_null());
        json_object_set_new(c, "select_prob",
                            d->ranked ? json_real(d->select_prob[i]) : json_null());
        json_array_append_new(cands, c);
    }
    json_object_set_new(ev, "candidates", cands);
    events_publish(d->req->app, ev);
}

static void finish(decide_ctx_t *d, json_t *body, decision_reason_t reason)
{
    if (!json_is_true(json_object_get(body, "duplicate")))
        publish_event(d, body);
    policy_state_t *ps = policy_state(d->req->app);
    ps->fast_arm_decisions[d->fast_arm + 1][reason]++;
    ps->slow_arm_decisions[d->slow_arm + 1][reason]++;
    bool duplicate = json_is_true(json_object_get(body, "duplicate"));
    metrics_observe_decision(d->req->app->metrics, d->channel,
                             d->fast->mode == FAST_MODE_THRESHOLD ? 1 : 0,
                             duplicate ? METRICS_REASON_DUPLICATE : (int)reason,
                             (double)(uv_hrtime() - d->req->start_ns) / 1e9);
    request_reply_ok(d->req, body);
    decide_ctx_free(d);
}

static void default_plan(const config_t *cfg, plan_t *plan)
{
    plan_make_default(plan, cfg->policy.slow.default_mask, cfg->policy.slow.default_per_week);
}

/* Redis is unavailable: answer now, per fast.on_store_error. */
static void answer_degraded(decide_ctx_t *d)
{
    const config_t *cfg = d->req->cfg;
    static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
    log_limited(&rl, LOG_WARN, "decide degraded: redis unavailable", "policy=%s",
                d->fast->on_store_error == STORE_ERROR_SKIP ? "skip" : "default_plan");
    decision_t dec = {.chosen = -1, .propensity = 1.0};
    if (d->fast->on_store_error == STORE_ERROR_DEFAULT_PLAN && d->fast->mode == FAST_MODE_HIERARCHICAL) {
        plan_t plan;
        default_plan(cfg, &plan);
        decision_input_t in = {
            .fast = d->fast, .seed = cfg->seed, .member = d->member, .member_len = d->member_len,
            .opportunity = d->opportunity, .opportunity_len = d->opportunity_len,
            .channel_name = cfg->channels[d->channel], .channel = d->channel, .ts = d->ts,
            .plan = &plan, .member_open_rate = -1.0, .candidates = d->cands,
            .n_candidates = d->n, .last_sent_ts = NULL, .utility = d->utility,
            .select_prob = d->select_prob, .expected_opportunities = -1.0,
        };
        decision_evaluate(&in, &dec);
        d->ranked = dec.have_best;
        finish(d, decision_body(d, &dec, dec.reason, dec.send, &plan, true), dec.reason);
        return;
    }
    finish(d, decision_body(d, &dec, REASON_DEGRADED, false, NULL, true), REASON_DEGRADED);
}

/* ------------------------------------------------------------------ */
/* Record                                                             */

static void on_record(redisReply *reply, void *privdata)
{
    decide_ctx_t *d = privdata;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
            static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
            log_limited(&rl, LOG_ERROR, "decide record failed", "error=\"%s\"", reply->str);
        }
        answer_degraded(d);
        return;
    }
    const char *outcome = reply->element[0]->str;
    json_error_t jerr;
    json_t *body = json_loadb(reply->element[1]->str, reply->element[1]->len, 0, &jerr);
    if (body == NULL || !json_is_object(body)) {
        json_decref(body);
        request_reply_error(d->req, PROTO_INTERNAL, "stored decision is not valid JSON");
        decide_ctx_free(d);
        return;
    }
    decision_reason_t reason = REASON_SEND;
    const char *rs = json_string_value(json_object_get(body, "reason"));
    for (int r = 0; rs != NULL && r < REASON_COUNT; r++)
        if (strcmp(rs, decision_reason_name((decision_reason_t)r)) == 0)
            reason = (decision_reason_t)r;
    if (strcmp(outcome, "dup") == 0)
        json_object_set_new(body, "duplicate", json_true());
    finish(d, body, reason);
}

static char *dump_compact(json_t *o)
{
    return json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
}

static void decide_and_record(decide_ctx_t *d)
{
    request_t *req = d->req;
    const config_t *cfg = req->cfg;
    app_t *app = req->app;
    policy_state_t *ps = policy_state(app);
    const fast_config_t *fast = d->fast;
    bool threshold_mode = fast->mode == FAST_MODE_THRESHOLD;

    int64_t week = calendar_week_index(d->ts, d->tz);
    opportunity_fold_t fold;
    decision_fold_history(&d->history, week, fast->pacing.ewma_alpha, &fold);

    plan_t plan;
    if (!threshold_mode && !(d->have_plan && plan_in_force(&d->plan, d->ts))) {
        default_plan(cfg, &plan);
        /* No plan in force: a new member or an expired plan. Either way the
         * planner should see this member now. */
        schedule_member(app, cfg, d->member, d->member_len, d->ts);
    } else {
        plan = d->plan;
    }

    threshold_state_t *th = NULL;
    if (threshold_mode) {
        /* One calibrator per fast arm and channel: arms with other targets
         * must not pull each other's thresholds. */
        int a = d->fast_arm + 1;
        if (!ps->threshold_ready[a][d->channel]) {
            threshold_init(&ps->threshold[a][d->channel], fast->threshold_initial);
            ps->threshold_ready[a][d->channel] = true;
        }
        th = &ps->threshold[a][d->channel];
    }
    decision_input_t in = {
        .fast = fast, .seed = cfg->seed, .member = d->member, .member_len = d->member_len,
        .opportunity = d->opportunity, .opportunity_len = d->opportunity_len,
        .channel_name = cfg->channels[d->channel], .channel = d->channel, .ts = d->ts,
        .tz_offset_min = d->tz, .plan = threshold_mode ? NULL : &plan,
        .unsubscribed = d->unsubscribed, .member_open_rate = d->open_rate,
        .candidates = d->cands, .n_candidates = d->n, .last_sent_ts = d->last_sent,
        .utility = d->utility, .select_prob = d->select_prob,
        .sent_this_week = d->sent_this_week, .expected_opportunities = fold.expected,
        .recent_best = d->recent, .n_recent = d->n_recent, .threshold = th,
    };
    decision_t dec;
    decision_evaluate(&in, &dec);
    d->ranked = dec.have_best;
    if (th != NULL && dec.have_best)
        threshold_observe(th, dec.best_score, fast->threshold_target_send_rate);

    const plan_t *shown = threshold_mode ? NULL : &plan;
    json_t *body = decision_body(d, &dec, dec.reason, dec.send, shown, false);
    json_t *capped = decision_body(d, &dec, REASON_CAP_REACHED, false, shown, false);
    char *body_s = dump_compact(body);
    char *capped_s = dump_compact(capped);
    json_decref(capped);

    char k_idem[KEY_MAX], k_week[KEY_MAX], k_sent[KEY_MAX], k_scores[KEY_MAX], k_member[KEY_MAX];
    char suffix[300];
    const char *prefix = cfg->redis.prefix;
    const char *ch = cfg->channels[d->channel];
    size_t l_idem = idem_key(k_idem, cfg, d);
    size_t l_week = key_member(k_week, prefix, "week", d->member, d->member_len, "", 0);
    size_t l_sent = key_member(k_sent, prefix, "sent", d->member, d->member_len, "", 0);
    int sl = snprintf(suffix, sizeof suffix, ":%s", ch);
    size_t l_scores = key_member(k_scores, prefix, "scores", d->member, d->member_len, suffix,
                                 (size_t)sl);
    size_t l_member = key_member(k_member, prefix, "member", d->member, d->member_len, "", 0);

    char a_ts[24], a_week[24], a_cap[24], a_best[32], a_hist[16], a_idem_ttl[24], a_dedup[24];
    char a_hl[32], a_ewma[32], a_ewma_week[24], a_week_ttl[24], a_member_ttl[24], a_frac[32];
    snprintf(a_ts, sizeof a_ts, "%lld", (long long)d->ts);
    snprintf(a_week, sizeof a_week, "%lld", (long long)week);
    snprintf(a_cap, sizeof a_cap, "%lld", (long long)dec.cap);
    bool keep_score = dec.have_best && fast->pacing.strategy == PACING_QUALITY && !threshold_mode;
    if (keep_score)
        snprintf(a_best, sizeof a_best, "%.17g", dec.best_score);
    else
        a_best[0] = '\0';
    snprintf(a_hist, sizeof a_hist, "%d", fast->quality_history);
    snprintf(a_idem_ttl, sizeof a_idem_ttl, "%lld", (long long)fast->idempotency_ttl_s);
    snprintf(a_dedup, sizeof a_dedup, "%lld", (long long)fast->dedup_days * 86400);
    snprintf(a_hl, sizeof a_hl, "%.17g", cfg->policy.half_life_s);
    if (fold.store_ewma)
        snprintf(a_ewma, sizeof a_ewma, "%.17g", fold.ewma);
    else
        a_ewma[0] = '\0';
    if (fold.store_ewma_week)
        snprintf(a_ewma_week, sizeof a_ewma_week, "%lld", (long long)fold.ewma_week);
    else
        a_ewma_week[0] = '\0';
    snprintf(a_week_ttl, sizeof a_week_ttl, "%d", WEEK_TTL_S);
    snprintf(a_member_ttl, sizeof a_member_ttl, "%lld", policy_member_ttl_s(cfg));
    snprintf(a_frac, sizeof a_frac, "%.6f",
             1.0 - (double)calendar_seconds_into_week(d->ts, d->tz) / NOTIFD_SECONDS_PER_WEEK);
    const char *msg = dec.chosen >= 0 ? d->cands[dec.chosen].id : "";
    size_t msg_len = dec.chosen >= 0 ? d->cands[dec.chosen].id_len : 0;

    const char *argv[24] = {
        k_idem, k_week, k_sent, k_scores, k_member,
        a_ts, ch, a_week, dec.send ? "1" : "0", a_cap, msg, dec.reached_coin ? "1" : "0",
        a_best, a_hist, a_idem_ttl, a_dedup, body_s ? body_s : "{}", capped_s ? capped_s : "{}",
        a_hl, a_ewma, a_ewma_week, a_week_ttl, a_member_ttl, a_frac,
    };
    size_t lens[24];
    for (int i = 0; i < 24; i++)
        lens[i] = strlen(argv[i]);
    lens[0] = l_idem;
    lens[1] = l_week;
    lens[2] = l_sent;
    lens[3] = l_scores;
    lens[4] = l_member;
    lens[10] = msg_len;
    int rc = (body_s && capped_s)
                 ? store_eval(app->store, ps->script_record, on_record, d, 5, 19, argv, lens)
                 : -1;
    free(body_s);
    free(capped_s);
    json_decref(body);
    if (rc != 0)
        answer_degraded(d);
}

/* ------------------------------------------------------------------ */
/* Read                                                               */

static void read_done(decide_ctx_t *d)
{
    if (--d->outstanding > 0)
        return;
    if (d->failed) {
        answer_degraded(d);
        return;
    }
    if (d->idem != NULL) {
        json_t *body = json_loads(d->idem, 0, NULL);
        if (json_is_object(body)) {
            json_object_set_new(body, "duplicate", json_true());
            const char *rs = json_string_value(json_object_get(body, "reason"));
            decision_reason_t reason = REASON_SEND;
            for (int r = 0; rs != NULL && r < REASON_COUNT; r++)
                if (strcmp(rs, decision_reason_name((decision_reason_t)r)) == 0)
                    reason = (decision_reason_t)r;
            finish(d, body, reason);
            return;
        }
        json_decref(body);
    }
    decide_and_record(d);
}

static bool reply_failed(decide_ctx_t *d, redisReply *r)
{
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r != NULL) {
            static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
            log_limited(&rl, LOG_ERROR, "decide read failed", "error=\"%s\"", r->str);
        }
        d->failed = true;
        return true;
    }
    return false;
}

static void on_idem(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (!reply_failed(d, r) && r->type == REDIS_REPLY_STRING)
        d->idem = strndup(r->str, r->len);
    read_done(d);
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
        d->have_plan = plan_parse_hash(&d->plan, names, cfg->n_channels, f, fl, v, vl, n);
    }
    read_done(d);
}

static bool reply_number(const redisReply *r, double *out)
{
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 60)
        return false;
    char buf[64];
    memcpy(buf, r->str, r->len);
    buf[r->len] = '\0';
    char *end;
    double x = strtod(buf, &end);
    if (*end != '\0' || !isfinite(x))
        return false;
    *out = x;
    return true;
}

/* HMGET member: tz_offset_min, <ch>_unsub, <ch>_open, <ch>_click, <ch>_sent, <ch>_delivered */
static void on_member(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (!reply_failed(d, r) && r->type == REDIS_REPLY_ARRAY && r->elements == 6) {
        double x;
        if (reply_number(r->element[0], &x) && fabs(x) <= 14 * 60)
            d->tz = (int)x;
        if (reply_number(r->element[1], &x))
            d->unsubscribed = x != 0;
        double opens = 0, clicks = 0, sent = 0, delivered = 0;
        reply_number(r->element[2], &opens);
        reply_number(r->element[3], &clicks);
        reply_number(r->element[4], &sent);
        reply_number(r->element[5], &delivered);
        double base = sent > delivered ? sent : delivered;
        double engaged = opens > clicks ? opens : clicks;
        /* Below a couple of sends an open rate says nothing yet. */
        d->open_rate = base >= 2.0 ? engaged / base : -1.0;
    }
    read_done(d);
}

static void on_week(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (!reply_failed(d, r) && r->type == REDIS_REPLY_ARRAY) {
        const char *ch = d->req->cfg->channels[d->channel];
        size_t chl = strlen(ch);
        int64_t week = calendar_week_index(d->ts, d->tz);
        opportunity_history_t *h = &d->history;
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *f = r->element[i];
            double x;
            if (f->type != REDIS_REPLY_STRING || f->len <= chl + 1 ||
                memcmp(f->str, ch, chl) != 0 || f->str[chl] != ':' ||
                !reply_number(r->element[i + 1], &x))
                continue;
            const char *rest = f->str + chl + 1;
            size_t rl = f->len - chl - 1;
            if (rl == 4 && memcmp(rest, "ewma", 4) == 0) {
                h->have_ewma = true;
                h->ewma = x;
            } else if (rl == 9 && memcmp(rest, "ewma_week", 9) == 0) {
                h->have_ewma_week = true;
                h->ewma_week = (int64_t)x;
            } else if (rl == 10 && memcmp(rest, "first_week", 10) == 0) {
                h->have_first_week = true;
                h->first_week = (int64_t)x;
            } else if (rl == 10 && memcmp(rest, "first_frac", 10) == 0) {
                h->first_fraction = x;
            } else {
                char buf[48];
                if (rl >= sizeof buf)
                    continue;
                memcpy(buf, rest, rl);
                buf[rl] = '\0';
                long long wk;
                char kind[8];
                if (sscanf(buf, "%lld:%7s", &wk, kind) != 2)
                    continue;
                int slot = (int)(wk - (week - 2));
                if (strcmp(kind, "opp") == 0 && slot >= 0 && slot <= 2)
                    h->counts[slot] = x;
                else if (strcmp(kind, "sent") == 0 && wk == week)
                    d->sent_this_week = (uint32_t)x;
            }
        }
    }
    read_done(d);
}

static void on_sent(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (!reply_failed(d, r) && r->type == REDIS_REPLY_ARRAY && r->elements == d->n) {
        for (size_t i = 0; i < d->n; i++) {
            double x;
            if (reply_number(r->element[i], &x))
                d->last_sent[i] = x;
        }
    }
    read_done(d);
}

static void on_scores(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (!reply_failed(d, r) && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements && d->n_recent < PACING_MAX_RECENT; i++) {
            double x;
            if (reply_number(r->element[i], &x))
                d->recent[d->n_recent++] = x;
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
    if (d->failed || store_command(d->req->app->store, fn, d, argc, argv, lens) != 0) {
        d->failed = true;
        d->outstanding--;
    }
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
    decide_request_t *dr = &d->request;
    const char *why = decide_request_parse(dr, req->root, cfg, now_unix());
    if (why != NULL) {
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        decide_ctx_free(d);
        return;
    }
    d->member = dr->member;
    d->member_len = dr->member_len;
    d->opportunity = dr->opportunity;
    d->opportunity_len = dr->opportunity_len;
    d->channel = dr->channel;
    d->ts = dr->ts;
    d->n = dr->n;
    d->cands = dr->candidates;
    d->last_sent = dr->last_sent;
    d->utility = dr->utility;
    d->select_prob = dr->select_prob;
    d->open_rate = -1.0;
    d->fast = policy_fast_for(&cfg->policy, d->member, d->member_len, &d->fast_arm,
                              &d->fast_arm_name);
    policy_slow_for(&cfg->policy, d->member, d->member_len, &d->slow_arm, &d->slow_arm_name);

    const char *prefix = cfg->redis.prefix;
    const char *chname = cfg->channels[d->channel];
    char key[KEY_MAX];
    size_t kl;
    /* The read pipeline: every command goes out before any reply is read.
     * A reference keeps `d` alive until all of them are sent. */
    d->outstanding = 1;
    kl = idem_key(key, cfg, d);
    read_send(d, on_idem, 2, (const char *[]){"GET", key}, (size_t[]){3, kl});
    if (d->fast->mode == FAST_MODE_HIERARCHICAL) {
        kl = key_member(key, prefix, "plan", d->member, d->member_len, "", 0);
        read_send(d, on_plan, 2, (const char *[]){"HGETALL", key}, (size_t[]){7, kl});
    }
    char f_unsub[32], f_open[32], f_click[32], f_sent[32], f_deliv[32];
    snprintf(f_unsub, sizeof f_unsub, "%s_unsub", chname);
    snprintf(f_open, sizeof f_open, "%s_open", chname);
    snprintf(f_click, sizeof f_click, "%s_click", chname);
    snprintf(f_sent, sizeof f_sent, "%s_sent", chname);
    snprintf(f_deliv, sizeof f_deliv, "%s_delivered", chname);
    kl = key_member(key, prefix, "member", d->member, d->member_len, "", 0);
    {
        const char *argv[] = {"HMGET", key, "tz_offset_min", f_unsub, f_open, f_click, f_sent, f_deliv};
        size_t lens[] = {5, kl, 13, strlen(f_unsub), strlen(f_open), strlen(f_click),
                         strlen(f_sent), strlen(f_deliv)};
        read_send(d, on_member, 8, argv, lens);
    }
    kl = key_member(key, prefix, "week", d->member, d->member_len, "", 0);
    read_send(d, on_week, 2, (const char *[]){"HGETALL", key}, (size_t[]){7, kl});
    if (d->n > 0 && d->fast->dedup_days > 0) {
        const char **argv = malloc((d->n + 2) * sizeof *argv);
        size_t *lens = malloc((d->n + 2) * sizeof *lens);
        if (argv == NULL || lens == NULL) {
            d->failed = true;
        } else {
            kl = key_member(key, prefix, "sent", d->member, d->member_len, "", 0);
            argv[0] = "ZMSCORE";
            lens[0] = 7;
            argv[1] = key;
            lens[1] = kl;
            for (size_t i = 0; i < d->n; i++) {
                argv[i + 2] = d->cands[i].id;
                lens[i + 2] = d->cands[i].id_len;
            }
            read_send(d, on_sent, (int)d->n + 2, argv, lens);
        }
        free(argv);
        free(lens);
    }
    if (d->fast->mode == FAST_MODE_HIERARCHICAL && d->fast->pacing.strategy == PACING_QUALITY) {
        char suffix[32];
        int sl = snprintf(suffix, sizeof suffix, ":%s", chname);
        kl = key_member(key, prefix, "scores", d->member, d->member_len, suffix, (size_t)sl);
        char stop[16];
        snprintf(stop, sizeof stop, "%d", d->fast->quality_history - 1);
        read_send(d, on_scores, 4, (const char *[]){"LRANGE", key, "0", stop},
                  (size_t[]){6, kl, 1, strlen(stop)});
    }
    read_done(d); /* drop the sending reference */
}
