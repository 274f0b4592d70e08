/*
 * explain.c - the explain op: what a decide of this member would consider
 * now, and what it would do, recording nothing.
 *
 * It is a decide that stops before the record: the same request checks
 * (decide_request_parse, with the channel and the opportunity optional),
 * the same read pipeline (decide_read.c, with d->explain set: straight from
 * Redis, no caches, no overlay, no opt-out copy) plus two reads of its own
 * sent with it (the whole member hash for the slow policy's view, the
 * durable opt-outs of every channel), the same decision input
 * (decide_prepare) and decision_evaluate() on it. Nothing is written: no
 * record script, no idempotency key, no event, no planner scheduling, no
 * threshold update, no cache fill, no decision metrics.
 *
 * The answer's parts are built from that one view by explain_answer.c.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decide_internal.h"
#include "explain_internal.h"
#include "notifd/core/keys.h"
#include "notifd/log.h"
#include "notifd/ops_policy.h"
#include "notifd/policy.h"

static explain_ctx_t *explain_of(decide_ctx_t *d) { return (explain_ctx_t *)d; }

static void explain_free(explain_ctx_t *x)
{
    decide_ctx_t *d = &x->d;
    free(d->scores_raw);
    free(d->sent_buf);
    decide_request_free(&d->r);
    json_decref(x->request);
    free(x);
}

/* The request as a decide would have it: the channel defaults to the
 * first configured one, the opportunity (which seeds the decision's
 * draws) to "explain". The decide's own checks then apply unchanged. */
static json_t *as_decide_request(json_t *root, const config_t *cfg, bool *channel_defaulted)
{
    json_t *q = json_copy(root);
    if (q == NULL)
        return NULL;
    json_t *ch = json_object_get(q, "channel");
    *channel_defaulted = ch == NULL || json_is_null(ch);
    if (*channel_defaulted)
        json_object_set_new(q, "channel", json_string(cfg->channels[0]));
    json_t *opp = json_object_get(q, "opportunity");
    if (opp == NULL || json_is_null(opp))
        json_object_set_new(q, "opportunity", json_string("explain"));
    return q;
}

void op_explain(request_t *req)
{
    const config_t *cfg = req->cfg;
    explain_ctx_t *x = calloc(1, sizeof *x);
    if (x == NULL) {
        request_reply_error(req, PROTO_INTERNAL, "out of memory");
        return;
    }
    decide_ctx_t *d = &x->d;
    d->req = req;
    d->app = req->app;
    d->explain = true;
    x->request = as_decide_request(req->root, cfg, &x->channel_defaulted);
    const char *why = x->request == NULL
                          ? "out of memory"
                          : decide_request_parse(&d->r, x->request, cfg, (int64_t)time(NULL));
    if (why != NULL) {
        request_reply_error(req, PROTO_BAD_REQUEST, "%s", why);
        explain_free(x);
        return;
    }
    features_init(&x->features);
    decide_ctx_init(d, cfg);
    decide_start_read(d); /* sends explain_send_reads' commands with its own */
}

/* A reply of the explain's own reads: unusable means the store failed. */
static bool own_reply_ok(decide_ctx_t *d, const redisReply *r)
{
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        d->failed = true;
        return false;
    }
    return r->type == REDIS_REPLY_ARRAY;
}

/* HGETALL P member:{M}: the features the planner plans from. */
static void on_features(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    explain_ctx_t *x = explain_of(d);
    if (own_reply_ok(d, r) && r->elements > 0) {
        enum { MAXP = 256 };
        const char *f[MAXP], *v[MAXP];
        size_t fl[MAXP], vl[MAXP];
        size_t n = decide_hash_pairs(r, f, fl, v, vl, MAXP);
        const config_t *cfg = d->req->cfg;
        const char *names[NOTIFD_MAX_CHANNELS];
        for (int c = 0; c < cfg->n_channels; c++)
            names[c] = cfg->channels[c];
        features_parse_hash(&x->features, names, cfg->n_channels, f, fl, v, vl, n);
        x->have_features = true;
    }
    decide_read_done(d);
}

/* HGETALL P optout:{M}: the durable opt-out of every channel. A value
 * other than a valid flag is no opt-out, as the decide reads it. */
static void on_optouts(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    explain_ctx_t *x = explain_of(d);
    if (own_reply_ok(d, r)) {
        const config_t *cfg = d->req->cfg;
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *f = r->element[i], *v = r->element[i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            int c = config_channel_index(cfg, f->str, f->len);
            bool on = false;
            if (c >= 0 && stored_parse_flag(STORED_UNSUB, v->str, v->len, &on, NULL))
                x->durable_optout[c] = on;
        }
    }
    decide_read_done(d);
}

void explain_send_reads(decide_ctx_t *d)
{
    const config_t *cfg = d->req->cfg;
    char key[KEY_MAX];
    size_t kl = key_member(key, cfg->redis.prefix, "member", d->r.member, d->r.member_len, "", 0);
    decide_read_send(d, on_features, 2, (const char *[]){"HGETALL", key}, (size_t[]){7, kl});
    kl = key_member(key, cfg->redis.prefix, "optout", d->r.member, d->r.member_len, "", 0);
    decide_read_send(d, on_optouts, 2, (const char *[]){"HGETALL", key}, (size_t[]){7, kl});
}

void explain_read_done(decide_ctx_t *d)
{
    explain_ctx_t *x = explain_of(d);
    request_t *req = d->req;
    if (d->failed) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
        log_limited(&rl, LOG_WARN, "explain: the store did not answer", "%s", "");
        request_reply_error(req, PROTO_UNAVAILABLE,
                            "the store is unavailable; nothing to explain from, retry later");
        explain_free(x);
        return;
    }
    json_t *body = explain_answer(x);
    if (body == NULL)
        request_reply_error(req, PROTO_INTERNAL, "out of memory");
    else
        request_reply_ok(req, body);
    explain_free(x);
}
