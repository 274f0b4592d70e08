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
#include "notifd/hash.h"
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
    json_t *body;                   /* the answer as decided, until recorded */
    bool gated;                     /* holds or waits for its member's gate */
    struct member_gate *gate;
    app_t *app;                     /* outlives req, which the reply frees */
    struct decide_ctx *next_waiter;
    json_t *capped_body;            /* the answer if the cap stops the send */
    decision_reason_t reason;       /* of `body` */
} decide_ctx_t;

static void member_gate_leave(decide_ctx_t *d);
static void start_read(decide_ctx_t *d);

/*
 * One decision per member at a time, per instance. A decision reads the
 * member's weekly counters, decides, then records; two decisions for one
 * member in flight together would both read the same "sent this week" and
 * the pacing budget would be spent twice (only the hard cap, which the
 * record script re-checks atomically, would stop it). Pipelined producers
 * and the simulator send many opportunities of one member back to back, so
 * later ones wait here, in arrival order, until the earlier one has
 * recorded. Other members are not delayed. Across instances the cap still
 * holds; the budget can be overshot only by truly simultaneous decisions.
 */
typedef struct member_gate {
    struct member_gate *next;       /* hash chain */
    uint64_t hash;
    decide_ctx_t *owner;
    decide_ctx_t *waiters, *last_waiter;
    size_t member_len;
    char member[];
} member_gate_t;

#define GATE_BUCKETS 4096

typedef struct gate_table {
    member_gate_t *buckets[GATE_BUCKETS];
    decide_ctx_t *to_start, *to_start_last; /* waiters released while releasing */
    bool releasing;
} gate_table_t;

static gate_table_t *gate_table(app_t *app)
{
    policy_state_t *ps = policy_state(app);
    if (ps->member_gates == NULL)
        ps->member_gates = calloc(1, sizeof(gate_table_t));
    return ps->member_gates;
}

static member_gate_t **gate_find(gate_table_t *t, const char *member, size_t len, uint64_t h)
{
    member_gate_t **pp = &t->buckets[h % GATE_BUCKETS];
    while (*pp != NULL && !((*pp)->hash == h && (*pp)->member_len == len &&
                            memcmp((*pp)->member, member, len) == 0))
        pp = &(*pp)->next;
    return pp;
}

/* True when `d` may start now; false when it was queued behind its member's
 * decision in flight (or the table could not be allocated: then it runs
 * ungated rather than fail). */
static bool member_gate_enter(decide_ctx_t *d)
{
    gate_table_t *t = gate_table(d->req->app);
    if (t == NULL)
        return true;
    uint64_t h = hash_bytes(0, d->member, d->member_len);
    member_gate_t **pp = gate_find(t, d->member, d->member_len, h);
    if (*pp == NULL) {
        member_gate_t *g = malloc(sizeof *g + d->member_len);
        if (g == NULL)
            return true;
        g->next = NULL;
        g->hash = h;
        g->owner = d;
        g->waiters = g->last_waiter = NULL;
        g->member_len = d->member_len;
        memcpy(g->member, d->member, d->member_len);
        *pp = g;
        d->gated = true;
        d->gate = g;
        d->app = d->req->app;
        return true;
    }
    member_gate_t *g = *pp;
    d->gated = true;
    d->gate = g;
    d->app = d->req->app;
    d->next_waiter = NULL;
    if (g->last_waiter)
        g->last_waiter->next_waiter = d;
    else
        g->waiters = d;
    g->last_waiter = d;
    return false;
}

/* The owner is done: hand the gate to the next waiter, or drop it. Waiters
 * released while a release is under way (a waiter that fails at once, say
 * with Redis down) are started by the outermost call, not recursively. The
 * request (and the member string in it) may already be freed here: only
 * d->gate and d->app are used. */
