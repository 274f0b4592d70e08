/*
 * store.c - hiredis async on libuv: a window of commands in flight, a queue
 * behind it, liveness by progress, reconnects that keep what Redis has not
 * answered (see store.h for the contract).
 *
 * Every accepted command is a pending_cmd_t holding its RESP bytes, so that
 * it can be written again: on a new connection, or as EVAL after NOSCRIPT.
 * It is on exactly one of two lists: `inflight` (written to the current
 * context, in the order Redis will answer) or `queue` (waiting for the
 * window or for a connection, in the order it must be written). This file
 * is the connection; the commands are store_commands.c.
 *
 * The hiredis 0.14 rules this file is built around:
 *   - on disconnect hiredis runs every pending callback with a NULL reply,
 *     oldest first, and then frees the context itself; the first NULL
 *     callback of the current context marks it lost, and each one then
 *     requeues or fails its command (settle_unanswered);
 *   - a context whose connect failed is freed by hiredis, never by us;
 *   - redisAsyncFree() from a libuv timer (outside any hiredis callback)
 *     runs pending callbacks at once; from inside a hiredis callback it is
 *     deferred by hiredis until that callback returns, still before the
 *     loop runs anything else, so no new context exists before the old
 *     one's callbacks have all run.
 * Before a context is dropped, st->ac is cleared and the state set to
 * DISCONNECTED, so callbacks that run during the drop and try to send more
 * commands are refused instead of queueing on a dying context.
 */
#include "notifd/store/store.h"

#include <stdlib.h>
#include <string.h>

#include "notifd/log.h"
#include "notifd/store/redis_uv.h"
#include "store_internal.h"

static void store_connect(store_t *st);
static void schedule_reconnect(store_t *st);

const char *store_state_name(store_state_t s)
{
    switch (s) {
    case STORE_DISCONNECTED: return "disconnected";
    case STORE_CONNECTING: return "connecting";
    case STORE_READY: return "ready";
    }
    return "?";
}

static void set_error(store_t *st, const char *what)
{
    snprintf(st->last_error, sizeof st->last_error, "%s", what ? what : "unknown error");
}

/* The current context died under us (hiredis is running its callbacks with
 * NULL, or reported the disconnect): what follows is a reconnect. */

void store_context_lost(store_t *st, const char *why)
{
    bool was_ready = st->state == STORE_READY;
    st->ac = NULL;
    st->state = STORE_DISCONNECTED;
    st->requeue_after = NULL;
    for (int i = 0; i < st->n_scripts; i++)
        st->scripts[i].loaded = false;
    set_error(st, why);
    if (was_ready) {
        st->counters.disconnects++;
        log_warn("redis connection lost", "error=\"%s\"", st->last_error);
    }
    store_tracking_main_lost(st);
    schedule_reconnect(st);
}

/* ------------------------------------------------------------------ */
/* Liveness                                                           */

static void on_probe_reply(redisReply *reply, void *privdata)
{
    (void)reply;
    (void)privdata; /* the reply itself is the progress the watchdog looks for */
}

static void on_watchdog(uv_timer_t *t)
{
    store_t *st = t->data;
    uint64_t now = uv_hrtime();
    if (st->state == STORE_CONNECTING && st->ac != NULL &&
        now - st->connect_started_ns > (uint64_t)st->connect_timeout_ms * 1000000u) {
        store_drop_context(st, "connect timed out");
        return;
    }
    if (st->inflight.n > 0) {
        uint64_t limit_ms = st->state == STORE_READY ? (uint64_t)st->timeout_ms
                                                     : (uint64_t)st->connect_timeout_ms;
        if (now - st->last_progress_ns > limit_ms * 1000000u) {
            st->counters.timeouts++;
            char why[64];
            snprintf(why, sizeof why, "no reply from redis for %d ms", (int)limit_ms);
            /* Redis is hung, not restarting: a request with a deadline of
             * its own is answered now rather than at that deadline. */
            st->dropping_hung = true;
            store_drop_context(st, why);
            store_fail_queued(st, true); /* those behind the window too */
            st->dropping_hung = false;
            return;
        }
    }
    if (st->state == STORE_READY) {
        if (st->queue.n > 0)
            store_pump(st);
        if (st->probe_interval_ms > 0 && st->inflight.n == 0 && st->ac != NULL &&
            now - st->last_write_ns >= (uint64_t)st->probe_interval_ms * 1000000u) {
            const char *argv[] = {"PING"};
            size_t lens[] = {4};
            if (store_send_internal(st, on_probe_reply, NULL, 1, argv, lens))
                st->counters.probes++;
        }
    } else if (st->queue.n > 0) {
        store_expire_queued(st);
    }
    bool needed = st->inflight.n > 0 || st->queue.n > 0 || st->state == STORE_CONNECTING ||
                  (st->state == STORE_READY && st->probe_interval_ms > 0);
    if (!needed) {
        uv_timer_stop(t);
        st->watchdog_running = false;
    }
}

