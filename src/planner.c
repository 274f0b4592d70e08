/*
 * planner.c - the slow policy's worker thread (see planner.h and
 * docs/planner.md).
 *
 * Shape of the thread: wait on a condition variable until a requested pass
 * is queued, the poll timer is due, or stop is set; run one pass with one
 * config snapshot; hand the result back to the loop thread through a
 * uv_async_t; repeat. The thread owns a synchronous hiredis connection that
 * nothing else touches, so blocking on Redis here never blocks the loop.
 *
 * Shape of a pass: ask which schedule partitions have work (per partition
 * a ZCOUNT of the due set, a ZCARD of the cadence set and the cursor, all
 * pipelined); for each of those, starting at an offset that depends on
 * this instance (so a fleet does not queue up on partition 0), claim the
 * lease `P lease:<n>` with SET NX PX, walk the partition's cadence window
 * (the phases that came round since its cursor, cadence.h), then its due
 * set, both in chunks, move the cursor, release the lease.
 *
 * Shape of a chunk: a pipeline of command groups, kept in a small FIFO in
 * the order they were sent, because Redis answers in that order:
 *   READ  i   HGETALL member:{M} + HGETALL plan:{M}, per member of batch i
 *   WRITE i   the plan write per planned member (HSET, with EXPIRE when the
 *             stored TTL runs short, or the plan-write script when stale
 *             fields must go; see stored_plan_covered)
 *   RENEW     the lease's compare-and-pexpire, when a third of it has passed
 * Reads run two batches ahead of the computation: while this thread parses
 * and plans batch i, Redis is already answering the reads of batch i+1 and
 * the writes of batch i-1. Once every write of the chunk is answered, the
 * chunk's schedule changes go out (chunk_reschedule): members planned from
 * the due set join the cadence set; nothing moves for members planned in
 * the cadence walk.
 *
 * A member whose plan could not be written stays in (or joins) the due
 * set; the due walk steps over such members with its LIMIT offset, so one
 * bad member never stalls a partition, and the next pass tries it again.
 *
 * The pass is bound by Redis's single thread, so the worker spends little
 * CPU of its own: it formats RESP itself (cmdbuf) and builds replies in an
 * arena (arena_functions) instead of a malloc per reply element.
 */
#include "notifd/planner.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "notifd/cadence.h"
#include "notifd/features.h"
#include "notifd/hash.h"
#include "notifd/keys.h"
#include "notifd/log.h"
#include "notifd/metrics.h"
#include "notifd/schedule.h"
#include "notifd/slow_policy.h"
#include "notifd/store.h"

/* A chunk is this many batches, and at least PLANNER_CHUNK_MIN members: one
 * ZRANGEBYSCORE feeds them all, and the chunk's schedule moves go out
 * together at its end. Small chunks made those moves (sorted, but fewer of
 * them) cost Redis twice as much per member: 1.7 us at 512 members per
 * chunk, 0.8-1.0 us at 4096. */
#define PLANNER_BATCHES_PER_CHUNK 8
#define PLANNER_CHUNK_MIN 4096
/* Fields of a feature hash looked at; a hash with more is read in part. */
#define PLANNER_MAX_PAIRS 256
/* The worker's command timeout is never below this: a pipeline of a few
 * thousand commands may legitimately take longer than a fast-path command
 * timeout (tens of ms), and nothing latency-sensitive waits on the worker. */
#define PLANNER_MIN_TIMEOUT_MS 1000
#define PLANNER_MAX_GROUPS 16
/* Most members per schedule command (ZADD XX / ZREM) at the end of a chunk;
 * a smaller batch_size makes the slices smaller too (see part_ctx.slice). */
#define PLANNER_SCHED_SLICE_MAX 512

const char planner_script_plan_write[] =
    "local v = tonumber(ARGV[1])\n"
    "local old = tonumber(redis.call('HGET', KEYS[1], 'version') or '')\n"
    "if old ~= nil and old >= v then v = math.floor(old) + 1 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'version', v, unpack(ARGV, 3))\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
    "return v\n";

/* Lease scripts: only the holder (by instance id) may extend or drop it. */
static const char lease_renew_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return 0\n";
static const char lease_release_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

/* Reply objects of the worker's connection (see arena_functions). */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, size;
    char data[];
} arena_block_t;

typedef struct reply_arena {
    arena_block_t *first, *cur;
    bool failed;                     /* out of memory: the reader errors out */
} reply_arena_t;

/* RESP being formatted for the next pipeline group (see cmdbuf_arg). */
typedef struct cmdbuf {
    char *p;
    size_t len, cap;
    bool failed;
} cmdbuf_t;

typedef struct pass_req {
    struct pass_req *next;
    int64_t as_of;
    planner_done_fn fn;
    void *arg;
    planner_result_t result;
} pass_req_t;

struct planner {
    app_t *app;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cond;             /* CLOCK_MONOTONIC */
    atomic_bool stop;
    pass_req_t *waiting_head, *waiting_tail; /* under mu */
    pass_req_t *done_head, *done_tail;       /* under mu */
    uv_async_t async;
    uv_timer_t watch;                /* notices app->stopping (loop thread) */
    int handles_open;
    char instance[96];               /* lease owner id: host:pid:random */
    uint64_t instance_hash;

