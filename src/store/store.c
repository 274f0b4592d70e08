/*
 * store.c - hiredis async on libuv: a window of commands in flight, a queue
 * behind it, liveness by progress, reconnects that keep what Redis has not
 * answered (see store.h for the contract).
 *
 * Every accepted command is a pending_cmd_t holding its RESP bytes, so that
 * it can be written again: on a new connection, or as EVAL after NOSCRIPT.
 * It is on exactly one of two lists: `inflight` (written to the current
 * context, in the order Redis will answer) or `queue` (waiting for the
 * window or for a connection, in the order it must be written).
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

#include <hiredis/async.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/lib/resp_buf.h"
#include "notifd/log.h"
#include "notifd/store/redis_uv.h"
#include "notifd/store/reply_arena.h"

#define STORE_MAX_SCRIPTS 16

/* Pending commands are recycled through a freelist, buffers included: a
 * decide sends about five, and malloc/free per command showed in the
 * profile for nothing. */
#define STORE_FREE_CMDS_MAX 4096
/* A command buffer is kept for reuse unless one huge command grew it. */
#define STORE_BUF_KEEP_BYTES 4096
/* Likewise hiredis' reply buffer. */
#define STORE_READER_KEEP_BYTES (1024 * 1024)
/* Replies are built in an arena that starts over with each reply (a decide
 * reads ~50 reply elements: as many mallocs and frees were an eighth of
 * notifd's CPU). One block holds any usual reply; a huge one gets its own,
 * freed again once the arena passes this. */
#define STORE_ARENA_BLOCK (64 * 1024)
#define STORE_ARENA_KEEP_BYTES (1024 * 1024)
/* A command written this often without an answer is failed rather than
 * sent again: it may be what keeps taking Redis down. */
#define STORE_MAX_ATTEMPTS 3

typedef struct pending_cmd {
    struct pending_cmd *prev, *next;
    store_t *st;
    store_reply_fn fn;
    void *privdata;
    uint64_t sent_ns;        /* last written */
    uint64_t deadline_ns;    /* 0: none */
    resp_buf_t cmd;          /* the command in RESP */
    int script;              /* registered script of an EVALSHA, else -1 */
    int attempts;            /* times written */
    bool internal;           /* handshake, reload or probe: outside the window, never resent */
} pending_cmd_t;

typedef struct cmd_list {
    pending_cmd_t *head, *tail;
    int64_t n;
} cmd_list_t;

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
    int max_in_flight;
    int max_queued;
    int probe_interval_ms;

    uint64_t connect_started_ns;
    uint64_t last_progress_ns;   /* last reply, or when the first command went out */
    uint64_t last_write_ns;      /* any command, internal ones too (probes) */
    uv_timer_t watchdog;         /* liveness, connect timeout, expiry, probes */
    bool watchdog_running;
    uv_timer_t retry;            /* reconnect backoff */
    int handles_open;

    cmd_list_t inflight;
    cmd_list_t queue;
    int64_t user_in_flight;      /* inflight minus internal commands: the window */
    /* Where the next command of a lost connection goes back into the
     * queue: after those of the same connection already put back, before
     * everything that was never written. */
    pending_cmd_t *requeue_after;
    uint64_t position;           /* callers' commands accepted so far (store_position) */
    bool pumping;
    bool congested;
    bool dropping_hung;          /* drop_context for no progress: see settle_unanswered */
    void (*drain_fn)(void *);
    void *drain_arg;

    int handshake_steps;         /* handshake replies still expected */
    bool handshake_failed;
    bool reloading;              /* SCRIPT LOADs after NOSCRIPT are out */
    int reload_steps;

    store_script_t scripts[STORE_MAX_SCRIPTS];
    int n_scripts;

    pending_cmd_t *free_cmds;    /* recycled pending_cmd_t, singly linked by next */
    int n_free_cmds;
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
static void pump(store_t *st);
static void scripts_reload(store_t *st);

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
/* Command lists                                                      */

static void list_insert_after(cmd_list_t *l, pending_cmd_t *after, pending_cmd_t *p)
{
    p->prev = after;
    p->next = after ? after->next : l->head;
    if (p->next)
        p->next->prev = p;
    else
        l->tail = p;
    if (after)
        after->next = p;
    else
        l->head = p;
    l->n++;
}