void store_watchdog_ensure(store_t *st)
{
    if (st->watchdog_running || st->closing)
        return;
    /* A quarter of the timeout keeps the overshoot under 25%. */
    int period = st->timeout_ms / 4;
    if (period < 1)
        period = 1;
    if (period > 50)
        period = 50;
    uv_timer_start(&st->watchdog, on_watchdog, (uint64_t)period, (uint64_t)period);
    st->watchdog_running = true;
}

/* ------------------------------------------------------------------ */
/* Connection lifecycle                                               */

static void on_retry(uv_timer_t *t)
{
    store_t *st = t->data;
    store_connect(st);
}

static void schedule_reconnect(store_t *st)
{
    if (st->closing || uv_is_active((uv_handle_t *)&st->retry))
        return;
    int delay = st->backoff_ms;
    /* +-20% jitter so a fleet does not reconnect in lockstep. */
    st->rng = st->rng * 6364136223846793005ull + 1442695040888963407ull;
    int span = delay / 5;
    if (span > 0)
        delay += (int)((st->rng >> 33) % (uint64_t)(2 * span + 1)) - span;
    if (delay < 1)
        delay = 1;
    st->backoff_ms *= 2;
    if (st->backoff_ms > st->reconnect_max_ms)
        st->backoff_ms = st->reconnect_max_ms;
    uv_timer_start(&st->retry, on_retry, (uint64_t)delay, 0);
    store_watchdog_ensure(st); /* deadlines of queued commands pass meanwhile */
}

void store_drop_context(store_t *st, const char *why)
{
    redisAsyncContext *ac = st->ac;
    bool was_ready = st->state == STORE_READY;
    st->ac = NULL;
    st->state = STORE_DISCONNECTED;
    st->requeue_after = NULL;
    set_error(st, why);
    if (was_ready) {
        st->counters.disconnects++;
        log_warn("redis connection dropped", "reason=\"%s\"", why);
    }
    for (int i = 0; i < st->n_scripts; i++)
        st->scripts[i].loaded = false;
    store_tracking_main_lost(st);
    if (ac != NULL)
        redisAsyncFree(ac); /* runs pending callbacks with NULL: settle_unanswered */
    schedule_reconnect(st);
}

static void on_handshake_reply(redisReply *reply, void *privdata);

typedef struct handshake_step {
    store_t *st;
    int script;  /* -1 for AUTH/PING */
    bool reload; /* SCRIPT LOAD after NOSCRIPT, outside a handshake */
} handshake_step_t;

static void handshake_finish(store_t *st)
{
    if (st->handshake_failed) {
        store_drop_context(st, st->last_error);
        return;
    }
    st->state = STORE_READY;
    st->backoff_ms = st->reconnect_min_ms;
    st->last_error[0] = '\0';
    if (st->ever_ready)
        st->counters.reconnects++;
    st->ever_ready = true;
    if (st->unix_path[0])
        log_info("redis ready", "unix=%s queued=%lld", st->unix_path, (long long)st->queue.n);
    else
        log_info("redis ready", "addr=%s:%d queued=%lld", st->host, st->port,
                 (long long)st->queue.n);
    /* Tracking first: what is pumped next is then read under it. */
    store_tracking_main_ready(st);
    /* What a lost connection left unanswered goes first, in order. */
    st->requeue_after = NULL;
    store_pump(st);
}

static void on_handshake_reply(redisReply *reply, void *privdata)
{
    handshake_step_t *step = privdata;
    store_t *st = step->st;
    if (step->reload) {
        if (reply != NULL && reply->type == REDIS_REPLY_STRING && reply->len == 40 &&
            memcmp(reply->str, st->scripts[step->script].sha, 40) == 0)
            st->scripts[step->script].loaded = true;
        if (--st->reload_steps == 0)
            st->reloading = false;
        free(step);
        return;
    }
    if (reply == NULL) {
        st->handshake_failed = true;
        if (st->last_error[0] == '\0')
            set_error(st, "connection lost during handshake");
    } else if (reply->type == REDIS_REPLY_ERROR) {
        st->handshake_failed = true;
        set_error(st, reply->str);
        log_error("redis handshake failed", "error=\"%s\"", reply->str);
    } else if (step->script >= 0 && reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(st->scripts[step->script].sha, reply->str, 40);
        st->scripts[step->script].sha[40] = '\0';
        st->scripts[step->script].loaded = true;
    }
    free(step);
    /* Only the context this handshake belongs to may finish it; a NULL
     * reply means it is being dropped already. */
    if (--st->handshake_steps == 0 && reply != NULL && st->ac != NULL &&
        st->state == STORE_CONNECTING)
        handshake_finish(st);
}

