/*
 * store.c - hiredis async on libuv with reconnects and command timeouts
 * (see store.h for the contract).
 *
 * The hiredis 0.14 rules this file is built around:
 *   - on disconnect hiredis runs every pending callback with a NULL reply
 *     and then frees the context itself; our wrapper callback therefore
 *     handles NULL, and nothing here touches a context after it is dropped;
 *   - a context whose connect failed is freed by hiredis, never by us;
 *   - redisAsyncFree() from a libuv timer (outside any hiredis callback)
 *     fails pending commands at once, which is what a timeout needs; from
 *     inside a hiredis callback it is deferred by hiredis until the callback
 *     returns, which is also safe.
 * Before a context is dropped, st->ac is cleared and the state set to
 * DISCONNECTED, so callbacks that run during the drop and try to send more
 * commands are refused instead of queueing on a dying context.
 */
#include "notifd/store.h"

#include <hiredis/async.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/log.h"
#include "notifd/redis_uv.h"
#include "notifd/reply_arena.h"

#define STORE_MAX_SCRIPTS 16

/* Pending commands are recycled through a freelist: a decide sends about
 * seven, and malloc/free per command showed in the profile for nothing. */
#define STORE_FREE_CMDS_MAX 4096
/* The RESP encoding buffer is kept between commands unless one huge
 * command grew it past this. */
#define STORE_FMT_KEEP_BYTES (256 * 1024)
/* Likewise hiredis' reply buffer. */
#define STORE_READER_KEEP_BYTES (1024 * 1024)
/* Replies are built in an arena that starts over with each reply (a decide
 * reads ~50 reply elements: as many mallocs and frees were an eighth of
 * notifd's CPU). One block holds any usual reply; a huge one gets its own,
 * freed again once the arena passes this. */
#define STORE_ARENA_BLOCK (64 * 1024)
#define STORE_ARENA_KEEP_BYTES (1024 * 1024)

typedef struct pending_cmd {
    struct pending_cmd *prev, *next;
    store_t *st;
    store_reply_fn fn;
    void *privdata;
    uint64_t sent_ns;
} pending_cmd_t;

typedef struct store_script {
    char name[32];
    char *body;
    char sha[41];
    bool loaded;
} store_script_t;

struct store {
    uv_loop_t *loop;
    redisAsyncContext *ac;
    store_state_t state;
    bool closing;
    bool configured;
    bool ever_ready;

    /* connection settings (copied: the config snapshot may be released) */
    char host[CONFIG_HOST_MAX];
    int port;
    char unix_path[108];
    char *password;
    int timeout_ms;
    int connect_timeout_ms;
    int reconnect_min_ms, reconnect_max_ms;
    int backoff_ms;

    uint64_t connect_started_ns;
    uv_timer_t watchdog;     /* command and connect timeouts */
    bool watchdog_running;
    uv_timer_t retry;        /* reconnect backoff */
    int handles_open;

    pending_cmd_t *oldest, *newest;
    int handshake_steps;     /* handshake replies still expected */
    bool handshake_failed;

    store_script_t scripts[STORE_MAX_SCRIPTS];
    int n_scripts;

    pending_cmd_t *free_cmds;    /* recycled pending_cmd_t, singly linked by next */
    int n_free_cmds;
    char *fmt;                   /* RESP encoding buffer */
    size_t fmt_cap;
    /* Reply objects of every context: a reply lives only for its callback,
     * and a context is gone before the next one connects. */
    reply_arena_t arena;

    char last_error[256];
    store_counters_t counters;
    /* counters.pending and when the last command was sent (uv_now), for
     * other threads (store_waiting, store_last_sent_ms). */
    atomic_int_fast64_t waiting;
    atomic_uint_fast64_t last_sent_ms;
    void (*rtt_fn)(void *, double);
    void *rtt_arg;
    uint64_t rng;
};

static void store_connect(store_t *st);
static void drop_context(store_t *st, const char *why);

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

/* ------------------------------------------------------------------ */
/* Pending commands and their timeouts                                */

static void pending_unlink(store_t *st, pending_cmd_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        st->oldest = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        st->newest = p->prev;
    st->counters.pending--;
    atomic_store_explicit(&st->waiting, st->counters.pending, memory_order_relaxed);
}

static void on_watchdog(uv_timer_t *t)
{
    store_t *st = t->data;
    uint64_t now = uv_hrtime();
    if (st->state == STORE_CONNECTING && st->oldest == NULL && st->ac != NULL &&
        now - st->connect_started_ns > (uint64_t)st->connect_timeout_ms * 1000000u) {
        drop_context(st, "connect timed out");
        return;
    }
    if (st->oldest != NULL) {
        uint64_t limit_ms = st->state == STORE_READY ? (uint64_t)st->timeout_ms
                                                     : (uint64_t)st->connect_timeout_ms;
        if (now - st->oldest->sent_ns > limit_ms * 1000000u) {
            st->counters.timeouts++;
            drop_context(st, "command timed out");
            return;
        }
    }
    if (st->oldest == NULL && st->state != STORE_CONNECTING) {
        uv_timer_stop(t);
        st->watchdog_running = false;
    }
}