static void list_push_tail(cmd_list_t *l, pending_cmd_t *p) { list_insert_after(l, l->tail, p); }

static void list_unlink(cmd_list_t *l, pending_cmd_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        l->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        l->tail = p->prev;
    p->prev = p->next = NULL;
    l->n--;
}

static void counts_changed(store_t *st)
{
    st->counters.in_flight = st->inflight.n;
    st->counters.queued = st->queue.n;
    st->counters.pending = st->inflight.n + st->queue.n;
    atomic_store_explicit(&st->waiting, st->counters.pending, memory_order_relaxed);
}

static void queue_unlink(store_t *st, pending_cmd_t *p)
{
    if (st->requeue_after == p)
        st->requeue_after = p->prev;
    list_unlink(&st->queue, p);
}

static void inflight_unlink(store_t *st, pending_cmd_t *p)
{
    list_unlink(&st->inflight, p);
    if (!p->internal)
        st->user_in_flight--;
}

static pending_cmd_t *cmd_acquire(store_t *st)
{
    pending_cmd_t *p = st->free_cmds;
    if (p != NULL) {
        st->free_cmds = p->next;
        st->n_free_cmds--;
    } else {
        p = calloc(1, sizeof *p);
        if (p == NULL)
            return NULL;
    }
    p->prev = p->next = NULL;
    p->st = st;
    p->script = -1;
    p->attempts = 0;
    p->internal = false;
    p->deadline_ns = 0;
    resp_buf_clear(&p->cmd, STORE_BUF_KEEP_BYTES);
    return p;
}

static void cmd_release(store_t *st, pending_cmd_t *p)
{
    if (st->n_free_cmds >= STORE_FREE_CMDS_MAX || st->closing) {
        resp_buf_free(&p->cmd);
        free(p);
        return;
    }
    p->next = st->free_cmds;
    st->free_cmds = p;
    st->n_free_cmds++;
}