static bool handshake_send(store_t *st, int script, int argc, const char **argv,
                           const size_t *lens, bool reload)
{
    handshake_step_t *step = malloc(sizeof *step);
    if (step == NULL)
        return false;
    step->st = st;
    step->script = script;
    step->reload = reload;
    if (!store_send_internal(st, on_handshake_reply, step, argc, argv, lens)) {
        free(step);
        return false;
    }
    if (reload)
        st->reload_steps++;
    else
        st->handshake_steps++;
    return true;
}

static bool script_load(store_t *st, int i, bool reload)
{
    const char *argv[] = {"SCRIPT", "LOAD", st->scripts[i].body};
    size_t lens[] = {6, 4, strlen(st->scripts[i].body)};
    return handshake_send(st, i, 3, argv, lens, reload);
}

/* After NOSCRIPT: EVAL (store_eval_until) until each SCRIPT LOAD is back. */
void store_scripts_reload(store_t *st)
{
    if (st->reloading)
        return;
    st->reloading = true;
    for (int i = 0; i < st->n_scripts; i++) {
        st->scripts[i].loaded = false;
        (void)script_load(st, i, true);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    store_t *st = ac->data;
    if (ac != st->ac)
        return; /* a context we already dropped */
    if (status != REDIS_OK) {
        /* hiredis frees this context itself after this callback. */
        st->ac = NULL;
        st->state = STORE_DISCONNECTED;
        set_error(st, ac->errstr);
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT(30000, 3);
        log_limited(&rl, LOG_WARN, "redis connect failed", "error=\"%s\"", ac->errstr);
        schedule_reconnect(st);
        return;
    }
    st->handshake_steps = 0;
    st->handshake_failed = false;
    bool ok = true;
    if (st->password != NULL) {
        const char *argv[] = {"AUTH", st->password};
        size_t lens[] = {4, strlen(st->password)};
        ok = handshake_send(st, -1, 2, argv, lens, false);
    }
    for (int i = 0; ok && i < st->n_scripts; i++)
        ok = script_load(st, i, false);
    if (ok) {
        const char *argv[] = {"PING"};
        size_t lens[] = {4};
        ok = handshake_send(st, -1, 1, argv, lens, false);
    }
    if (!ok)
        store_drop_context(st, "could not send the handshake");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    store_t *st = ac->data;
    /* Dropped by us, or marked lost by the first NULL reply: what follows
     * is scheduled already. */
    if (ac != st->ac)
        return;
    store_context_lost(st, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static void store_connect(store_t *st)
{
    if (st->closing || st->ac != NULL)
        return;
    redisAsyncContext *ac = st->unix_path[0] ? redisAsyncConnectUnix(st->unix_path)
                                             : redisAsyncConnect(st->host, st->port);
    if (ac == NULL) {
        set_error(st, "out of memory");
        schedule_reconnect(st);
        return;
    }
    if (ac->err) {
        set_error(st, ac->errstr);
        redisAsyncFree(ac); /* never attached, never connected: ours to free */
        schedule_reconnect(st);
        return;
    }
    ac->data = st;
    /* Replies to a pipelined burst can pass hiredis' 16 KiB default, and
     * then the reader would free and regrow its buffer on every read. */
    ac->c.reader->maxbuf = STORE_READER_KEEP_BYTES;
    reply_arena_attach(ac->c.reader, &st->arena);
    if (redis_uv_attach(ac, st->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        set_error(st, "cannot attach to the event loop");
        schedule_reconnect(st);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    st->ac = ac;
    st->conn_gen++;
    st->state = STORE_CONNECTING;
    st->connect_started_ns = uv_hrtime();
    store_watchdog_ensure(st);
}

/* ------------------------------------------------------------------ */
/* Public API                                                         */

store_t *store_create(uv_loop_t *loop)
{
    store_t *st = calloc(1, sizeof *st);
    if (st == NULL)
        return NULL;
    st->loop = loop;
    uv_timer_init(loop, &st->watchdog);
    st->watchdog.data = st;
    uv_timer_init(loop, &st->retry);
    st->retry.data = st;
    store_tracking_init(st);
    st->handles_open = 3;
    st->rng = (uint64_t)uv_hrtime();
    reply_arena_init(&st->arena, REPLY_ARENA_PER_REPLY, STORE_ARENA_BLOCK, STORE_ARENA_KEEP_BYTES);
    return st;
}

int store_register_script(store_t *st, const char *name, const char *body)
{
    if (st->n_scripts >= STORE_MAX_SCRIPTS)
        return -1;
    store_script_t *s = &st->scripts[st->n_scripts];
    s->body = strdup(body);
    if (s->body == NULL)
        return -1;
    snprintf(s->name, sizeof s->name, "%s", name);
    return st->n_scripts++;
}

void store_configure(store_t *st, const config_t *cfg)
{
    const config_redis_t *r = &cfg->redis;
    bool changed = !st->configured || strcmp(st->host, r->host) != 0 || st->port != r->port ||
                   strcmp(st->unix_path, r->unix_path) != 0 ||
                   (st->password == NULL) != (r->password == NULL) ||
                   (st->password && strcmp(st->password, r->password) != 0);
    st->timeout_ms = r->timeout_ms;
    st->connect_timeout_ms = r->connect_timeout_ms;
    st->max_in_flight = r->max_in_flight;
    st->max_queued = r->max_queued;
    st->probe_interval_ms = r->probe_interval_ms;
    st->reconnect_min_ms = r->reconnect_min_ms;
    st->reconnect_max_ms = r->reconnect_max_ms;
    if (!changed) {
        store_tracking_configure(st, r->tracking, false);
        return;
    }
    snprintf(st->host, sizeof st->host, "%s", r->host);
    st->port = r->port;
    snprintf(st->unix_path, sizeof st->unix_path, "%s", r->unix_path);
    free(st->password);
    st->password = r->password ? strdup(r->password) : NULL;
    st->backoff_ms = st->reconnect_min_ms;
    bool first = !st->configured;
    st->configured = true;
    store_tracking_configure(st, r->tracking, !first);
    if (first) {
        store_connect(st);
    } else {
        log_info("redis settings changed, reconnecting", "%s", "");
        uv_timer_stop(&st->retry);
        if (st->ac != NULL)
            store_drop_context(st, "settings changed");
        uv_timer_stop(&st->retry);
        store_connect(st);
    }
}

store_state_t store_state(const store_t *st) { return st->state; }
uint64_t store_position(const store_t *st) { return st->position; }
const char *store_last_error(const store_t *st) { return st->last_error; }
const store_counters_t *store_counters(const store_t *st) { return &st->counters; }

int64_t store_waiting(const store_t *st)
{
    return atomic_load_explicit(&st->waiting, memory_order_relaxed);
}

uint64_t store_last_sent_ms(const store_t *st)
{
    return atomic_load_explicit(&st->last_sent_ms, memory_order_relaxed);
}

void store_set_rtt_observer(store_t *st, void (*fn)(void *, double), void *arg)
{
    st->rtt_fn = fn;
    st->rtt_arg = arg;
}

static void on_store_handle_closed(uv_handle_t *h)
{
    store_t *st = h->data;
    if (--st->handles_open == 0) {
        for (int i = 0; i < st->n_scripts; i++)
            free(st->scripts[i].body);
        while (st->free_cmds != NULL) {
            pending_cmd_t *p = st->free_cmds;
            st->free_cmds = p->next;
            resp_buf_free(&p->cmd);
            free(p);
        }
        free(st->password);
        reply_arena_free(&st->arena);
        free(st);
    }
}

void store_close(store_t *st)
{
    st->closing = true;
    redisAsyncContext *ac = st->ac;
    st->ac = NULL;
    st->state = STORE_DISCONNECTED;
    /* Everything fails now, queued first: nothing is left to a callback
     * after the store is gone. */
    pending_cmd_t *p;
    while ((p = st->queue.head) != NULL) {
        store_queue_unlink(st, p);
        store_cmd_fail(st, p);
    }
    if (ac != NULL)
        redisAsyncFree(ac); /* in-flight commands: callbacks with NULL */
    store_tracking_close(st);
    store_counts_changed(st);
    uv_close((uv_handle_t *)&st->tracker.retry, on_store_handle_closed);
    uv_close((uv_handle_t *)&st->watchdog, on_store_handle_closed);
    uv_close((uv_handle_t *)&st->retry, on_store_handle_closed);
}
