/*
 * store_tracking.c - client-side caching: Redis tells notifd when a key it
 * read has changed, so the decide path can keep what it read (plans,
 * member state) instead of reading it again on every decide.
 *
 * hiredis 0.14 speaks RESP2, where invalidations cannot come on the
 * connection that reads: they come as Pub/Sub messages on
 * __redis__:invalidate to a second connection, which the main one names
 * with CLIENT TRACKING on REDIRECT <its id> BCAST PREFIX ... NOLOOP.
 *
 * NOLOOP: the main connection's own writes are not reported back.
 *
 * OPTIN: only the reads that follow CLIENT CACHING yes are tracked (the
 * decide path's plan reads). In the default mode Redis would remember every
 * key each record script reads, which measured a seventh of its
 * instructions per decide, for keys the scripts themselves keep up to date.
 * A change forgets every reader of the key (NOLOOP or not), so a key this
 * connection writes is only reported again after it reads it again; the
 * member state the decide path caches is kept honest by a version instead
 * (member_cache.h), and only plans, which notifd's main connection never
 * writes but through the replan op, are cached under tracking.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/log.h"
#include "notifd/store/redis_uv.h"
#include "store_internal.h"

#define INVALIDATE_CHANNEL "__redis__:invalidate"

static void tracker_connect(store_t *st);

static void tracking_off(store_t *st)
{
    store_tracker_t *tr = &st->tracker;
    bool was_on = tr->epoch != 0;
    tr->epoch = 0;
    st->counters.tracking = false;
    tr->enabling = false;
    if (was_on) {
        st->counters.invalidations++;
        if (tr->fn != NULL)
            tr->fn(tr->arg, NULL, 0);
    }
}

static void on_tracker_retry(uv_timer_t *t) { tracker_connect(t->data); }

static void tracker_schedule_retry(store_t *st)
{
    store_tracker_t *tr = &st->tracker;
    if (st->closing || !tr->wanted || uv_is_active((uv_handle_t *)&tr->retry))
        return;
    int delay = tr->backoff_ms > 0 ? tr->backoff_ms : st->reconnect_min_ms;
    tr->backoff_ms = delay * 2 > st->reconnect_max_ms ? st->reconnect_max_ms : delay * 2;
    uv_timer_start(&tr->retry, on_tracker_retry, (uint64_t)(delay > 0 ? delay : 1), 0);
}

/* The second connection is gone (or given up): no invalidation reaches us. */
static void tracker_lost(store_t *st, const char *why)
{
    store_tracker_t *tr = &st->tracker;
    if (tr->subscribed) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT(30000, 3);
        log_limited(&rl, LOG_WARN, "redis tracking connection lost, caches dropped",
                    "error=\"%s\"", why);
    }
    tr->ac = NULL;
    tr->subscribed = false;
    tr->client_id = 0;
    tracking_off(st);
    tracker_schedule_retry(st);
}

typedef struct enable_ctx {
    store_t *st;
    uint64_t conn_gen;     /* the main context it was sent on */
    long long client_id;   /* the redirect it named */
} enable_ctx_t;

static void on_tracking_enabled(redisReply *reply, void *privdata)
{
    enable_ctx_t *e = privdata;
    store_t *st = e->st;
    store_tracker_t *tr = &st->tracker;
    bool current = e->conn_gen == st->conn_gen && e->client_id == tr->client_id &&
                   st->state == STORE_READY && tr->subscribed;
    free(e);
    if (!current)
        return; /* a newer attempt is under way, or none is possible now */
    tr->enabling = false;
    if (reply != NULL && reply->type == REDIS_REPLY_STATUS) {
        tr->epoch = ++tr->epochs;
        st->counters.tracking = true;
        store_counts_changed(st);
        log_info("redis tracking on", "redirect=%lld", tr->client_id);
        return;
    }
    static log_ratelimit_t rl = LOG_RATELIMIT_INIT(60000, 3);
    log_limited(&rl, LOG_WARN, "redis refused CLIENT TRACKING, decides read every time",
                "error=\"%s\"",
                reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
}

static void on_tracking_off(redisReply *reply, void *privdata)
{
    (void)reply; /* "OK" whether it was on or not */
    (void)privdata;
}

/* Tracks the main connection with invalidations redirected to the second,
 * once both are up. */
static void tracking_enable(store_t *st)
{
    store_tracker_t *tr = &st->tracker;
    if (!tr->wanted || !tr->subscribed || tr->client_id <= 0 || st->state != STORE_READY ||
        tr->enabling || tr->epoch != 0)
        return;
    enable_ctx_t *e = malloc(sizeof *e);
    if (e == NULL)
        return;
    *e = (enable_ctx_t){.st = st, .conn_gen = st->conn_gen, .client_id = tr->client_id};
    /* Off first: tracking may still be on with an older redirect. */
    (void)store_send_internal(st, on_tracking_off, NULL, 3,
                              (const char *[]){"CLIENT", "TRACKING", "off"},
                              (size_t[]){6, 8, 3});
    char id[24];
    int idl = snprintf(id, sizeof id, "%lld", tr->client_id);
    const char *argv[] = {"CLIENT", "TRACKING", "on", "REDIRECT", id, "OPTIN", "NOLOOP"};
    size_t lens[] = {6, 8, 2, 8, (size_t)idl, 5, 6};
    int argc = 7;
    if (!store_send_internal(st, on_tracking_enabled, e, argc, argv, lens)) {
        free(e);
        return;
    }
    tr->enabling = true;
}

static void on_client_id(redisAsyncContext *ac, void *r, void *privdata)
{
    store_t *st = privdata;
    redisReply *reply = r;
    if (ac != st->tracker.ac || reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_INTEGER)
        st->tracker.client_id = reply->integer;
    else if (reply->type == REDIS_REPLY_ERROR)
        log_warn("redis tracking connection: CLIENT ID failed", "error=\"%s\"", reply->str);
}

static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    store_t *st = privdata;
    redisReply *reply = r;
    if (ac == st->tracker.ac && reply != NULL && reply->type == REDIS_REPLY_ERROR)
        log_warn("redis tracking connection: AUTH failed", "error=\"%s\"", reply->str);
}