/* Fails a command that is on no list: its callback gets NULL. */
static void cmd_fail(store_t *st, pending_cmd_t *p)
{
    st->counters.errors++;
    p->fn(NULL, p->privdata);
    cmd_release(st, p);
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

/* Encodes argv as a RESP array into p->cmd (resp_buf.h); false when out of
 * memory. */
static bool format_argv(pending_cmd_t *p, int argc, const char **argv, const size_t *argvlen)
{
    resp_buf_clear(&p->cmd, STORE_BUF_KEEP_BYTES);
    resp_buf_argv(&p->cmd, argc, argv, argvlen);
    return !p->cmd.failed;
}

/* Rewrites an EVALSHA command as EVAL of the script's body: the first two
 * arguments change, the rest of the encoding stays as it was. */
static bool evalsha_to_eval(store_t *st, pending_cmd_t *p)
{
    const char *body = st->scripts[p->script].body;
    size_t blen = strlen(body);
    const char *crlf = memchr(p->cmd.p, '\n', p->cmd.len);
    /* "*N\r\n" "$7\r\nEVALSHA\r\n" "$40\r\n<sha>\r\n" */
    size_t head = crlf ? (size_t)(crlf - p->cmd.p) + 1 : 0;
    size_t skip = head + 13 + 47;
    if (head == 0 || skip > p->cmd.len)
        return false;
    size_t rest = p->cmd.len - skip;
    char *nb = malloc(head + 10 + 24 + blen + 2 + rest + 1);
    if (nb == NULL)
        return false;
    memcpy(nb, p->cmd.p, head);
    char *w = nb + head;
    memcpy(w, "$4\r\nEVAL\r\n", 10);
    w = put_resp_len(w + 10, '$', blen);
    memcpy(w, body, blen);
    w += blen;
    *w++ = '\r';
    *w++ = '\n';
    memcpy(w, p->cmd.p + skip, rest);
    w += rest;
    *w = '\0';
    free(p->cmd.p);
    p->cmd.p = nb;
    p->cmd.len = (size_t)(w - nb);
    p->cmd.cap = p->cmd.len + 1;
    p->script = -1;
    return true;
}

/* ------------------------------------------------------------------ */
/* Writing, the window and the queue                                  */

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

static void watchdog_ensure(store_t *st);

/* Hands a command to the current context; false if hiredis refuses (the
 * context is being torn down). */
static bool cmd_write(store_t *st, pending_cmd_t *p)
{
    if (redisAsyncFormattedCommand(st->ac, on_reply, p, p->cmd.p, p->cmd.len) != REDIS_OK)
        return false;
    uint64_t now = uv_hrtime();
    p->sent_ns = now;
    p->attempts++;
    /* The no-progress clock starts when something is outstanding. */
    if (st->inflight.n == 0)
        st->last_progress_ns = now;
    list_push_tail(&st->inflight, p);
    st->last_write_ns = now;
    /* Only callers' commands: the planner reads this to tell whether the
     * fast path is busy, and a probe is not traffic. */
    if (!p->internal) {
        st->user_in_flight++;
        atomic_store_explicit(&st->last_sent_ms, uv_now(st->loop), memory_order_relaxed);
    }
    watchdog_ensure(st);
    return true;
}

static void congestion_update(store_t *st)
{
    int64_t high = st->max_queued / 2, low = st->max_queued / 4;
    if (!st->congested && st->queue.n >= high) {
        st->congested = true;
        st->counters.congestions++;
    } else if (st->congested && st->queue.n <= low) {
        st->congested = false;
        if (st->drain_fn)
            st->drain_fn(st->drain_arg);
    }
}

/* Writes queued commands while the window has room; fails those whose
 * deadline passed before they could go. */
static void pump(store_t *st)
{
    if (st->pumping)
        return;
    st->pumping = true;
    uint64_t now = uv_hrtime();
    pending_cmd_t *p;
    while ((p = st->queue.head) != NULL) {
        if (p->deadline_ns != 0 && now >= p->deadline_ns) {
            queue_unlink(st, p);
            st->counters.expired++;
            cmd_fail(st, p);
            continue;
        }
        if (st->state != STORE_READY || st->ac == NULL || st->user_in_flight >= st->max_in_flight)
            break;
        queue_unlink(st, p);
        if (!cmd_write(st, p)) {
            list_insert_after(&st->queue, NULL, p);
            break;
        }
    }
    st->pumping = false;
    counts_changed(st);
    congestion_update(st);
}

/* While no connection is ready nothing is written, but deadlines still
 * pass anywhere in the queue. */
static void expire_queued(store_t *st)
{
    uint64_t now = uv_hrtime();
    pending_cmd_t *p = st->queue.head;
    while (p != NULL) {
        pending_cmd_t *next = p->next;
        if (p->deadline_ns != 0 && now >= p->deadline_ns) {
            queue_unlink(st, p);
            st->counters.expired++;
            cmd_fail(st, p);
            /* A callback may have queued or removed commands: start over. */
            next = st->queue.head;
        }
        p = next;
    }
    counts_changed(st);
    congestion_update(st);
}

/* A command of a lost connection: back into the queue, in its order, if it
 * may still be sent; failed otherwise. When Redis was declared hung (no
 * progress), commands with a caller's deadline fail at once: their callers
 * (decides) answer now instead of waiting for a Redis that is not back;
 * the others (feedback, plan writes) get redis.timeout_ms for a reconnect.
 * A connection that closed (a restart) keeps both kinds. */
static void settle_unanswered(store_t *st, pending_cmd_t *p)
{
    uint64_t now = uv_hrtime();
    if (!p->internal && !st->closing && p->attempts < STORE_MAX_ATTEMPTS &&
        !(st->dropping_hung && p->deadline_ns != 0)) {
        if (p->deadline_ns == 0)
            p->deadline_ns = now + (uint64_t)st->timeout_ms * 1000000u;
        if (now < p->deadline_ns) {
            list_insert_after(&st->queue, st->requeue_after, p);
            st->requeue_after = p;
            st->counters.resent++;
            counts_changed(st);
            return;
        }
        st->counters.expired++;
    }
    cmd_fail(st, p);
    counts_changed(st);
}

/* The current context died under us (hiredis is running its callbacks with
 * NULL, or reported the disconnect): what follows is a reconnect. */
static void schedule_reconnect(store_t *st);

static void context_lost(store_t *st, const char *why)
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
    schedule_reconnect(st);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    pending_cmd_t *p = privdata;
    store_t *st = p->st;
    redisReply *reply = r;
    inflight_unlink(st, p);
    if (reply == NULL) {
        if (ac == st->ac)
            context_lost(st, ac->errstr[0] ? ac->errstr : "connection lost");
        if (p->internal)
            cmd_fail(st, p);
        else
            settle_unanswered(st, p);
        return;
    }
    uint64_t now = uv_hrtime();
    st->last_progress_ns = now;
    st->counters.replies++;
    uint64_t rtt = now - p->sent_ns;
    st->counters.rtt_us_sum += rtt / 1000u;
    if (st->rtt_fn)
        st->rtt_fn(st->rtt_arg, (double)rtt / 1e9);
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Redis lost its script cache (SCRIPT FLUSH, a restart without
         * persistence of it): nothing ran. Send the body itself, and load
         * the cache again for the commands that follow. */
        if (p->script >= 0 && strncmp(reply->str, "NOSCRIPT", 8) == 0 && ac == st->ac &&
            st->state == STORE_READY && evalsha_to_eval(st, p)) {
            st->counters.noscript++;
            static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
            log_limited(&rl, LOG_WARN, "redis lost the script cache, sending scripts again", "%s",
                        "");
            scripts_reload(st);
            if (!cmd_write(st, p)) {
                list_insert_after(&st->queue, NULL, p);
                counts_changed(st);
            }
            return;
        }
        st->counters.errors++;
        if (strncmp(reply->str, "READONLY", 8) == 0) {
            /* A replica answers where the master was: Redis refused this
             * command, and the address may lead to the new master once the
             * connection is built again. */
            st->counters.readonly++;
            p->fn(reply, p->privdata);
            cmd_release(st, p);
            if (ac == st->ac)
                drop_context(st, "READONLY: the server is a read-only replica");
            return;
        }
    }
    p->fn(reply, p->privdata);
    cmd_release(st, p);
    counts_changed(st);
    if (st->queue.n > 0)
        pump(st);
}