static void watchdog_ensure(store_t *st)
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

static pending_cmd_t *cmd_acquire(store_t *st)
{
    pending_cmd_t *p = st->free_cmds;
    if (p != NULL) {
        st->free_cmds = p->next;
        st->n_free_cmds--;
        return p;
    }
    return malloc(sizeof *p);
}

static void cmd_release(store_t *st, pending_cmd_t *p)
{
    if (st->n_free_cmds >= STORE_FREE_CMDS_MAX || st->closing) {
        free(p);
        return;
    }
    p->next = st->free_cmds;
    st->free_cmds = p;
    st->n_free_cmds++;
}

static char *put_resp_len(char *w, char kind, size_t n)
{
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    *w++ = kind;
    while (k > 0)
        *w++ = tmp[--k];
    *w++ = '\r';
    *w++ = '\n';
    return w;
}

/* Encodes argv as a RESP array into st->fmt; returns its length, or 0 when
 * out of memory. hiredis' own encoder (redisFormatSdsCommandArgv) builds it
 * with sdscatfmt and was a tenth of notifd's instructions per decide. */
static size_t format_argv(store_t *st, int argc, const char **argv, const size_t *argvlen)
{
    size_t need = 16;
    for (int i = 0; i < argc; i++)
        need += argvlen[i] + 16;
    if (need > st->fmt_cap) {
        size_t cap = st->fmt_cap ? st->fmt_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *nb = realloc(st->fmt, cap);
        if (nb == NULL)
            return 0;
        st->fmt = nb;
        st->fmt_cap = cap;
    }
    char *w = put_resp_len(st->fmt, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        w = put_resp_len(w, '$', argvlen[i]);
        memcpy(w, argv[i], argvlen[i]);
        w += argvlen[i];
        *w++ = '\r';
        *w++ = '\n';
    }
    /* hiredis 0.14 finds the command name with strchr(): the buffer must be
     * a C string, although its length is passed too. */
    *w = '\0';
    return (size_t)(w - st->fmt);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    pending_cmd_t *p = privdata;
    store_t *st = p->st;
    redisReply *reply = r;
    pending_unlink(st, p);
    if (reply == NULL) {
        st->counters.errors++;
    } else {
        st->counters.replies++;
        if (reply->type == REDIS_REPLY_ERROR)
            st->counters.errors++;
        uint64_t rtt = uv_hrtime() - p->sent_ns;
        st->counters.rtt_us_sum += rtt / 1000u;
        if (st->rtt_fn)
            st->rtt_fn(st->rtt_arg, (double)rtt / 1e9);
        /* Redis lost its script cache (SCRIPT FLUSH): load again. The
         * caller gets this one error reply. */
        if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
            st->state == STORE_READY) {
            log_warn("redis lost the script cache, reconnecting to reload", "%s", "");
            p->fn(reply, p->privdata);
            cmd_release(st, p);
            drop_context(st, "NOSCRIPT");
            return;
        }
    }
    p->fn(reply, p->privdata);
    cmd_release(st, p);
}

static int send_argv(store_t *st, store_reply_fn fn, void *privdata, int argc,
                     const char **argv, const size_t *argvlen)
{
    size_t len = format_argv(st, argc, argv, argvlen);
    pending_cmd_t *p = len ? cmd_acquire(st) : NULL;
    if (p == NULL)
        return -1;
    p->st = st;
    p->fn = fn;
    p->privdata = privdata;
    p->sent_ns = uv_hrtime();
    int rc = redisAsyncFormattedCommand(st->ac, on_reply, p, st->fmt, len);
    if (st->fmt_cap > STORE_FMT_KEEP_BYTES) {
        free(st->fmt);
        st->fmt = NULL;
        st->fmt_cap = 0;
    }
    if (rc != REDIS_OK) {
        cmd_release(st, p);
        return -1;
    }
    p->next = NULL;
    p->prev = st->newest;
    if (st->newest)
        st->newest->next = p;
    else
        st->oldest = p;
    st->newest = p;
    st->counters.pending++;
    atomic_store_explicit(&st->waiting, st->counters.pending, memory_order_relaxed);
    st->counters.commands++;
    atomic_store_explicit(&st->last_sent_ms, uv_now(st->loop), memory_order_relaxed);
    watchdog_ensure(st);
    return 0;
}

int store_command(store_t *st, store_reply_fn fn, void *privdata, int argc,
                  const char **argv, const size_t *argvlen)
{
    if (st->state != STORE_READY || st->ac == NULL) {
        st->counters.rejected++;
        return -1;
    }
    return send_argv(st, fn, privdata, argc, argv, argvlen);
}

