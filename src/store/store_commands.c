/*
 * store_commands.c - the store's commands (store.h, store_internal.h):
 * accepted, encoded once in RESP, written while the in-flight window has
 * room and queued behind it otherwise; their replies, NOSCRIPT resent as
 * EVAL, READONLY, and what a lost connection leaves unanswered (sent again
 * in order, or failed once its deadline passed).
 */
#include <stdlib.h>
#include <string.h>

#include "notifd/log.h"
#include "store_internal.h"

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

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

void store_counts_changed(store_t *st)
{
    st->counters.in_flight = st->inflight.n;
    st->counters.queued = st->queue.n;
    st->counters.pending = st->inflight.n + st->queue.n;
    atomic_store_explicit(&st->waiting, st->counters.pending, memory_order_relaxed);
}

void store_queue_unlink(store_t *st, pending_cmd_t *p)
{
    st->queue_changes++;
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

static void store_cmd_release(store_t *st, pending_cmd_t *p)
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
void store_cmd_fail(store_t *st, pending_cmd_t *p)
{
    st->counters.errors++;
    p->fn(NULL, p->privdata);
    store_cmd_release(st, p);
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
    store_watchdog_ensure(st);
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
void store_pump(store_t *st)
{
    if (st->pumping)
        return;
    st->pumping = true;
    uint64_t now = uv_hrtime();
    pending_cmd_t *p;
    while ((p = st->queue.head) != NULL) {
        if (p->deadline_ns != 0 && now >= p->deadline_ns) {
            store_queue_unlink(st, p);
            st->counters.expired++;
            store_cmd_fail(st, p);
            continue;
        }
        if (st->state != STORE_READY || st->ac == NULL || st->user_in_flight >= st->max_in_flight)
            break;
        store_queue_unlink(st, p);
        if (!cmd_write(st, p)) {
            list_insert_after(&st->queue, NULL, p);
            break;
        }
    }
    st->pumping = false;
    store_counts_changed(st);
    congestion_update(st);
}

/* While no connection is ready nothing is written, but deadlines still
 * pass anywhere in the queue. */
void store_expire_queued(store_t *st) { store_fail_queued(st, false); }

void store_fail_queued(store_t *st, bool all_with_deadline)
{
    uint64_t now = uv_hrtime();
    pending_cmd_t *p = st->queue.head;
    while (p != NULL) {
        pending_cmd_t *next = p->next;
        if (p->deadline_ns != 0 && (all_with_deadline || now >= p->deadline_ns)) {
            store_queue_unlink(st, p);
            st->counters.expired++;
            uint64_t changes = st->queue_changes;
            store_cmd_fail(st, p);
            /* A callback that changed the queue may have taken `next` too:
             * start over then (callbacks here rarely can: no connection is
             * ready, so new commands are refused). */
            if (st->queue_changes != changes)
                next = st->queue.head;
        }
        p = next;
    }
    store_counts_changed(st);
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
            store_counts_changed(st);
            return;
        }
        st->counters.expired++;
    }
    store_cmd_fail(st, p);
    store_counts_changed(st);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    pending_cmd_t *p = privdata;
    store_t *st = p->st;
    redisReply *reply = r;
    inflight_unlink(st, p);
    if (reply == NULL) {
        if (ac == st->ac)
            store_context_lost(st, ac->errstr[0] ? ac->errstr : "connection lost");
        if (p->internal)
            store_cmd_fail(st, p);
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
            store_scripts_reload(st);
            if (!cmd_write(st, p)) {
                list_insert_after(&st->queue, NULL, p);
                store_counts_changed(st);
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
            store_cmd_release(st, p);
            if (ac == st->ac)
                store_drop_context(st, "READONLY: the server is a read-only replica");
            return;
        }
    }
    p->fn(reply, p->privdata);
    store_cmd_release(st, p);
    store_counts_changed(st);
    if (st->queue.n > 0)
        store_pump(st);
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
        store_cmd_release(st, p);
        return -1;
    }
    p->fn = fn;
    p->privdata = privdata;
    p->deadline_ns = deadline_ns;
    p->script = script;
    if (st->queue.n == 0 && st->user_in_flight < st->max_in_flight) {
        if (!cmd_write(st, p)) {
            store_cmd_release(st, p);
            st->counters.rejected++;
            return -1;
        }
    } else {
        list_push_tail(&st->queue, p);
        congestion_update(st);
        store_watchdog_ensure(st);
    }
    st->counters.commands++;
    st->position++;
    store_counts_changed(st);
    return 0;
}

/* Internal commands (handshake, script reload, probe) go out at once,
 * outside the window. */
bool store_send_internal(store_t *st, store_reply_fn fn, void *privdata, int argc,
                          const char **argv, const size_t *lens)
{
    pending_cmd_t *p = cmd_acquire(st);
    if (p == NULL)
        return false;
    if (!format_argv(p, argc, argv, lens)) {
        store_cmd_release(st, p);
        return false;
    }
    p->fn = fn;
    p->privdata = privdata;
    p->internal = true;
    if (!cmd_write(st, p)) {
        store_cmd_release(st, p);
        return false;
    }
    st->counters.commands++;
    store_counts_changed(st);
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

bool store_room(const store_t *st, int n)
{
    if (st->state != STORE_READY || st->ac == NULL)
        return false;
    /* With nothing queued, commands go straight out while the window has
     * room; the rest wait in the queue. */
    int64_t direct = 0;
    if (st->queue.n == 0 && st->user_in_flight < st->max_in_flight)
        direct = st->max_in_flight - st->user_in_flight;
    return (int64_t)n - direct <= st->max_queued - st->queue.n;
}

void store_set_drain_observer(store_t *st, void (*fn)(void *), void *arg)
{
    st->drain_fn = fn;
    st->drain_arg = arg;
}