/* Accepts a command for the caller: written now if the window has room and
 * nothing waits before it, queued otherwise. */
static int accept_cmd(store_t *st, uint64_t deadline_ns, int script, store_reply_fn fn,
                      void *privdata, int argc, const char **argv, const size_t *argvlen)
{
    if (st->state != STORE_READY || st->ac == NULL) {
        st->counters.rejected++;
        return -1;
    }
    if (st->queue.n >= st->max_queued) {
        st->counters.rejected++;
        st->counters.queue_full++;
        return -1;
    }
    pending_cmd_t *p = cmd_acquire(st);
    if (p == NULL)
        return -1;
    if (!format_argv(p, argc, argv, argvlen)) {
        cmd_release(st, p);
        return -1;
    }
    p->fn = fn;
    p->privdata = privdata;
    p->deadline_ns = deadline_ns;
    p->script = script;
    if (st->queue.n == 0 && st->user_in_flight < st->max_in_flight) {
        if (!cmd_write(st, p)) {
            cmd_release(st, p);
            st->counters.rejected++;
            return -1;
        }
    } else {
        list_push_tail(&st->queue, p);
        congestion_update(st);
        watchdog_ensure(st);
    }
    st->counters.commands++;
    st->position++;
    counts_changed(st);
    return 0;
}

/* Internal commands (handshake, script reload, probe) go out at once,
 * outside the window. */
static bool send_internal(store_t *st, store_reply_fn fn, void *privdata, int argc,
                          const char **argv, const size_t *lens)
{
    pending_cmd_t *p = cmd_acquire(st);
    if (p == NULL)
        return false;
    if (!format_argv(p, argc, argv, lens)) {
        cmd_release(st, p);
        return false;
    }
    p->fn = fn;
    p->privdata = privdata;
    p->internal = true;
    if (!cmd_write(st, p)) {
        cmd_release(st, p);
        return false;
    }
    st->counters.commands++;
    counts_changed(st);
    return true;
}

int store_command_until(store_t *st, uint64_t deadline_ns, store_reply_fn fn, void *privdata,
                        int argc, const char **argv, const size_t *argvlen)
{
    return accept_cmd(st, deadline_ns, -1, fn, privdata, argc, argv, argvlen);
}

int store_command(store_t *st, store_reply_fn fn, void *privdata, int argc,
                  const char **argv, const size_t *argvlen)
{
    return accept_cmd(st, 0, -1, fn, privdata, argc, argv, argvlen);
}