int store_eval(store_t *st, int script, store_reply_fn fn, void *privdata, int nkeys,
               int nargs, const char **argv, const size_t *argvlen)
{
    if (script < 0 || script >= st->n_scripts || !st->scripts[script].loaded)
        return -1;
    enum { MAX_ARGS = 64 };
    int argc = 3 + nkeys + nargs;
    if (argc > MAX_ARGS)
        return -1;
    const char *av[MAX_ARGS];
    size_t al[MAX_ARGS];
    char nk[16];
    int nkl = snprintf(nk, sizeof nk, "%d", nkeys);
    av[0] = "EVALSHA";
    al[0] = 7;
    av[1] = st->scripts[script].sha;
    al[1] = 40;
    av[2] = nk;
    al[2] = (size_t)nkl;
    for (int i = 0; i < nkeys + nargs; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = argvlen[i];
    }
    return store_command(st, fn, privdata, argc, av, al);
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
}

static void drop_context(store_t *st, const char *why)
{
    redisAsyncContext *ac = st->ac;
    bool was_ready = st->state == STORE_READY;
    st->ac = NULL;
    st->state = STORE_DISCONNECTED;
    set_error(st, why);
    if (was_ready) {
        st->counters.disconnects++;
        log_warn("redis connection dropped", "reason=\"%s\"", why);
    }
    for (int i = 0; i < st->n_scripts; i++)
        st->scripts[i].loaded = false;
    if (ac != NULL)
        redisAsyncFree(ac); /* runs pending callbacks with NULL */
    schedule_reconnect(st);
}

static void on_handshake_reply(redisReply *reply, void *privdata);

typedef struct handshake_step {
    store_t *st;
    int script; /* -1 for AUTH/PING */
} handshake_step_t;

static void handshake_finish(store_t *st)
{
    if (st->handshake_failed) {
        drop_context(st, st->last_error);
        return;
    }
    st->state = STORE_READY;
    st->backoff_ms = st->reconnect_min_ms;
    st->last_error[0] = '\0';
    if (st->ever_ready)
        st->counters.reconnects++;
    st->ever_ready = true;
    if (st->unix_path[0])
        log_info("redis ready", "unix=%s", st->unix_path);
    else
        log_info("redis ready", "addr=%s:%d", st->host, st->port);
}

static void on_handshake_reply(redisReply *reply, void *privdata)
{
    handshake_step_t *step = privdata;
    store_t *st = step->st;
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
                           const size_t *lens)
{
    handshake_step_t *step = malloc(sizeof *step);
    if (step == NULL)
        return false;
    step->st = st;
    step->script = script;
    if (send_argv(st, on_handshake_reply, step, argc, argv, lens) != 0) {
        free(step);
        return false;
    }
    st->handshake_steps++;
    return true;
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
        ok = handshake_send(st, -1, 2, argv, lens);
    }
    for (int i = 0; ok && i < st->n_scripts; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", st->scripts[i].body};
        size_t lens[] = {6, 4, strlen(st->scripts[i].body)};
        ok = handshake_send(st, i, 3, argv, lens);
    }
    if (ok) {
        const char *argv[] = {"PING"};
        size_t lens[] = {4};
        ok = handshake_send(st, -1, 1, argv, lens);
    }
    if (!ok)
        drop_context(st, "could not send the handshake");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    store_t *st = ac->data;
    if (ac != st->ac)
        return; /* dropped by us: drop_context already scheduled what follows */
    st->ac = NULL;
    bool was_ready = st->state == STORE_READY;
    st->state = STORE_DISCONNECTED;
    for (int i = 0; i < st->n_scripts; i++)
        st->scripts[i].loaded = false;
    set_error(st, status == REDIS_OK ? "connection closed" : ac->errstr);
    if (was_ready) {
        st->counters.disconnects++;
        log_warn("redis connection lost", "error=\"%s\"", st->last_error);
    }
    schedule_reconnect(st);
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
    st->state = STORE_CONNECTING;
    st->connect_started_ns = uv_hrtime();
    watchdog_ensure(st);
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
    st->handles_open = 2;
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
    st->reconnect_min_ms = r->reconnect_min_ms;
    st->reconnect_max_ms = r->reconnect_max_ms;
    if (!changed)
        return;
    snprintf(st->host, sizeof st->host, "%s", r->host);
    st->port = r->port;
    snprintf(st->unix_path, sizeof st->unix_path, "%s", r->unix_path);
    free(st->password);
    st->password = r->password ? strdup(r->password) : NULL;
    st->backoff_ms = st->reconnect_min_ms;
    bool first = !st->configured;
    st->configured = true;
    if (first) {
        store_connect(st);
    } else {
        log_info("redis settings changed, reconnecting", "%s", "");
        uv_timer_stop(&st->retry);
        if (st->ac != NULL)
            drop_context(st, "settings changed");
        uv_timer_stop(&st->retry);
        store_connect(st);
    }
}

store_state_t store_state(const store_t *st) { return st->state; }
uint64_t store_position(const store_t *st) { return st->counters.commands; }
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
            free(p);
        }
        free(st->fmt);
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
    if (ac != NULL)
        redisAsyncFree(ac);
    uv_close((uv_handle_t *)&st->watchdog, on_store_handle_closed);
    uv_close((uv_handle_t *)&st->retry, on_store_handle_closed);
}