static void member_gate_leave(decide_ctx_t *d)
{
    gate_table_t *t = policy_state(d->app)->member_gates;
    member_gate_t *g = d->gate;
    if (t == NULL || g == NULL || g->owner != d)
        return;
    decide_ctx_t *next = g->waiters;
    if (next == NULL) {
        member_gate_t **pp = &t->buckets[g->hash % GATE_BUCKETS];
        while (*pp != NULL && *pp != g)
            pp = &(*pp)->next;
        if (*pp == g)
            *pp = g->next;
        free(g);
        return;
    }
    g->waiters = next->next_waiter;
    if (g->waiters == NULL)
        g->last_waiter = NULL;
    g->owner = next;
    next->next_waiter = NULL;
    if (t->to_start_last)
        t->to_start_last->next_waiter = next;
    else
        t->to_start = next;
    t->to_start_last = next;
    if (t->releasing)
        return;
    t->releasing = true;
    while (t->to_start != NULL) {
        decide_ctx_t *x = t->to_start;
        t->to_start = x->next_waiter;
        if (t->to_start == NULL)
            t->to_start_last = NULL;
        x->next_waiter = NULL;
        start_read(x);
    }
    t->releasing = false;
}

static void decide_ctx_free(decide_ctx_t *d)
{
    if (d->gated)
        member_gate_leave(d);
    free(d->idem);
    json_decref(d->body);
    json_decref(d->capped_body);
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

/* Bookkeeping every new decision shares: its event, arm stats, metrics. */
static void account(decide_ctx_t *d, const json_t *body, decision_reason_t reason)
{
    publish_event(d, body);
    policy_state_t *ps = policy_state(d->req->app);
    ps->fast_arm_decisions[d->fast_arm + 1][reason]++;
    ps->slow_arm_decisions[d->slow_arm + 1][reason]++;
    metrics_observe_arm_decision(d->req->app->metrics, 0, d->fast_arm, (int)reason);
    metrics_observe_arm_decision(d->req->app->metrics, 1, d->slow_arm, (int)reason);
    metrics_observe_decision(d->req->app->metrics, d->channel,
                             d->fast->mode == FAST_MODE_THRESHOLD ? 1 : 0, (int)reason,
                             (double)(uv_hrtime() - d->req->start_ns) / 1e9);
}

/* Answers with a decision computed by this request (body is stolen). */
static void finish(decide_ctx_t *d, json_t *body, decision_reason_t reason)
{
    account(d, body, reason);
    request_reply_ok(d->req, body);
    decide_ctx_free(d);
}

/* Answers with a decision stored by an earlier request for the same
 * opportunity, as stored: no event, no new counts. */
static void finish_duplicate(decide_ctx_t *d, const char *text, size_t len)
{
    metrics_observe_decision(d->req->app->metrics, d->channel,
                             d->fast->mode == FAST_MODE_THRESHOLD ? 1 : 0,
                             METRICS_REASON_DUPLICATE,
                             (double)(uv_hrtime() - d->req->start_ns) / 1e9);
    request_reply_ok_text(d->req, text, len, "\"duplicate\":true");
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
    if (strcmp(outcome, "dup") == 0) {
        /* Another request recorded this opportunity first: its answer wins. */
        finish_duplicate(d, reply->element[1]->str, reply->element[1]->len);
        return;
    }
    bool capped = strcmp(outcome, "cap") == 0 && d->capped_body != NULL;
    json_t *body = capped ? d->capped_body : d->body;
    if (capped)
        d->capped_body = NULL;
    else
        d->body = NULL;
    finish(d, body, capped ? REASON_CAP_REACHED : d->reason);
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
    d->body = decision_body(d, &dec, dec.reason, dec.send, shown, false);
    d->reason = dec.reason;
    char *body_s = dump_compact(d->body);
    /* Only a send can be stopped by the cap inside the record script. */
    char *capped_s = NULL;
    if (dec.send) {
        d->capped_body = decision_body(d, &dec, REASON_CAP_REACHED, false, shown, false);
        capped_s = dump_compact(d->capped_body);
    }

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
        a_best, a_hist, a_idem_ttl, a_dedup, body_s ? body_s : "{}", capped_s ? capped_s : "",
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
    int rc = (body_s && (capped_s || !dec.send))
                 ? store_eval(app->store, ps->script_record, on_record, d, 5, 19, argv, lens)
                 : -1;
    free(body_s);
    free(capped_s);
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
        finish_duplicate(d, d->idem, strlen(d->idem));
        return;
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

    if (member_gate_enter(d))
        start_read(d);
}

/* Sends the read pipeline of one decision (see the file comment). */
static void start_read(decide_ctx_t *d)
{
    request_t *req = d->req;
    const config_t *cfg = req->cfg;
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