/* Every Pub/Sub reply of the subscription: its confirmation, then one
 * message per invalidation, whose payload is the keys (an array), or nil
 * for "everything" (FLUSHALL, FLUSHDB). */
static void on_invalidate(redisAsyncContext *ac, void *r, void *privdata)
{
    store_t *st = privdata;
    store_tracker_t *tr = &st->tracker;
    redisReply *reply = r;
    if (ac != tr->ac || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        if (tr->client_id > 0) {
            tr->subscribed = true;
            tr->backoff_ms = 0;
            tracking_enable(st);
        }
        return;
    }
    if (strcmp(kind, "message") != 0)
        return;
    const redisReply *keys = reply->element[2];
    if (keys->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            if (k->type != REDIS_REPLY_STRING)
                continue;
            st->counters.invalidations++;
            if (tr->fn != NULL)
                tr->fn(tr->arg, k->str, k->len);
        }
    } else {
        st->counters.invalidations++;
        if (tr->fn != NULL)
            tr->fn(tr->arg, NULL, 0);
    }
}

static void on_tracker_connect(const redisAsyncContext *ac, int status)
{
    store_t *st = ac->data;
    store_tracker_t *tr = &st->tracker;
    if (ac != tr->ac)
        return;
    if (status != REDIS_OK) {
        tracker_lost(st, ac->errstr); /* hiredis frees the context itself */
        return;
    }
    redisAsyncContext *c = tr->ac;
    bool ok = true;
    if (st->password != NULL)
        ok = redisAsyncCommandArgv(c, on_auth, st, 2, (const char *[]){"AUTH", st->password},
                                   (size_t[]){4, strlen(st->password)}) == REDIS_OK;
    /* In order: the id is known before the subscription is confirmed. */
    ok = ok && redisAsyncCommandArgv(c, on_client_id, st, 2, (const char *[]){"CLIENT", "ID"},
                                     (size_t[]){6, 2}) == REDIS_OK;
    ok = ok && redisAsyncCommandArgv(c, on_invalidate, st, 2,
                                     (const char *[]){"SUBSCRIBE", INVALIDATE_CHANNEL},
                                     (size_t[]){9, strlen(INVALIDATE_CHANNEL)}) == REDIS_OK;
    if (!ok) {
        tr->ac = NULL;
        redisAsyncFree(c);
        tracker_lost(st, "could not send the tracking handshake");
    }
}

static void on_tracker_disconnect(const redisAsyncContext *ac, int status)
{
    store_t *st = ac->data;
    if (ac != st->tracker.ac)
        return;
    tracker_lost(st, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static void tracker_connect(store_t *st)
{
    store_tracker_t *tr = &st->tracker;
    if (st->closing || !tr->wanted || tr->ac != NULL || !st->configured)
        return;
    redisAsyncContext *ac = st->unix_path[0] ? redisAsyncConnectUnix(st->unix_path)
                                             : redisAsyncConnect(st->host, st->port);
    if (ac == NULL || ac->err) {
        if (ac != NULL)
            redisAsyncFree(ac);
        tracker_schedule_retry(st);
        return;
    }
    ac->data = st;
    if (redis_uv_attach(ac, st->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        tracker_schedule_retry(st);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_tracker_connect);
    redisAsyncSetDisconnectCallback(ac, on_tracker_disconnect);
    tr->ac = ac;
}

/* Drops the second connection (closing, or settings changed). */
static void tracker_drop(store_t *st)
{
    store_tracker_t *tr = &st->tracker;
    redisAsyncContext *ac = tr->ac;
    tr->ac = NULL;
    tr->subscribed = false;
    tr->client_id = 0;
    tracking_off(st);
    if (ac != NULL)
        redisAsyncFree(ac);
}

void store_tracking_init(store_t *st)
{
    uv_timer_init(st->loop, &st->tracker.retry);
    st->tracker.retry.data = st;
}

void store_tracking_configure(store_t *st, bool wanted, bool address_changed)
{
    store_tracker_t *tr = &st->tracker;
    tr->wanted = wanted;
    if (!wanted || address_changed) {
        uv_timer_stop(&tr->retry);
        tracker_drop(st);
    }
    if (wanted)
        tracker_connect(st);
}

void store_tracking_main_ready(store_t *st) { tracking_enable(st); }

void store_tracking_main_lost(store_t *st) { tracking_off(st); }

void store_tracking_close(store_t *st)
{
    st->tracker.fn = NULL; /* its owner is going away too */
    uv_timer_stop(&st->tracker.retry);
    tracker_drop(st);
}

void store_set_invalidation_handler(store_t *st, store_invalidate_fn fn, void *arg)
{
    st->tracker.fn = fn;
    st->tracker.arg = arg;
}

uint64_t store_tracking_epoch(const store_t *st) { return st->tracker.epoch; }