int store_eval_until(store_t *st, uint64_t deadline_ns, int script, store_reply_fn fn,
                     void *privdata, int nkeys, int nargs, const char **argv,
                     const size_t *argvlen)
{
    if (script < 0 || script >= st->n_scripts)
        return -1;
    enum { MAX_ARGS = 64 };
    int argc = 3 + nkeys + nargs;
    if (argc > MAX_ARGS)
        return -1;
    const char *av[MAX_ARGS];
    size_t al[MAX_ARGS];
    char nk[16];
    int nkl = snprintf(nk, sizeof nk, "%d", nkeys);
    /* While the cache is being loaded again, the body goes itself. */
    bool sha = st->scripts[script].loaded;
    av[0] = sha ? "EVALSHA" : "EVAL";
    al[0] = sha ? 7 : 4;
    av[1] = sha ? st->scripts[script].sha : st->scripts[script].body;
    al[1] = sha ? 40 : strlen(st->scripts[script].body);
    av[2] = nk;
    al[2] = (size_t)nkl;
    for (int i = 0; i < nkeys + nargs; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = argvlen[i];
    }
    return accept_cmd(st, deadline_ns, sha ? script : -1, fn, privdata, argc, av, al);
}

int store_eval(store_t *st, int script, store_reply_fn fn, void *privdata, int nkeys,
               int nargs, const char **argv, const size_t *argvlen)
{
    return store_eval_until(st, 0, script, fn, privdata, nkeys, nargs, argv, argvlen);
}

bool store_congested(const store_t *st) { return st->congested; }
bool store_queue_full(const store_t *st) { return st->queue.n >= st->max_queued; }

void store_set_drain_observer(store_t *st, void (*fn)(void *), void *arg)
{
    st->drain_fn = fn;
    st->drain_arg = arg;
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
        drop_context(st, "connect timed out");
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
            drop_context(st, why);
            st->dropping_hung = false;
            return;
        }
    }
    if (st->state == STORE_READY) {
        if (st->queue.n > 0)
            pump(st);
        if (st->probe_interval_ms > 0 && st->inflight.n == 0 && st->ac != NULL &&
            now - st->last_write_ns >= (uint64_t)st->probe_interval_ms * 1000000u) {
            const char *argv[] = {"PING"};
            size_t lens[] = {4};
            if (send_internal(st, on_probe_reply, NULL, 1, argv, lens))
                st->counters.probes++;
        }
    } else if (st->queue.n > 0) {
        expire_queued(st);
    }
    bool needed = st->inflight.n > 0 || st->queue.n > 0 || st->state == STORE_CONNECTING ||
                  (st->state == STORE_READY && st->probe_interval_ms > 0);
    if (!needed) {
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
    watchdog_ensure(st); /* deadlines of queued commands pass meanwhile */
}

static void drop_context(store_t *st, const char *why)
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
        log_info("redis ready", "unix=%s queued=%lld", st->unix_path, (long long)st->queue.n);
    else
        log_info("redis ready", "addr=%s:%d queued=%lld", st->host, st->port,
                 (long long)st->queue.n);
    /* What a lost connection left unanswered goes first, in order. */
    st->requeue_after = NULL;
    pump(st);
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
    if (!send_internal(st, on_handshake_reply, step, argc, argv, lens)) {
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
static void scripts_reload(store_t *st)
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
        drop_context(st, "could not send the handshake");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    store_t *st = ac->data;
    /* Dropped by us, or marked lost by the first NULL reply: what follows
     * is scheduled already. */
    if (ac != st->ac)
        return;
    context_lost(st, status == REDIS_OK ? "connection closed" : ac->errstr);
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
    st->max_in_flight = r->max_in_flight;
    st->max_queued = r->max_queued;
    st->probe_interval_ms = r->probe_interval_ms;
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
        queue_unlink(st, p);
        cmd_fail(st, p);
    }
    if (ac != NULL)
        redisAsyncFree(ac); /* in-flight commands: callbacks with NULL */
    counts_changed(st);
    uv_close((uv_handle_t *)&st->watchdog, on_store_handle_closed);
    uv_close((uv_handle_t *)&st->retry, on_store_handle_closed);
}
