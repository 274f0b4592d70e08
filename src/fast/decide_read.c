/*
 * decide_read.c - the decide op's read: one pipeline of plain commands (the
 * plan, the member hash, the durable opt-out, the week hash, the sent set)
 * and the callbacks that parse their replies with the pure readers of
 * stored_read.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decide_internal.h"
#include "notifd/core/calendar.h"
#include "notifd/lib/hash.h"
#include "notifd/core/keys.h"
#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/core/plan_cache.h"
#include "notifd/policy.h"

/* Stored values the read treated as missing: counted, and logged now and
 * then (a poisoned member is read on every one of its decides). */
void decide_report_invalid(decide_ctx_t *d)
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
static bool plan_cache_trusted(const decide_ctx_t *d)
{
    /* With redis.tracking, only while Redis reports changes: otherwise a
     * plan written elsewhere could be missed for the cache's whole age.
     * Without it, fast.plan_cache_ms is the staleness the operator chose. */
    return !d->req->cfg->redis.tracking || store_tracking_epoch(d->app->store) != 0;
}

bool decide_cached_plan(decide_ctx_t *d)
{
    const policy_state_t *ps = policy_state(d->app);
    plan_t p;
    if (d->fast->plan_cache_ms <= 0 || !plan_cache_trusted(d) ||
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
    enum { SLOTS = 8192 };
    policy_state_t *ps = policy_state(d->app);
    if (ps->plan_cache == NULL)
        ps->plan_cache = plan_cache_new(SLOTS);
    /* Under the generation on_plan parsed it with (d->req->cfg): a decide
     * that read before a reload answers after it, and must not hand its
     * plan to decides of the new config. */
    plan_cache_put(ps->plan_cache, d->r.member, d->r.member_len, d->req->cfg->generation,
                   now_ms(), &d->plan);
}

size_t decide_hash_pairs(redisReply *r, const char **f, size_t *fl, const char **v, size_t *vl,
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
        size_t n = decide_hash_pairs(r, f, fl, v, vl, MAXP);
        const config_t *cfg = d->req->cfg;
        const char *names[NOTIFD_MAX_CHANNELS];
        for (int c = 0; c < cfg->n_channels; c++)
            names[c] = cfg->channels[c];
        d->have_plan = plan_parse_hash(&d->plan, names, cfg->n_channels,
                                       cfg->policy.slow.max_per_week, f, fl, v, vl, n,
                                       &d->invalid);
        /* Not when the plan changed since the read went out: its
         * invalidation came first, and this reply is the old plan. */
        if (d->have_plan && !d->explain && d->fast->plan_cache_ms > 0 && plan_cache_trusted(d) &&
            (!d->req->cfg->redis.tracking ||
             (d->cache_epoch != 0 && d->cache_epoch == store_tracking_epoch(d->app->store) &&
              member_cache_fresh(policy_state(d->app)->member_cache, d->r.member,
                                 d->r.member_len, d->cache_since))))
            cache_plan(d);
    }
    decide_read_done(d);
}

/* CLIENT CACHING yes. Refused (a reconnect resent it to a connection not
 * tracked yet) or lost: the plan read after it is not tracked, so it is
 * used but never cached. Never a reason to fail the decide. */
static void on_caching(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (r == NULL || r->type != REDIS_REPLY_STATUS)
        d->cache_epoch = 0;
    decide_read_done(d);
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
    decide_read_done(d);
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
        if (d->unsubscribed && !durable && !d->explain)
            copy_optout(d);
        d->unsubscribed = d->unsubscribed || durable;
    }
    decide_read_done(d);
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
    decide_read_done(d);
}

/* ZREVRANGE P sent:{M} 0 63 WITHSCORES: the member's newest sends, kept
 * for the member cache. */
static void on_sent_set(redisReply *r, void *p)
{
    decide_ctx_t *d = p;
    if (!reply_failed(d, r) && r->type == REDIS_REPLY_ARRAY)
        decide_cache_take_sent(d, r);
    decide_read_done(d);
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
    decide_read_done(d);
}

/* Sends one read command; on refusal marks the read failed. The callback of
 * a sent command decrements `outstanding` itself. */
void decide_read_send(decide_ctx_t *d, store_reply_fn fn, int argc, const char **argv,
                      const size_t *lens)
{
    d->outstanding++;
    if (d->failed ||
        store_command_until(d->app->store, d->deadline_ns, fn, d, argc, argv, lens) != 0) {
        if (!d->failed)
            d->cause = decide_refusal_cause(d);
        d->failed = true;
        d->outstanding--;
    }
}

/* Sends the read pipeline of one decision (see the file comment). */
void decide_start_read(decide_ctx_t *d)
{
    const config_t *cfg = d->req->cfg;
    const decide_request_t *r = &d->r;
    const char *prefix = cfg->redis.prefix;
    const char *chname = cfg->channels[r->channel];
    char key[KEY_MAX];
    size_t kl;

    /* An explain reads what Redis holds, and leaves the member's decides
     * (overlay, caches) alone. */
    overlay_table_t *t = d->explain ? NULL : decide_overlay_table(d->app);
    if (!d->explain)
        decide_cache_note_read(d);
    d->read_seq = store_position(d->app->store);
    d->overlay = t ? overlay_join(t, r->member, r->member_len, d->read_seq) : NULL;

    /* Every command goes out before any reply is read. A reference keeps
     * `d` alive until all of them are sent. */
    d->outstanding = 1;
    if (!decide_threshold_mode(d) && (d->explain || !decide_cached_plan(d))) {
        /* Tracked (OPTIN, store.h): another writer's next change to the
         * plan drops it from the plan cache. */
        if (d->cache_epoch != 0 && d->fast->plan_cache_ms > 0)
            decide_read_send(d, on_caching, 3, (const char *[]){"CLIENT", "CACHING", "yes"},
                      (size_t[]){6, 7, 3});
        kl = key_member(key, prefix, "plan", r->member, r->member_len, "", 0);
        decide_read_send(d, on_plan, 2, (const char *[]){"HGETALL", key}, (size_t[]){7, kl});
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
        decide_read_send(d, on_member, 8, argv, lens);
    }
    /* The durable opt-out (no TTL): it outlives the member hash. */
    kl = key_member(key, prefix, "optout", r->member, r->member_len, "", 0);
    decide_read_send(d, on_optout, 3, (const char *[]){"HGET", key, chname},
              (size_t[]){4, kl, strlen(chname)});
    kl = key_member(key, prefix, "week", r->member, r->member_len, "", 0);
    decide_read_send(d, on_week, 2, (const char *[]){"HGETALL", key}, (size_t[]){7, kl});
    d->sent_complete = d->fast->dedup_days <= 0; /* no dedup: nothing to miss */
    if (d->fast->dedup_days > 0 && !d->explain && decide_cache_wants_sent_set(d)) {
        char stop[8];
        int sl = snprintf(stop, sizeof stop, "%d", MEMBER_CACHE_SENT_MAX - 1);
        kl = key_member(key, prefix, "sent", r->member, r->member_len, "", 0);
        decide_read_send(d, on_sent_set, 5,
                  (const char *[]){"ZREVRANGE", key, "0", stop, "WITHSCORES"},
                  (size_t[]){9, kl, 1, (size_t)sl, 10});
    } else if (r->n > 0 && d->fast->dedup_days > 0) {
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
            decide_read_send(d, on_sent, (int)r->n + 2, argv, lens);
        }
        if (heap) {
            free(argv);
            free(lens);
        }
    }
    if (d->explain)
        explain_send_reads(d);
    decide_read_done(d); /* drop the sending reference */
}