    /* Worker thread only from here on. */
    redisContext *c;
    reply_arena_t arena;             /* replies of c (see arena_functions) */
    cmdbuf_t out;                    /* RESP of the group being formatted */
    char conn_host[CONFIG_HOST_MAX];
    int conn_port;
    char conn_unix[108];
    char *conn_password;
    uint64_t next_connect_ms;
    int backoff_ms;
    char sha_write[41];
    uint64_t next_timer_ms;
    int base_nice;                   /* the thread's nice value when it started */
    int nice_applied;                /* planner.nice last applied (-1: none yet) */
    double pass_t0;                  /* mono_s() at the start of the pass */
    uint64_t pass_members;           /* members read so far in the pass */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool stopping(planner_t *pl)
{
    return atomic_load_explicit(&pl->stop, memory_order_relaxed);
}

/* ------------------------------------------------------------------ */
/* The plan write (shared with the replan op)                         */

int64_t planner_valid_until(const config_t *cfg, const char *member, size_t member_len,
                            int64_t computed_at)
{
    return cadence_valid_until(cadence_phase(member, member_len), cfg->planner.interval_s,
                               cfg->planner.jitter_frac, computed_at);
}

int64_t planner_plan_ttl_s(const config_t *cfg, int64_t computed_at, int64_t valid_until)
{
    int64_t ttl = valid_until - computed_at + cfg->planner.interval_s;
    return ttl > 1 ? ttl : 1;
}

int64_t planner_plan_ttl_set_s(const config_t *cfg, int64_t computed_at, int64_t valid_until)
{
    return planner_plan_ttl_s(cfg, computed_at, valid_until) +
           PLANNER_TTL_AHEAD * cfg->planner.interval_s;
}

bool planner_ttl_long_enough(const config_t *cfg, int64_t expires_at, int64_t computed_at,
                             int64_t valid_until, int64_t now)
{
    return expires_at >= now + planner_plan_ttl_s(cfg, computed_at, valid_until);
}

/* Decimal of a signed integer into `out`; returns the length. snprintf is a
 * measurable share of a pass, and these are all plain integers. */
static size_t fmt_i64(char *out, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    size_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n > 0)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

void planner_write_args_build(planner_write_args_t *out, const config_t *cfg, const char *key,
                              size_t key_len, const plan_t *plan, int64_t ttl_s,
                              int64_t expires_at)
{
    char *t = out->text;
    int n = 0;
#define ARG(ptr, len)                                                                      \
    do {                                                                                   \
        out->argv[n] = (ptr);                                                              \
        out->lens[n] = (len);                                                              \
        n++;                                                                               \
    } while (0)
#define ARG_LIT(s) ARG(s, sizeof(s) - 1)
#define ARG_INT(v)                                                                         \
    do {                                                                                   \
        size_t l_ = fmt_i64(t, (v));                                                       \
        ARG(t, l_);                                                                        \
        t += l_ + 1;                                                                       \
    } while (0)
    ARG(key, key_len);
    ARG_INT(plan->version);
    ARG_INT(ttl_s);
    ARG_LIT("action");
    ARG_INT(plan->action);
    ARG_LIT("computed_at");
    ARG_INT(plan->computed_at);
    ARG_LIT("valid_until");
    ARG_INT(plan->valid_until);
    ARG_LIT("source");
    ARG_LIT("planner");
    if (expires_at != 0) {
        ARG_LIT("expires_at");
        ARG_INT(expires_at);
    }
    if (plan->arm[0] != '\0') {
        ARG_LIT("arm");
        ARG(plan->arm, strlen(plan->arm));
    }
    for (int c = 0; c < cfg->n_channels; c++) {
        if (!plan_has_channel(plan, c))
            continue;
        int l = snprintf(t, 48, "%s_per_week", cfg->channels[c]);
        ARG(t, (size_t)l);
        t += l + 1;
        double x = plan->per_week[c];
        if (x == floor(x) && fabs(x) < 1e15) {
            ARG_INT((int64_t)x);
        } else {
            l = snprintf(t, 32, "%.10g", x);
            ARG(t, (size_t)l);
            t += l + 1;
        }
    }
    out->argc = n;
#undef ARG
#undef ARG_LIT
#undef ARG_INT
}

/* ------------------------------------------------------------------ */
/* Reply objects from an arena                                        */

/*
 * hiredis builds every reply element with its own malloc (object, string
 * copy, element array): a feature hash of 30 fields is ~60 allocations and
 * as many frees, a third of the worker's CPU in a pass. The worker's
 * connection instead builds replies in a bump arena that is reset whenever
 * no reply is in use any more (after each pipeline group and before each
 * single command). This is safe because redisGetReply() returns as soon as
 * one top-level reply is complete and never starts the next one, so between
 * two calls the reader holds no partial reply. Replies from this connection
 * are therefore never passed to freeReplyObject().
 */
#define ARENA_BLOCK (1u << 20)

static void *arena_alloc(reply_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    arena_block_t *b = a->cur;
    while (b != NULL && b->used + n > b->size)
        b = b->next;
    if (b == NULL) {
        size_t size = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        b = malloc(sizeof *b + size);
        if (b == NULL) {
            a->failed = true;
            return NULL;
        }
        b->used = 0;
        b->size = size;
        /* Appended after cur, so reset() reuses it from the start. */
        if (a->cur == NULL) {
            b->next = NULL;
            a->first = b;
        } else {
            b->next = a->cur->next;
            a->cur->next = b;
        }
    }
    a->cur = b;
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static void arena_reset(reply_arena_t *a)
{
    for (arena_block_t *b = a->first; b != NULL; b = b->next)
        b->used = 0;
    a->cur = a->first;
}

static void arena_free(reply_arena_t *a)
{
    arena_block_t *b = a->first;
    while (b != NULL) {
        arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    a->first = a->cur = NULL;
}

static redisReply *arena_object(const redisReadTask *task, int type)
{
    reply_arena_t *a = task->privdata;
    redisReply *r = arena_alloc(a, sizeof *r);
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    r->type = type;
    if (task->parent != NULL) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    return r;
}

static void *arena_string(const redisReadTask *task, char *str, size_t len)
{
    reply_arena_t *a = task->privdata;
    char *copy = arena_alloc(a, len + 1);
    if (copy == NULL)
        return NULL;
    redisReply *r = arena_object(task, task->type);
    if (r == NULL)
        return NULL;
    memcpy(copy, str, len);
    copy[len] = '\0';
    r->str = copy;
    r->len = len;
    return r;
}

static void *arena_array(const redisReadTask *task, int elements)
{
    reply_arena_t *a = task->privdata;
    redisReply **el = NULL;
    if (elements > 0 && (el = arena_alloc(a, (size_t)elements * sizeof *el)) == NULL)
        return NULL;
    redisReply *r = arena_object(task, REDIS_REPLY_ARRAY);
    if (r == NULL)
        return NULL;
    r->elements = elements > 0 ? (size_t)elements : 0;
    r->element = el;
    return r;
}

static void *arena_integer(const redisReadTask *task, long long value)
{
    redisReply *r = arena_object(task, REDIS_REPLY_INTEGER);
    if (r != NULL)
        r->integer = value;
    return r;
}

static void *arena_nil(const redisReadTask *task) { return arena_object(task, REDIS_REPLY_NIL); }

static void arena_free_object(void *obj) { (void)obj; /* the arena owns it */ }

static redisReplyObjectFunctions arena_functions = {
    arena_string, arena_array, arena_integer, arena_nil, arena_free_object,
};

/* ------------------------------------------------------------------ */
/* Commands formatted straight into RESP                              */

/* hiredis formats argv commands with sdscatfmt per argument; a pass sends
 * millions of small commands, so the worker writes RESP itself into one
 * buffer per pipeline group and hands it over with a single append. */
static bool cmdbuf_reserve(cmdbuf_t *b, size_t n)
{
    if (b->len + n <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void cmdbuf_header(cmdbuf_t *b, char kind, size_t n)
{
    if (!cmdbuf_reserve(b, 24))
        return;
    b->p[b->len++] = kind;
    b->len += fmt_i64(b->p + b->len, (int64_t)n);
    b->p[b->len++] = '\r';
    b->p[b->len++] = '\n';
}

static void cmdbuf_begin(cmdbuf_t *b, int argc) { cmdbuf_header(b, '*', (size_t)argc); }

static void cmdbuf_arg(cmdbuf_t *b, const char *s, size_t n)
{
    cmdbuf_header(b, '$', n);
    if (!cmdbuf_reserve(b, n + 2))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len++] = '\r';
    b->p[b->len++] = '\n';
}

static void cmdbuf_arg_i64(cmdbuf_t *b, int64_t v)
{
    char t[24];
    cmdbuf_arg(b, t, fmt_i64(t, v));
}

static void cmdbuf_argv(cmdbuf_t *b, int argc, const char *const *argv, const size_t *lens)
{
    cmdbuf_begin(b, argc);
    for (int i = 0; i < argc; i++)
        cmdbuf_arg(b, argv[i], lens[i]);
}

/* ------------------------------------------------------------------ */
/* The worker's Redis connection                                      */

static void conn_drop(planner_t *pl)
{
    if (pl->c != NULL)
        redisFree(pl->c);
    pl->c = NULL;
    arena_reset(&pl->arena);
    pl->out.len = 0; /* a group half formatted when the connection failed */
    pl->out.failed = false;
}

static void conn_failed(planner_t *pl, const config_t *cfg, planner_result_t *res,
                        const char *what)
{
    if (res->error[0] == '\0')
        snprintf(res->error, sizeof res->error, "redis: %s", what);
    conn_drop(pl);
    if (pl->backoff_ms <= 0)
        pl->backoff_ms = cfg->redis.reconnect_min_ms;
    pl->next_connect_ms = mono_ms() + (uint64_t)pl->backoff_ms;
    pl->backoff_ms *= 2;
    if (pl->backoff_ms > cfg->redis.reconnect_max_ms)
        pl->backoff_ms = cfg->redis.reconnect_max_ms;
}

static bool conn_settings_changed(const planner_t *pl, const config_t *cfg)
{
    const config_redis_t *r = &cfg->redis;
    return strcmp(pl->conn_host, r->host) != 0 || pl->conn_port != r->port ||
           strcmp(pl->conn_unix, r->unix_path) != 0 ||
           (pl->conn_password == NULL) != (r->password == NULL) ||
           (pl->conn_password != NULL && strcmp(pl->conn_password, r->password) != 0);
}

static struct timeval tv_ms(int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

/* One command on the worker's connection, with nothing else in flight.
 * NULL (and the connection dropped) on an I/O error or timeout; error
 * replies are returned. The reply lives until the next command. */
static redisReply *conn_command(planner_t *pl, const config_t *cfg, planner_result_t *res,
                                int argc, const char **argv, const size_t *lens)
{
    arena_reset(&pl->arena);
    redisReply *r = redisCommandArgv(pl->c, argc, argv, lens);
    if (r == NULL)
        conn_failed(pl, cfg, res, pl->c->errstr[0] ? pl->c->errstr : "no reply");
    return r;
}

/* Opens the connection (AUTH included). `force` ignores the reconnect
 * backoff. */
static bool conn_open(planner_t *pl, const config_t *cfg, bool force, planner_result_t *res)
{
    if (!force && mono_ms() < pl->next_connect_ms) {
        snprintf(res->error, sizeof res->error,
                 "redis: unavailable, next connection attempt in %llu ms",
                 (unsigned long long)(pl->next_connect_ms - mono_ms()));
        return false;
    }
    const config_redis_t *r = &cfg->redis;
    struct timeval ct = tv_ms(r->connect_timeout_ms);
    pl->c = r->unix_path[0] ? redisConnectUnixWithTimeout(r->unix_path, ct)
                            : redisConnectWithTimeout(r->host, r->port, ct);
    snprintf(pl->conn_host, sizeof pl->conn_host, "%s", r->host);
    pl->conn_port = r->port;
    snprintf(pl->conn_unix, sizeof pl->conn_unix, "%s", r->unix_path);
    free(pl->conn_password);
    pl->conn_password = r->password ? strdup(r->password) : NULL;
    if (pl->c == NULL || pl->c->err) {
        char why[160];
        snprintf(why, sizeof why, "connect failed: %s", pl->c ? pl->c->errstr : "out of memory");
        conn_failed(pl, cfg, res, why);
        return false;
    }
    /* Replies in the arena; keep the read buffer (a pass streams MBs). */
    pl->c->reader->fn = &arena_functions;
    pl->c->reader->privdata = &pl->arena; /* the macro casts to int */
    pl->c->reader->maxbuf = 0;
    int timeout = r->timeout_ms > PLANNER_MIN_TIMEOUT_MS ? r->timeout_ms : PLANNER_MIN_TIMEOUT_MS;
    redisSetTimeout(pl->c, tv_ms(timeout));
    if (r->password != NULL) {
        const char *argv[] = {"AUTH", r->password};
        size_t lens[] = {4, strlen(r->password)};
        redisReply *rep = conn_command(pl, cfg, res, 2, argv, lens);
        if (rep == NULL)
            return false;
        if (rep->type == REDIS_REPLY_ERROR) {
            char why[160];
            snprintf(why, sizeof why, "AUTH failed: %s", rep->str);
            conn_failed(pl, cfg, res, why);
            return false;
        }
    }
    return true;
}

/*
 * Makes sure the connection is up and the plan-write script is loaded; the
 * script is loaded on every pass, not only on connect, so a SCRIPT FLUSH
 * between two passes cannot fail a pass with NOSCRIPT. A kept connection
 * may have died since the last pass (Redis restarted, an idle timeout):
 * then the first command fails, and one fresh connection is tried at once
 * before the pass gives up.
 */
static bool conn_ensure(planner_t *pl, const config_t *cfg, bool force, planner_result_t *res)
{
    if (pl->c != NULL && (pl->c->err || conn_settings_changed(pl, cfg)))
        conn_drop(pl);
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = pl->c != NULL;
        if (!reused && !conn_open(pl, cfg, force || attempt > 0, res))
            return false;
        const char *argv[] = {"SCRIPT", "LOAD", planner_script_plan_write};
        size_t lens[] = {6, 4, strlen(planner_script_plan_write)};
        redisReply *rep = conn_command(pl, cfg, res, 3, argv, lens);
        if (rep == NULL) {
            if (!reused)
                return false;
            res->error[0] = '\0'; /* a stale connection: try a fresh one */
            continue;
        }
        if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
            char why[160];
            snprintf(why, sizeof why, "SCRIPT LOAD failed: %s",
                     rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
            conn_failed(pl, cfg, res, why);
            return false;
        }
        memcpy(pl->sha_write, rep->str, 41);
        pl->backoff_ms = cfg->redis.reconnect_min_ms;
        return true;
    }
    return false;
}

static bool str_i64(const char *s, size_t len, int64_t *out);

/*
 * Which partitions have work, in one round trip (per partition: ZCOUNT of
 * the due set up to as_of, ZCARD of the cadence set, GET of the cursor), so
 * an idle pass costs one round trip instead of three per partition (lease,
 * query, release). A partition has work when members are due, or when its
 * cadence has members and the cursor is behind as_of. A member that becomes
 * due in an idle partition during the pass waits for the next pass.
 */
static bool due_partitions(planner_t *pl, const config_t *cfg, int64_t as_of,
                           bool due[SCHEDULE_PARTITIONS], planner_result_t *res)
{
    char key[KEY_MAX];
    cmdbuf_t *out = &pl->out;
    out->len = 0;
    for (int n = 0; n < SCHEDULE_PARTITIONS; n++) {
        size_t kl = key_global(key, cfg->redis.prefix, "sched", n);
        cmdbuf_begin(out, 4);
        cmdbuf_arg(out, "ZCOUNT", 6);
        cmdbuf_arg(out, key, kl);
        cmdbuf_arg(out, "-inf", 4);
        cmdbuf_arg_i64(out, as_of);
        kl = key_global(key, cfg->redis.prefix, "cadence", n);
        cmdbuf_begin(out, 2);
        cmdbuf_arg(out, "ZCARD", 5);
        cmdbuf_arg(out, key, kl);
        kl = key_global(key, cfg->redis.prefix, "cursor", n);
        cmdbuf_begin(out, 2);
        cmdbuf_arg(out, "GET", 3);
        cmdbuf_arg(out, key, kl);
    }
    arena_reset(&pl->arena);
    if (out->failed || redisAppendFormattedCommand(pl->c, out->p, out->len) != REDIS_OK) {
        out->len = 0;
        conn_failed(pl, cfg, res, "out of memory");
        return false;
    }
    out->len = 0;
    for (int n = 0; n < SCHEDULE_PARTITIONS; n++) {
        const redisReply *rep[3];
        for (int k = 0; k < 3; k++) {
            void *r = NULL;
            if (redisGetReply(pl->c, &r) != REDIS_OK || r == NULL) {
                conn_failed(pl, cfg, res, pl->c->errstr[0] ? pl->c->errstr : "no reply");
                return false;
            }
            rep[k] = r;
            if (rep[k]->type == REDIS_REPLY_ERROR)
                /* keep reading: the other replies are still on the wire */
                snprintf(res->error, sizeof res->error, "redis: %s failed: %s",
                         k == 0 ? "ZCOUNT" : k == 1 ? "ZCARD" : "GET", rep[k]->str);
        }
        bool members_due = rep[0]->type == REDIS_REPLY_INTEGER && rep[0]->integer > 0;
        bool cadence = rep[1]->type == REDIS_REPLY_INTEGER && rep[1]->integer > 0;
        int64_t cursor = 0;
        bool behind = rep[2]->type != REDIS_REPLY_STRING ||
                      !str_i64(rep[2]->str, rep[2]->len, &cursor) || cursor < as_of;
        due[n] = members_due || (cadence && behind);
    }
    arena_reset(&pl->arena);
    return res->error[0] == '\0';
}

/* ------------------------------------------------------------------ */
/* Leases                                                             */

/* 1 acquired, 0 held by another instance, -1 Redis failed. */
static int lease_acquire(planner_t *pl, const config_t *cfg, int partition,
                         planner_result_t *res)
{
    char key[KEY_MAX], ms[24];
    size_t kl = key_global(key, cfg->redis.prefix, "lease", partition);
    size_t ml = fmt_i64(ms, cfg->planner.lease_ms);
    const char *argv[] = {"SET", key, pl->instance, "NX", "PX", ms};
    size_t lens[] = {3, kl, strlen(pl->instance), 2, 2, ml};
    redisReply *r = conn_command(pl, cfg, res, 6, argv, lens);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STATUS)
        return 1;
    if (r->type == REDIS_REPLY_NIL)
        return 0;
    snprintf(res->error, sizeof res->error, "redis: lease SET failed: %s",
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    return -1;
}

static void lease_release(planner_t *pl, const config_t *cfg, int partition,
                          planner_result_t *res)
{
    if (pl->c == NULL)
        return; /* the connection is gone: the lease expires on its own */
    char key[KEY_MAX];
    size_t kl = key_global(key, cfg->redis.prefix, "lease", partition);
    const char *argv[] = {"EVAL", lease_release_script, "1", key, pl->instance};
    size_t lens[] = {4, strlen(lease_release_script), 1, kl, strlen(pl->instance)};
    (void)conn_command(pl, cfg, res, 5, argv, lens);
}

/* ------------------------------------------------------------------ */
/* One partition: chunks of due members through a pipeline           */

typedef enum group_kind { GROUP_READ, GROUP_WRITE, GROUP_RENEW } group_kind_t;

typedef struct group {
    group_kind_t kind;
    size_t first, n;     /* members [first, first + n) of the chunk */
} group_t;

/* A member joining the cadence set, for sorting the chunk's moves. */
typedef struct sched_move {
    double phase;
    uint32_t slot;
} sched_move_t;

/* How a member's plan goes out (see plan_send). */
typedef enum write_mode {
    WRITE_NONE = 0,
    WRITE_HSET,          /* HSET and EXPIRE */
    WRITE_HSET_KEEP_TTL, /* HSET alone: the stored TTL is long enough */
    WRITE_SCRIPT
} write_mode_t;

typedef struct member_slot {
    size_t id_off, len;  /* the id in part_ctx.ids */
    write_mode_t write;
    bool remove;         /* features gone: leaves the schedule */
    bool written;        /* the plan write succeeded */
    bool kept;           /* the stored plan is recent and in force: no write */
    bool failed;         /* read, but the plan could not be written */
    bool at_last;        /* cadence walk: scored like the chunk's last member */
} member_slot_t;

typedef struct part_ctx {
    planner_t *pl;
    const config_t *cfg;
    planner_result_t *res;
    int partition;
    int64_t as_of;
    size_t batch;
    size_t slice;        /* members per schedule command */
    char sched_key[KEY_MAX];      /* P sched:<n>: due now (joined, or lost the plan) */
    size_t sched_len;
    char cadence_key[KEY_MAX];    /* P cadence:<n>: member -> phase */
    size_t cadence_len;
    bool cadence;        /* walking the cadence set (else the due set) */
    char last_score[40]; /* cadence walk: the chunk's last score, as Redis wrote it */
    size_t n_at_last;    /* cadence walk: members of the chunk with that score */
    size_t removed_at_last; /* ... of which chunk_reschedule removed */
    int64_t wall_now;    /* time(NULL) at the start of the chunk: plan TTLs */
    char lease_key[KEY_MAX];
    size_t lease_len;
    char lease_ms[24];
    uint64_t lease_renewed_ms;
    bool lease_lost;
    bool broken;         /* the connection failed: stop at once */
    uint64_t offset;     /* due walk: members left due in place (failed) */
    member_slot_t *slots;
    sched_move_t *moves; /* chunk_reschedule's buffers, one entry per slot */
    uint32_t *removed;
    char *ids;           /* the chunk's member ids, back to back */
    size_t ids_cap;
    group_t fifo[PLANNER_MAX_GROUPS];
    int fifo_head, fifo_count;
    const char *channel_names[NOTIFD_MAX_CHANNELS];
    size_t channel_name_lens[NOTIFD_MAX_CHANNELS];
    uint64_t planned_since_report;
} part_ctx_t;

static const char *slot_id(const part_ctx_t *p, const member_slot_t *s)
{
    return p->ids + s->id_off;
}

static void part_broken(part_ctx_t *p, const char *what)
{
    p->broken = true;
    conn_failed(p->pl, p->cfg, p->res, what);
}

/* Hands the commands formatted in pl->out to hiredis and writes them out
 * now, so Redis works on them while this thread computes. */
static bool part_flush(part_ctx_t *p)
{
    cmdbuf_t *out = &p->pl->out;
    if (p->broken) { /* the connection is gone: drop what was formatted */
        out->len = 0;
        return false;
    }
    if (!out->failed && out->len == 0)
        return true;
    if (out->failed || redisAppendFormattedCommand(p->pl->c, out->p, out->len) != REDIS_OK) {
        part_broken(p, "out of memory");
        return false;
    }
    out->len = 0;
    int done = 0;
    do {
        if (redisBufferWrite(p->pl->c, &done) != REDIS_OK) {
            part_broken(p, p->pl->c->errstr[0] ? p->pl->c->errstr : "write failed");
            return false;
        }
    } while (!done);
    return true;
}

/* part_flush, and remembers the group so its replies are read in order. */
static void part_send(part_ctx_t *p, group_t g)
{
    if (!part_flush(p))
        return;
    p->fifo[(p->fifo_head + p->fifo_count) % PLANNER_MAX_GROUPS] = g;
    p->fifo_count++;
}

static redisReply *part_reply(part_ctx_t *p)
{
    void *r = NULL;
    if (redisGetReply(p->pl->c, &r) != REDIS_OK || r == NULL) {
        part_broken(p, p->pl->arena.failed ? "out of memory"
                       : p->pl->c->errstr[0] ? p->pl->c->errstr : "no reply");
        return NULL;
    }
    return r;
}

static void send_reads(part_ctx_t *p, size_t first, size_t n)
{
    char key[KEY_MAX];
    const char *prefix = p->cfg->redis.prefix;
    cmdbuf_t *out = &p->pl->out;
    for (size_t i = first; i < first + n; i++) {
        member_slot_t *s = &p->slots[i];
        size_t kl = key_member(key, prefix, "member", slot_id(p, s), s->len, "", 0);
        cmdbuf_begin(out, 2);
        cmdbuf_arg(out, "HGETALL", 7);
        cmdbuf_arg(out, key, kl);
        kl = key_member(key, prefix, "plan", slot_id(p, s), s->len, "", 0);
        cmdbuf_begin(out, 2);
        cmdbuf_arg(out, "HGETALL", 7);
        cmdbuf_arg(out, key, kl);
    }
    part_send(p, (group_t){.kind = GROUP_READ, .first = first, .n = n});
}

/* The lease renewal rides in the pipeline, between batches, once a third of
 * the lease time has passed since the last renewal. */
static bool maybe_send_renew(part_ctx_t *p)
{
    uint64_t now = mono_ms();
    if (now - p->lease_renewed_ms < (uint64_t)p->cfg->planner.lease_ms / 3)
        return false;
    p->lease_renewed_ms = now;
    const char *argv[] = {"EVAL", lease_renew_script, "1", p->lease_key, p->pl->instance,
                          p->lease_ms};
    size_t lens[] = {4, strlen(lease_renew_script), 1, p->lease_len,
                     strlen(p->pl->instance), strlen(p->lease_ms)};
    cmdbuf_argv(&p->pl->out, 6, argv, lens);
    part_send(p, (group_t){.kind = GROUP_RENEW});
    return true;
}

static bool str_i64(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 18)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static void member_failed(part_ctx_t *p, member_slot_t *s, const char *why)
{
    static __thread log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
    log_limited(&rl, LOG_WARN, "planner: member not planned", "member_bytes=%zu error=\"%s\"",
                s->len, why);
    p->res->failed++;
    p->offset++;
    s->failed = true;
}

static bool field_is(const redisReply *f, const char *name, size_t len)
{
    return f->len == len && memcmp(f->str, name, len) == 0;
}

/* Whether the stored plan is recent and in force (cadence_plan_current):
 * a pass keeps it rather than replan a member it just planned. */
static bool stored_plan_current(const part_ctx_t *p, const redisReply *stored)
{
    int64_t at = 0, until = 0;
    bool have_at = false, have_until = false;
    for (size_t i = 0; i + 1 < stored->elements; i += 2) {
        const redisReply *f = stored->element[i], *v = stored->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (field_is(f, "computed_at", 11))
            have_at = str_i64(v->str, v->len, &at);
        else if (field_is(f, "valid_until", 11))
            have_until = str_i64(v->str, v->len, &until);
    }
    return have_at && have_until &&
           cadence_plan_current(p->cfg->planner.interval_s, at, until, p->as_of);
}

/*
 * Reads the stored plan: its version, and whether the new plan's fields
 * cover every field it has. When they do (the usual case: same grid, our
 * own earlier write), one HSET replaces the plan atomically; when they do
 * not (a channel left the grid, or another writer added fields), the
 * plan-write script DELs and HSETs in one call so no stale field survives.
 */
static bool stored_plan_covered(const part_ctx_t *p, const redisReply *stored,
                                const plan_t *plan, int64_t *version, int64_t *expires_at)
{
    bool covered = true;
    *version = 0;
    *expires_at = 0;
    for (size_t i = 0; i + 1 < stored->elements; i += 2) {
        const redisReply *f = stored->element[i], *v = stored->element[i + 1];
        if (f->type != REDIS_REPLY_STRING)
            continue;
        if (field_is(f, "version", 7)) {
            if (v->type != REDIS_REPLY_STRING || !str_i64(v->str, v->len, version))
                covered = false; /* not ours: let the script sort it out */
            continue;
        }
        if (field_is(f, "expires_at", 10)) {
            if (v->type != REDIS_REPLY_STRING || !str_i64(v->str, v->len, expires_at))
                *expires_at = 0; /* unreadable: set the TTL again */
            continue;
        }
        if (field_is(f, "action", 6) || field_is(f, "computed_at", 11) ||
            field_is(f, "valid_until", 11) || field_is(f, "source", 6) ||
            (plan->arm[0] != '\0' && field_is(f, "arm", 3)))
            continue;
        bool planned_channel = false;
        if (f->len > 9 && memcmp(f->str + f->len - 9, "_per_week", 9) == 0)
            for (int c = 0; c < p->cfg->n_channels && !planned_channel; c++)
                planned_channel = plan_has_channel(plan, c) &&
                                  p->channel_name_lens[c] == f->len - 9 &&
                                  memcmp(f->str, p->channel_names[c], f->len - 9) == 0;
        if (!planned_channel)
            covered = false;
    }
    return covered;
}

/* Plans one member from its two read replies and formats the write. */
static void plan_one(part_ctx_t *p, member_slot_t *s, const redisReply *feat,
                     const redisReply *stored)
{
    const config_t *cfg = p->cfg;
    const char *id = slot_id(p, s);
    if (feat->type != REDIS_REPLY_ARRAY || stored->type != REDIS_REPLY_ARRAY) {
        const redisReply *bad = feat->type != REDIS_REPLY_ARRAY ? feat : stored;
        member_failed(p, s, bad->type == REDIS_REPLY_ERROR ? bad->str
                                                           : "member or plan key is not a hash");
        return;
    }
    if (feat->elements == 0) {
        s->remove = true; /* the feature hash expired: nothing to plan from */
        return;
    }
    if (stored_plan_current(p, stored)) {
        s->kept = true;
        p->res->kept++;
        return;
    }
    const char *f[PLANNER_MAX_PAIRS], *v[PLANNER_MAX_PAIRS];
    size_t fl[PLANNER_MAX_PAIRS], vl[PLANNER_MAX_PAIRS];
    size_t n = 0;
    for (size_t i = 0; i + 1 < feat->elements && n < PLANNER_MAX_PAIRS; i += 2) {
        const redisReply *a = feat->element[i], *b = feat->element[i + 1];
        if (a->type != REDIS_REPLY_STRING || b->type != REDIS_REPLY_STRING)
            continue;
        f[n] = a->str;
        fl[n] = a->len;
        v[n] = b->str;
        vl[n] = b->len;
        n++;
    }
    member_features_t mf;
    features_init(&mf);
    features_parse_hash(&mf, p->channel_names, cfg->n_channels, f, fl, v, vl, n);
    /* The member's slow experiment arm, or the base parameters (control). */
    const char *arm_name = "control";
    const slow_config_t *slow = policy_slow_for(&cfg->policy, id, s->len, NULL, &arm_name);
    plan_t plan;
    memset(&plan, 0, sizeof plan);
    if (slow_plan_member(&slow->weights, &slow->priors, &slow->grid, &mf, p->as_of,
                         cfg->policy.half_life_s, &plan) < 0) {
        member_failed(p, s, "the action grid is empty");
        return;
    }
    snprintf(plan.arm, sizeof plan.arm, "%s", arm_name);
    int64_t old = 0, expires_at = 0;
    bool covered = stored_plan_covered(p, stored, &plan, &old, &expires_at);
    plan.version = old + 1;
    plan.computed_at = p->as_of;
    plan.valid_until = planner_valid_until(cfg, id, s->len, p->as_of);
    /* The TTL is set ahead (PLANNER_TTL_AHEAD), so most writes find it
     * long enough and leave it: an EXPIRE per member was 6% of Redis's
     * time in a pass. The script path always sets it. */
    bool keep_ttl = covered && planner_ttl_long_enough(cfg, expires_at, plan.computed_at,
                                                       plan.valid_until, p->wall_now);
    int64_t ttl = planner_plan_ttl_set_s(cfg, plan.computed_at, plan.valid_until);

    char key[KEY_MAX];
    size_t kl = key_member(key, cfg->redis.prefix, "plan", id, s->len, "", 0);
    planner_write_args_t wa;
    planner_write_args_build(&wa, cfg, key, kl, &plan, ttl, keep_ttl ? 0 : p->wall_now + ttl);
    cmdbuf_t *out = &p->pl->out;
    if (covered) {
        /* HSET key version v <fields>, then the TTL. wa: key, version, ttl,
         * field/value pairs. */
        cmdbuf_begin(out, 2 + 2 + (wa.argc - 3));
        cmdbuf_arg(out, "HSET", 4);
        cmdbuf_arg(out, wa.argv[0], wa.lens[0]);
        cmdbuf_arg(out, "version", 7);
        cmdbuf_arg(out, wa.argv[1], wa.lens[1]);
        for (int i = 3; i < wa.argc; i++)
            cmdbuf_arg(out, wa.argv[i], wa.lens[i]);
        s->write = WRITE_HSET_KEEP_TTL;
        if (!keep_ttl) {
            cmdbuf_begin(out, 3);
            cmdbuf_arg(out, "EXPIRE", 6);
            cmdbuf_arg(out, key, kl);
            cmdbuf_arg_i64(out, ttl);
            s->write = WRITE_HSET;
        }
    } else {
        cmdbuf_begin(out, 3 + wa.argc);
        cmdbuf_arg(out, "EVALSHA", 7);
        cmdbuf_arg(out, p->pl->sha_write, 40);
        cmdbuf_arg(out, "1", 1);
        for (int i = 0; i < wa.argc; i++)
            cmdbuf_arg(out, wa.argv[i], wa.lens[i]);
        s->write = WRITE_SCRIPT;
    }
}

static void on_read_group(part_ctx_t *p, const group_t *g)
{
    for (size_t i = g->first; i < g->first + g->n; i++) {
        redisReply *feat = part_reply(p);
        if (feat == NULL)
            return;
        redisReply *stored = part_reply(p);
        if (stored == NULL)
            return;
        plan_one(p, &p->slots[i], feat, stored);
    }
    arena_reset(&p->pl->arena);
    part_send(p, (group_t){.kind = GROUP_WRITE, .first = g->first, .n = g->n});
}

static void on_write_group(part_ctx_t *p, const group_t *g)
{
    uint64_t ok = 0;
    for (size_t i = g->first; i < g->first + g->n; i++) {
        member_slot_t *s = &p->slots[i];
        if (s->write == WRITE_NONE)
            continue;
        redisReply *r = part_reply(p);
        if (r == NULL)
            return;
        const redisReply *bad = r->type == REDIS_REPLY_INTEGER ? NULL : r;
        if (s->write == WRITE_HSET) {
            redisReply *e = part_reply(p); /* EXPIRE */
            if (e == NULL)
                return;
            if (bad == NULL && e->type != REDIS_REPLY_INTEGER)
                bad = e;
        }
        if (bad == NULL) {
            s->written = true;
            ok++;
        } else {
            member_failed(p, s, bad->type == REDIS_REPLY_ERROR ? bad->str : "unexpected reply");
        }
    }
    arena_reset(&p->pl->arena);
    p->res->planned += ok;
    p->planned_since_report += ok;
}

static void on_renew_group(part_ctx_t *p)
{
    redisReply *r = part_reply(p);
    if (r == NULL)
        return;
    if (!(r->type == REDIS_REPLY_INTEGER && r->integer == 1)) {
        p->lease_lost = true;
        log_warn("planner: lease lost, leaving the partition", "partition=%d", p->partition);
    }
    arena_reset(&p->pl->arena);
}

static void fifo_pop(part_ctx_t *p, group_t *out)
{
    *out = p->fifo[p->fifo_head];
    p->fifo_head = (p->fifo_head + 1) % PLANNER_MAX_GROUPS;
    p->fifo_count--;
}

/* planner.max_members_per_s: hold the pass back to that average rate, so an
 * operator can bound what a pass takes from Redis's single thread (and so
 * from the fast path's latency). Sleeps in slices so stop stays prompt. */
static void pace(part_ctx_t *p, size_t n)
{
    planner_t *pl = p->pl;
    pl->pass_members += n;
    int rate = p->cfg->planner.max_members_per_s;
    if (rate <= 0)
        return;
    double target = pl->pass_t0 + (double)pl->pass_members / rate;
    for (double now = mono_s(); now < target && !stopping(pl); now = mono_s()) {
        double wait = target - now < 0.1 ? target - now : 0.1;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(wait * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static void report_progress(part_ctx_t *p)
{
    if (p->planned_since_report > 0) {
        metrics_planner_member_planned(p->pl->app->metrics, p->planned_since_report);
        p->planned_since_report = 0;
    }
}

static int move_cmp(const void *a, const void *b)
{
    const sched_move_t *x = a, *y = b;
    if (x->phase != y->phase)
        return x->phase < y->phase ? -1 : 1;
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

static size_t slice_len(const part_ctx_t *p, size_t total, size_t first)
{
    return total - first < p->slice ? total - first : p->slice;
}

static void yield_to_fast_path(part_ctx_t *p);

/* What a schedule command puts before each member id. */
typedef enum slice_score { SCORE_NONE, SCORE_PHASE, SCORE_AS_OF } slice_score_t;

/* `cmd key [opt] ([score] member)...` over the given slots, in slices of at
 * most p->slice members, formatted into pl->out. `moves` (phases computed)
 * or `slots` (indexes into p->slots) lists the members. */
static void format_slices(part_ctx_t *p, const char *cmd, const char *key, size_t key_len,
                          const char *opt, slice_score_t score, const sched_move_t *moves,
                          const uint32_t *slots, size_t total)
{
    cmdbuf_t *out = &p->pl->out;
    for (size_t first = 0; first < total; first += p->slice) {
        size_t n = slice_len(p, total, first);
        cmdbuf_begin(out, (int)(2 + (opt != NULL) + n * (score == SCORE_NONE ? 1 : 2)));
        cmdbuf_arg(out, cmd, strlen(cmd));
        cmdbuf_arg(out, key, key_len);
        if (opt != NULL)
            cmdbuf_arg(out, opt, strlen(opt));
        for (size_t i = first; i < first + n; i++) {
            const member_slot_t *s = &p->slots[moves != NULL ? moves[i].slot : slots[i]];
            if (score == SCORE_PHASE) {
                char num[32];
                int l = snprintf(num, sizeof num, "%.17g", moves[i].phase);
                cmdbuf_arg(out, num, (size_t)l);
            } else if (score == SCORE_AS_OF) {
                cmdbuf_arg_i64(out, p->as_of);
            }
            cmdbuf_arg(out, slot_id(p, s), s->len);
        }
        /* Out slice by slice, giving way to the fast path in between: a
         * chunk's schedule changes are milliseconds of Redis time. */
        if (!part_flush(p))
            return;
        yield_to_fast_path(p);
    }
}

/* Reads the replies of format_slices(total); false when the connection
 * failed. An error reply is logged; with `step_over`, its members are
 * still in the due set and the due walk's offset steps over them. */
static bool slice_replies(part_ctx_t *p, size_t total, bool step_over)
{
    for (size_t first = 0; first < total; first += p->slice) {
        redisReply *r = part_reply(p);
        if (r == NULL)
            return false;
        if (r->type == REDIS_REPLY_ERROR) {
            static __thread log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
            log_limited(&rl, LOG_WARN, "planner: schedule update failed", "error=\"%s\"", r->str);
            if (step_over)
                p->offset += slice_len(p, total, first);
        }
    }
    return true;
}

/*
 * Once every plan write of the chunk is answered, the schedule follows:
 *  - due walk: members planned (or kept) leave the due set and join the
 *    cadence set at their phase (a plain ZADD: the phase is a function of
 *    the id, so re-adding is a no-op, and a score from elsewhere is
 *    corrected); a member whose write failed stays due;
 *  - cadence walk: nothing moves, which is the point (cadence.h); a member
 *    whose write failed is added to the due set (ZADD NX) so the next pass
 *    tries again;
 *  - both: members whose features are gone leave both sets.
 * Joins go out sorted by phase: the cadence set's skiplist is the largest
 * cold structure a pass touches, and inserts in order walk neighbouring
 * nodes while they are in cache. Slices keep each command short (a few
 * hundred microseconds of Redis time), so the fast path is not held up
 * behind one long command.
 */
static void chunk_reschedule(part_ctx_t *p, size_t n)
{
    size_t n_moves = 0, n_removed = 0, n_retry = 0;
    uint32_t *retry = (uint32_t *)p->moves; /* the cadence walk has no moves */
    for (size_t i = 0; i < n; i++) {
        const member_slot_t *s = &p->slots[i];
        if (s->remove) {
            p->removed[n_removed++] = (uint32_t)i;
            p->removed_at_last += s->at_last;
        }
        else if (!p->cadence && (s->written || s->kept))
            p->moves[n_moves++] =
                (sched_move_t){.phase = cadence_phase(slot_id(p, s), s->len), .slot = (uint32_t)i};
        else if (p->cadence && s->failed)
            retry[n_retry++] = (uint32_t)i;
    }
    if (n_moves + n_removed + n_retry == 0)
        return;
    qsort(p->moves, n_moves, sizeof *p->moves, move_cmp);
    format_slices(p, "ZADD", p->cadence_key, p->cadence_len, NULL, SCORE_PHASE, p->moves, NULL,
                  n_moves);
    format_slices(p, "ZREM", p->sched_key, p->sched_len, NULL, SCORE_NONE, p->moves, NULL,
                  n_moves);
    format_slices(p, "ZREM", p->sched_key, p->sched_len, NULL, SCORE_NONE, NULL, p->removed,
                  n_removed);
    format_slices(p, "ZREM", p->cadence_key, p->cadence_len, NULL, SCORE_NONE, NULL, p->removed,
                  n_removed);
    format_slices(p, "ZADD", p->sched_key, p->sched_len, "NX", SCORE_AS_OF, NULL, retry, n_retry);
    bool due_walk = !p->cadence;
    if (part_flush(p) && slice_replies(p, n_moves, false) &&
        slice_replies(p, n_moves, due_walk) && slice_replies(p, n_removed, due_walk) &&
        slice_replies(p, n_removed, false) && slice_replies(p, n_retry, false))
        p->res->removed += n_removed;
    arena_reset(&p->pl->arena);
}

/*
 * The fast path first. Redis serves clients in turn, and in each turn works
 * through everything a client has sent: a decide that reaches Redis while
 * planner batches are queued waits for them. So while this instance's fast
 * path has commands in flight, the next batch is held back (checked every
 * PLANNER_YIELD_STEP_US, for at most PLANNER_YIELD_MAX_US, so a busy fast
 * path slows a pass down but never stops it). Other instances' decides
 * are not seen; their own planners hold back for them.
 */
#define PLANNER_YIELD_STEP_US 20
#define PLANNER_YIELD_MAX_US 2000
static void yield_to_fast_path(part_ctx_t *p)
{
    const store_t *st = p->pl->app->store;
    if (st == NULL || store_waiting(st) <= 0)
        return;
    uint64_t t0 = mono_ms() * 1000;
    struct timespec step = {.tv_sec = 0, .tv_nsec = PLANNER_YIELD_STEP_US * 1000L};
    for (int i = 0; i < PLANNER_YIELD_MAX_US / PLANNER_YIELD_STEP_US; i++) {
        nanosleep(&step, NULL);
        if (store_waiting(st) <= 0 || mono_ms() * 1000 - t0 >= PLANNER_YIELD_MAX_US)
            break;
    }
}

/* Runs the pipeline over one chunk of `n` members (see the top comment). */
static void chunk_run(part_ctx_t *p, size_t n)
{
    size_t n_batches = (n + p->batch - 1) / p->batch;
    size_t next = 0;
    /* Two batches of reads in flight before the first computation. */
    for (; next < n_batches && next < 2 && !p->broken; next++) {
        size_t first = next * p->batch;
        send_reads(p, first, first + p->batch <= n ? p->batch : n - first);
    }
    while (p->fifo_count > 0 && !p->broken) {
        group_t g;
        fifo_pop(p, &g);
        switch (g.kind) {
        case GROUP_READ:
            on_read_group(p, &g);
            report_progress(p);
            pace(p, g.n);
            /* Stop and a lost lease take effect here, between batches:
             * batches never read simply stay due. */
            if (next < n_batches && !p->broken && !p->lease_lost && !stopping(p->pl)) {
                yield_to_fast_path(p);
                maybe_send_renew(p);
                size_t first = next * p->batch;
                if (!p->broken)
                    send_reads(p, first, first + p->batch <= n ? p->batch : n - first);
                next++;
            }
            break;
        case GROUP_WRITE:
            on_write_group(p, &g);
            break;
        case GROUP_RENEW:
            on_renew_group(p);
            break;
        }
    }
    if (!p->broken)
        chunk_reschedule(p, n);
    report_progress(p);
}

/* Copies the ids of a ZRANGEBYSCORE reply (WITHSCORES in the cadence walk)
 * into the chunk; returns how many members the chunk has. */
static size_t chunk_load(part_ctx_t *p, const redisReply *r)
{
    size_t step = p->cadence ? 2 : 1;
    size_t total = 0;
    for (size_t i = 0; i < r->elements; i += step)
        total += r->element[i]->len + 1;
    if (total > p->ids_cap) {
        char *ids = realloc(p->ids, total);
        if (ids == NULL)
            return 0;
        p->ids = ids;
        p->ids_cap = total;
    }
    const redisReply *last = NULL;
    p->n_at_last = 0;
    p->removed_at_last = 0;
    if (p->cadence && r->elements >= 2) {
        last = r->element[r->elements - 1];
        if (last->type != REDIS_REPLY_STRING || last->len >= sizeof p->last_score)
            last = NULL;
        else
            snprintf(p->last_score, sizeof p->last_score, "%.*s", (int)last->len, last->str);
    }
    size_t n = 0, off = 0;
    for (size_t i = 0; i + step - 1 < r->elements; i += step) {
        const redisReply *e = r->element[i];
        bool at_last = last != NULL && r->element[i + 1]->len == last->len &&
                       memcmp(r->element[i + 1]->str, last->str, last->len) == 0;
        p->n_at_last += at_last;
        if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > MEMBER_ID_MAX) {
            p->offset++; /* not a member id notifd wrote; step over it */
            continue;
        }
        memcpy(p->ids + off, e->str, e->len);
        p->ids[off + e->len] = '\0';
        p->slots[n] = (member_slot_t){.id_off = off, .len = e->len, .at_last = at_last};
        off += e->len + 1;
        n++;
    }
    return n;
}

static void part_free(part_ctx_t *p)
{
    free(p->slots);
    free(p->moves);
    free(p->removed);
    free(p->ids);
}

/* Renews the lease when it is time, between chunks (the pipeline is empty,
 * so the reply is read at once); false when the partition must stop. */
static bool renew_between_chunks(part_ctx_t *p)
{
    if (stopping(p->pl)) {
        p->res->aborted = true;
        return false;
    }
    if (maybe_send_renew(p)) {
        if (p->broken)
            return false;
        group_t g;
        fifo_pop(p, &g);
        on_renew_group(p);
    }
    return !p->broken && !p->lease_lost;
}

/* One chunk query (ZRANGEBYSCORE key min max [WITHSCORES] LIMIT off count)
 * and its chunk; the number of members the query returned, or -1 to stop. */
static long chunk_next(part_ctx_t *p, const char *key, size_t key_len, const char *min,
                       const char *max, uint64_t offset, size_t chunk)
{
    char off[24], cnt[24];
    size_t offl = fmt_i64(off, (int64_t)offset), cntl = fmt_i64(cnt, (int64_t)chunk);
    const char *argv[] = {"ZRANGEBYSCORE", key, min, max, "WITHSCORES", "LIMIT", off, cnt};
    size_t lens[] = {13, key_len, strlen(min), strlen(max), 10, 5, offl, cntl};
    int argc = 8;
    if (!p->cadence) { /* no WITHSCORES */
        argv[4] = "LIMIT", lens[4] = 5;
        argv[5] = off, lens[5] = offl;
        argv[6] = cnt, lens[6] = cntl;
        argc = 7;
    }
    planner_result_t *res = p->res;
    redisReply *r = conn_command(p->pl, p->cfg, res, argc, argv, lens);
    if (r == NULL) {
        p->broken = true;
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        snprintf(res->error, sizeof res->error, "redis: ZRANGEBYSCORE failed: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return -1;
    }
    size_t got = p->cadence ? r->elements / 2 : r->elements;
    size_t n = chunk_load(p, r);
    arena_reset(&p->pl->arena);
    if (n == 0 && got > 0 && p->ids_cap == 0) {
        snprintf(res->error, sizeof res->error, "out of memory");
        return -1;
    }
    p->wall_now = (int64_t)time(NULL);
    if (n > 0)
        chunk_run(p, n);
    return (long)got;
}

/* The due walk: members that joined or lost their plan, up to as_of. Those
 * planned leave the range, so each query starts at the members left due in
 * place (p->offset). */
static void due_walk(part_ctx_t *p, size_t chunk)
{
    char max[24];
    fmt_i64(max, p->as_of);
    p->cadence = false;
    while (renew_between_chunks(p)) {
        long got = chunk_next(p, p->sched_key, p->sched_len, "-inf", max, p->offset, chunk);
        if (got < (long)chunk)
            break;
    }
}

/* The cadence walk over one range of phases. Nothing leaves the range (but
 * removed members), so each query continues after the previous chunk's
 * last member: from its score, skipping the members of the chunk with that
 * score. Returns true when the range was walked to its end. */
static bool cadence_walk(part_ctx_t *p, const cadence_range_t *range, size_t chunk)
{
    _Static_assert(sizeof range->min == sizeof p->last_score, "one bound size");
    char min[sizeof p->last_score];
    memcpy(min, range->min, sizeof min);
    uint64_t skip = 0;
    p->cadence = true;
    while (renew_between_chunks(p)) {
        long got = chunk_next(p, p->cadence_key, p->cadence_len, min, range->max, skip, chunk);
        if (got < 0)
            return false;
        if (got < (long)chunk)
            return !p->broken && !p->lease_lost;
        /* Removed members no longer count in the skip. */
        size_t gone = p->removed_at_last;
        size_t at_last = p->n_at_last - (gone < p->n_at_last ? gone : p->n_at_last);
        if (strcmp(min, p->last_score) == 0) {
            if (at_last == 0) { /* nothing moved on: do not loop */
                snprintf(p->res->error, sizeof p->res->error,
                         "planner: the cadence walk of partition %d did not advance",
                         p->partition);
                return false;
            }
            skip += at_last;
        } else {
            memcpy(min, p->last_score, sizeof min);
            skip = at_last;
        }
    }
    return false;
}

/* The partition's cursor: the as_of its cadence was last walked to. */
static bool cursor_get(part_ctx_t *p, const char *key, size_t kl, bool *have, int64_t *cursor)
{
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, kl};
    redisReply *r = conn_command(p->pl, p->cfg, p->res, 2, argv, lens);
    *have = false;
    if (r == NULL) {
        p->broken = true;
        return false;
    }
    if (r->type == REDIS_REPLY_STRING) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.*s", (int)(r->len < 31 ? r->len : 31), r->str);
        char *end = NULL;
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        *have = errno == 0 && end != buf && *end == '\0';
        *cursor = v;
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(p->res->error, sizeof p->res->error, "redis: cursor GET failed: %s", r->str);
        return false;
    }
    return true;
}

/* Moves the cursor to as_of; it outlives two intervals without a pass (by
 * then the next window is the whole cadence anyway). */
static void cursor_set(part_ctx_t *p, const char *key, size_t kl)
{
    char v[24], ex[24];
    size_t vl = fmt_i64(v, p->as_of), exl = fmt_i64(ex, 2 * p->cfg->planner.interval_s);
    const char *argv[] = {"SET", key, v, "EX", ex};
    size_t lens[] = {3, kl, vl, 2, exl};
    redisReply *r = conn_command(p->pl, p->cfg, p->res, 5, argv, lens);
    if (r == NULL)
        p->broken = true;
    else if (r->type == REDIS_REPLY_ERROR)
        snprintf(p->res->error, sizeof p->res->error, "redis: cursor SET failed: %s", r->str);
}

static void partition_run(planner_t *pl, const config_t *cfg, int partition, int64_t as_of,
                          planner_result_t *res)
{
    part_ctx_t p;
    memset(&p, 0, sizeof p);
    p.pl = pl;
    p.cfg = cfg;
    p.res = res;
    p.partition = partition;
    p.as_of = as_of;
    p.batch = (size_t)cfg->planner.batch_size;
    /* The commands the pass sends scale with batch_size, so that one knob
     * bounds how long Redis works on the planner before it serves anyone
     * else: batch reads, schedule slices. (A chunk query of 4096 members
     * is ~0.6 ms of Redis, once per chunk.) */
    p.slice = p.batch < PLANNER_SCHED_SLICE_MAX ? p.batch : PLANNER_SCHED_SLICE_MAX;
    p.sched_len = key_global(p.sched_key, cfg->redis.prefix, "sched", partition);
    p.cadence_len = key_global(p.cadence_key, cfg->redis.prefix, "cadence", partition);
    p.lease_len = key_global(p.lease_key, cfg->redis.prefix, "lease", partition);
    fmt_i64(p.lease_ms, cfg->planner.lease_ms);
    p.lease_renewed_ms = mono_ms();
    for (int c = 0; c < cfg->n_channels; c++) {
        p.channel_names[c] = cfg->channels[c];
        p.channel_name_lens[c] = strlen(cfg->channels[c]);
    }
    size_t chunk = p.batch * PLANNER_BATCHES_PER_CHUNK;
    if (chunk < PLANNER_CHUNK_MIN)
        chunk = PLANNER_CHUNK_MIN;
    p.slots = calloc(chunk, sizeof *p.slots);
    p.moves = calloc(chunk, sizeof *p.moves);
    p.removed = calloc(chunk, sizeof *p.removed);
    if (p.slots == NULL || p.moves == NULL || p.removed == NULL) {
        snprintf(res->error, sizeof res->error, "out of memory");
        part_free(&p);
        return;
    }
    /* The cadence first: members that join it in the due walk below are
     * then not read twice in one pass. */
    char cursor_key[KEY_MAX];
    size_t cursor_len = key_global(cursor_key, cfg->redis.prefix, "cursor", partition);
    bool have_cursor = false;
    int64_t cursor = 0;
    if (cursor_get(&p, cursor_key, cursor_len, &have_cursor, &cursor)) {
        cadence_range_t ranges[2];
        int n_ranges = cadence_window(have_cursor, cursor, as_of, cfg->planner.interval_s, ranges);
        /* Half-size chunks here: a query WITHSCORES costs Redis about
         * twice as much per member, and one command should stay well
         * under a millisecond of Redis time; the cadence walk has no
         * sorted moves that would want larger chunks. */
        size_t cadence_chunk = chunk / 2;
        bool walked = true;
        for (int i = 0; i < n_ranges && walked; i++)
            walked = cadence_walk(&p, &ranges[i], cadence_chunk);
        /* Only a whole window moves the cursor: an interrupted walk is
         * walked again, and what it already planned is kept. */
        if (n_ranges > 0 && walked && res->error[0] == '\0' && !stopping(pl))
            cursor_set(&p, cursor_key, cursor_len);
    }
    if (!p.broken && !p.lease_lost && res->error[0] == '\0')
        due_walk(&p, chunk);
    if (stopping(pl) && !p.broken)
        res->aborted = true;
    part_free(&p);
}

/* ------------------------------------------------------------------ */
/* A pass                                                             */

static void pass_run(planner_t *pl, const config_t *cfg, int64_t as_of, const char *trigger,
                     bool force_connect, planner_result_t *res)
{
    memset(res, 0, sizeof *res);
    double t0 = mono_s();
    pl->pass_t0 = t0;
    pl->pass_members = 0;
    void *metrics = pl->app->metrics;
    metrics_planner_pass_started(metrics);
    bool due[SCHEDULE_PARTITIONS];
    if (conn_ensure(pl, cfg, force_connect, res) && due_partitions(pl, cfg, as_of, due, res)) {
        int start = (int)(pl->instance_hash % SCHEDULE_PARTITIONS);
        for (int i = 0; i < SCHEDULE_PARTITIONS; i++) {
            if (stopping(pl)) {
                res->aborted = true;
                break;
            }
            int n = (start + i) % SCHEDULE_PARTITIONS;
            if (!due[n])
                continue;
            int got = lease_acquire(pl, cfg, n, res);
            if (got < 0)
                break;
            if (got == 0) {
                res->partitions_skipped++;
                continue;
            }
            partition_run(pl, cfg, n, as_of, res);
            lease_release(pl, cfg, n, res);
            res->partitions_done++;
            if (res->error[0] != '\0' || res->aborted)
                break;
        }
    }
    res->seconds = mono_s() - t0;
    metrics_planner_pass_finished(metrics, res->seconds, res->planned, res->failed);
    double rate = res->seconds > 0 ? (double)res->planned / res->seconds : 0.0;
    log_write(res->error[0] ? LOG_WARN : LOG_INFO, "planner pass",
              "trigger=%s as_of=%lld planned=%llu kept=%llu failed=%llu removed=%llu "
              "partitions=%d "
              "skipped=%d seconds=%.3f members_per_s=%.0f%s%s%s%s",
              trigger, (long long)as_of, (unsigned long long)res->planned,
              (unsigned long long)res->kept, (unsigned long long)res->failed, (unsigned long long)res->removed,
              res->partitions_done, res->partitions_skipped, res->seconds, rate,
              res->aborted ? " aborted=1" : "", res->error[0] ? " error=\"" : "", res->error,
              res->error[0] ? "\"" : "");
}

/* ------------------------------------------------------------------ */
/* The thread                                                         */

static void post_done(planner_t *pl, pass_req_t *req)
{
    pthread_mutex_lock(&pl->mu);
    req->next = NULL;
    if (pl->done_tail)
        pl->done_tail->next = req;
    else
        pl->done_head = req;
    pl->done_tail = req;
    pthread_mutex_unlock(&pl->mu);
    uv_async_send(&pl->async);
}

/*
 * The worker runs planner.nice steps below the rest of notifd. A pass is
 * background work: where the fast path (or anything else on the host)
 * wants a CPU, the pass is what should wait. On a quiet host this costs the
 * pass nothing; on the 2-core benchmark machine it kept the fast path's p50
 * where it was during a pass, which slowed down instead (docs/planner.md).
 * Applied at the start of every pass so a reload takes effect; raising the
 * value needs no privilege, lowering it again may be refused (logged).
 */
static void apply_nice(planner_t *pl, const config_t *cfg)
{
    if (cfg->planner.nice == pl->nice_applied)
        return;
    pl->nice_applied = cfg->planner.nice;
    int target = pl->base_nice + cfg->planner.nice;
    if (target > 19)
        target = 19;
    /* On Linux a thread id names one thread for setpriority. */
    id_t tid = (id_t)syscall(SYS_gettid);
    if (setpriority(PRIO_PROCESS, tid, target) != 0)
        log_warn("planner: cannot set the worker's nice value", "nice=%d error=\"%s\"", target,
                 strerror(errno));
}

static void *planner_main(void *arg)
{
    planner_t *pl = arg;
    prctl(PR_SET_NAME, "notifd-planner"); /* top -H, /proc/<pid>/task/<tid>/comm */
    /* yield_to_fast_path sleeps in 20 us steps: the default 50 us timer
     * slack would stretch each one several times over. */
    prctl(PR_SET_TIMERSLACK, 1000UL);
    errno = 0;
    pl->base_nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    if (errno != 0)
        pl->base_nice = 0;
    pl->nice_applied = -1;
    pl->next_timer_ms = 0; /* a pass at start */
    for (;;) {
        pass_req_t *req = NULL;
        pthread_mutex_lock(&pl->mu);
        for (;;) {
            if (stopping(pl))
                break;
            if (pl->waiting_head != NULL) {
                req = pl->waiting_head;
                pl->waiting_head = req->next;
                if (pl->waiting_head == NULL)
                    pl->waiting_tail = NULL;
                break;
            }
            uint64_t now = mono_ms();
            if (now >= pl->next_timer_ms)
                break;
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            uint64_t wait = pl->next_timer_ms - now;
            until.tv_sec += (time_t)(wait / 1000);
            until.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&pl->cond, &pl->mu, &until);
        }
        pthread_mutex_unlock(&pl->mu);
        if (stopping(pl)) {
            if (req != NULL) {
                req->result.aborted = true;
                post_done(pl, req);
            }
            break;
        }
        config_t *cfg = app_config_acquire(pl->app);
        apply_nice(pl, cfg);
        if (req != NULL) {
            pass_run(pl, cfg, req->as_of, "request", true, &req->result);
            post_done(pl, req);
        } else {
            planner_result_t res;
            uint64_t next = (uint64_t)cfg->planner.poll_s * 1000u;
            if (cfg->planner.enabled) {
                pass_run(pl, cfg, (int64_t)time(NULL), "timer", false, &res);
                /* After a Redis failure, retry on the reconnect backoff
                 * rather than a whole poll period later. */
                if (res.error[0] != '\0' && pl->next_connect_ms > mono_ms() &&
                    pl->next_connect_ms - mono_ms() < next)
                    next = pl->next_connect_ms - mono_ms();
            }
            pl->next_timer_ms = mono_ms() + next;
        }
        config_release(cfg);
    }
    /* Answer whatever still waits: the loop is stopping. */
    pthread_mutex_lock(&pl->mu);
    pass_req_t *rest = pl->waiting_head;
    pl->waiting_head = pl->waiting_tail = NULL;
    pthread_mutex_unlock(&pl->mu);
    while (rest != NULL) {
        pass_req_t *next = rest->next;
        memset(&rest->result, 0, sizeof rest->result);
        rest->result.aborted = true;
        post_done(pl, rest);
        rest = next;
    }
    conn_drop(pl);
    arena_free(&pl->arena);
    free(pl->out.p);
    pl->out = (cmdbuf_t){0};
    free(pl->conn_password);
    pl->conn_password = NULL;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Loop-thread side                                                   */

static void run_done(planner_t *pl)
{
    pthread_mutex_lock(&pl->mu);
    pass_req_t *list = pl->done_head;
    pl->done_head = pl->done_tail = NULL;
    pthread_mutex_unlock(&pl->mu);
    while (list != NULL) {
        pass_req_t *next = list->next;
        if (list->fn != NULL)
            list->fn(&list->result, list->arg);
        free(list);
        list = next;
    }
}

static void on_async(uv_async_t *h) { run_done(h->data); }

static void set_stop(planner_t *pl)
{
    pthread_mutex_lock(&pl->mu);
    atomic_store(&pl->stop, true);
    pthread_cond_broadcast(&pl->cond);
    pthread_mutex_unlock(&pl->mu);
}

/* SIGTERM sets app->stopping long before policy_stop runs (the daemon first
 * drains requests, and a planner_run waiting for its pass is one). Stopping
 * the pass as soon as the daemon stops lets that request be answered, and
 * the drain finish, without waiting for a long pass. */
static void on_watch(uv_timer_t *t)
{
    planner_t *pl = t->data;
    if (pl->app->stopping && !stopping(pl)) {
        log_info("planner: stopping the running pass", "%s", "");
        set_stop(pl);
    }
}

static void make_instance_id(planner_t *pl)
{
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = hash_mix64((uint64_t)uv_hrtime() ^ ((uint64_t)getpid() << 32));
    snprintf(pl->instance, sizeof pl->instance, "%.60s:%d:%016llx", host, (int)getpid(),
             (unsigned long long)rnd);
    pl->instance_hash = hash_bytes(0, pl->instance, strlen(pl->instance));
}

planner_t *planner_start(app_t *app)
{
    planner_t *pl = calloc(1, sizeof *pl);
    if (pl == NULL)
        return NULL;
    pl->app = app;
    atomic_init(&pl->stop, false);
    make_instance_id(pl);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pl->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&pl->mu, NULL);
    if (uv_async_init(app->loop, &pl->async, on_async) != 0) {
        pthread_cond_destroy(&pl->cond);
        pthread_mutex_destroy(&pl->mu);
        free(pl);
        return NULL;
    }
    pl->async.data = pl;
    uv_timer_init(app->loop, &pl->watch);
    pl->watch.data = pl;
    pl->handles_open = 2;
    uv_timer_start(&pl->watch, on_watch, 100, 100);
    /* Neither handle may keep the loop alive on its own at shutdown. */
    uv_unref((uv_handle_t *)&pl->async);
    uv_unref((uv_handle_t *)&pl->watch);
    if (pthread_create(&pl->thread, NULL, planner_main, pl) != 0) {
        log_error("planner: cannot start the worker thread", "%s", "");
        planner_stop(pl);
        return NULL;
    }
    pl->thread_started = true;
    log_info("planner started", "instance=%s", pl->instance);
    return pl;
}

int planner_request_pass(planner_t *pl, int64_t as_of, planner_done_fn fn, void *arg)
{
    if (pl == NULL || stopping(pl) || !pl->thread_started)
        return -1;
    pass_req_t *req = calloc(1, sizeof *req);
    if (req == NULL)
        return -1;
    req->as_of = as_of;
    req->fn = fn;
    req->arg = arg;
    pthread_mutex_lock(&pl->mu);
    if (pl->waiting_tail)
        pl->waiting_tail->next = req;
    else
        pl->waiting_head = req;
    pl->waiting_tail = req;
    pthread_cond_broadcast(&pl->cond);
    pthread_mutex_unlock(&pl->mu);
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    planner_t *pl = h->data;
    if (--pl->handles_open == 0) {
        pthread_cond_destroy(&pl->cond);
        pthread_mutex_destroy(&pl->mu);
        free(pl);
    }
}

void planner_stop(planner_t *pl)
{
    if (pl == NULL)
        return;
    set_stop(pl);
    if (pl->thread_started) {
        pthread_join(pl->thread, NULL);
        pl->thread_started = false;
    }
    run_done(pl); /* results posted after the last async callback ran */
    uv_timer_stop(&pl->watch);
    uv_close((uv_handle_t *)&pl->async, on_handle_closed);
    uv_close((uv_handle_t *)&pl->watch, on_handle_closed);
}
