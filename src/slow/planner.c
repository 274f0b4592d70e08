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
 * lease `P lease:<n>` with SET NX PX (lease_acquire_script), walk the
 * partition's cadence window (the phases that came round since its cursor,
 * cadence.h), then its due set, both in chunks, move the cursor, release
 * the lease. A key of the wrong type costs its partition only
 * (planner_partition_failed); Redis failing ends the pass.
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
 * chunk's schedule changes go out (planner_chunk_reschedule): members
 * planned from the due set join the cadence set; nothing moves for members
 * planned in the cadence walk.
 * While this instance's decides use Redis, all of this goes in small steps
 * (PLANNER_BUSY_CHUNK in planner_internal.h): short chunk queries, small
 * groups with one read in flight, schedule slices answered one by one, so
 * a decide never waits long behind the pass in Redis.
 *
 * A member whose plan could not be written stays in (or joins) the due
 * set; the due walk steps over such members with its LIMIT offset, so one
 * bad member never stalls a partition, and the next pass tries it again.
 *
 * The pass is bound by Redis's single thread, so the worker spends little
 * CPU of its own: it formats RESP itself (resp_buf.h) and builds replies in an
 * arena (reply_arena.h) instead of a malloc per reply element.
 */
#include "notifd/slow/planner.h"

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

#include "notifd/core/cadence.h"
#include "notifd/core/slow_policy.h"
#include "notifd/lib/hash.h"
#include "notifd/core/keys.h"
#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/slow/schedule.h"
#include "planner_internal.h"
#include "notifd/store/store.h"

/* planner_script_plan_write (planner.h) is src/store/lua/plan_write.lua, embedded
 * at build time (src/store/lua/plan_write.lua). */

/* Lease scripts: only the holder (by instance id) may extend or drop it. */
const char planner_lease_renew_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return 0\n";
static const char lease_release_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

uint64_t planner_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

double planner_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool planner_stopping(planner_t *pl)
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

int planner_plan_member(const config_t *cfg, const slow_config_t *slow, const char *member,
                        size_t member_len, const member_features_t *features, int64_t as_of,
                        plan_t *out)
{
    double u_explore = 1.0, u_pick = 0.0;
    if (slow->explore_prob > 0.0)
        plan_explore_draws(cfg->seed, member, member_len, as_of, &u_explore, &u_pick);
    return slow_plan_member_explore(&slow->weights, &slow->priors, &slow->grid, features, as_of,
                                    cfg->policy.half_life_s, slow->explore_prob, u_explore,
                                    u_pick, out, NULL, NULL);
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
        size_t l_ = number_format_i64(t, (v));                                                       \
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
    if (plan->explore_neighbours > 0) {
        /* The logged choice: what off-policy evaluation weights by. */
        ARG_LIT("propensity");
        int l = snprintf(t, 32, "%.17g", plan->propensity);
        ARG(t, (size_t)l);
        t += l + 1;
        ARG_LIT("neighbours");
        ARG_INT(plan->explore_neighbours);
        if (plan->n_gaps > 0) {
            /* Six significant digits: utilities are O(1), and what the
             * gaps decide (which neighbour another cost picks) is not
             * decided at the seventh. */
            ARG_LIT("gaps");
            char *start = t;
            for (int j = 0; j < plan->n_gaps; j++)
                t += snprintf(t, 24, j ? ",%.6g" : "%.6g", plan->utility_gap[j]);
            ARG(start, (size_t)(t - start));
            t++;
        }
        for (int c = 0; c < cfg->n_channels; c++) {
            if (!plan_has_channel(plan, c) || plan->greedy_per_week[c] == plan->per_week[c])
                continue;
            l = snprintf(t, 48, "greedy_%s", cfg->channels[c]);
            ARG(t, (size_t)l);
            t += l + 1;
            l = snprintf(t, 32, "%.10g", plan->greedy_per_week[c]);
            ARG(t, (size_t)l);
            t += l + 1;
        }
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
/* Which partitions have work                                         */

/*
 * Which partitions have work, in one round trip (per partition: ZCOUNT of
 * the due set up to as_of, ZCARD of the cadence set, GET of the cursor), so
 * an idle pass costs one round trip instead of three per partition (lease,
 * query, release). A partition has work when members are due, or when its
 * cadence has members and the cursor is behind as_of. A member that becomes
 * due in an idle partition during the pass waits for the next pass.
 * A set of the wrong type (WRONGTYPE) makes the partition one with work:
 * its walk meets the broken key, counts the partition failed, and walks
 * what it can (planner_partition_run); the other partitions go on. Any
 * other error reply is Redis's as a whole and ends the pass.
 * A cursor that is not a sane time counts as none (the walk replaces it).
 */
static bool due_partitions(planner_t *pl, const config_t *cfg, int64_t as_of,
                           bool due[SCHEDULE_PARTITIONS], planner_result_t *res)
{
    char key[KEY_MAX];
    resp_buf_t *out = &pl->out;
    out->len = 0;
    for (int n = 0; n < SCHEDULE_PARTITIONS; n++) {
        size_t kl = key_global(key, cfg->redis.prefix, "sched", n);
        resp_buf_begin(out, 4);
        resp_buf_arg(out, "ZCOUNT", 6);
        resp_buf_arg(out, key, kl);
        resp_buf_arg(out, "-inf", 4);
        resp_buf_arg_i64(out, as_of);
        kl = key_global(key, cfg->redis.prefix, "cadence", n);
        resp_buf_begin(out, 2);
        resp_buf_arg(out, "ZCARD", 5);
        resp_buf_arg(out, key, kl);
        kl = key_global(key, cfg->redis.prefix, "cursor", n);
        resp_buf_begin(out, 2);
        resp_buf_arg(out, "GET", 3);
        resp_buf_arg(out, key, kl);
    }
    reply_arena_reset(&pl->arena);
    if (out->failed || redisAppendFormattedCommand(pl->c, out->p, out->len) != REDIS_OK) {
        out->len = 0;
        planner_conn_failed(pl, cfg, res, "out of memory");
        return false;
    }
    out->len = 0;
    for (int n = 0; n < SCHEDULE_PARTITIONS; n++) {
        const redisReply *rep[3];
        for (int k = 0; k < 3; k++) {
            void *r = NULL;
            if (redisGetReply(pl->c, &r) != REDIS_OK || r == NULL) {
                planner_conn_failed(pl, cfg, res, pl->c->errstr[0] ? pl->c->errstr : "no reply");
                return false;
            }
            rep[k] = r;
            if (rep[k]->type == REDIS_REPLY_ERROR && !planner_error_is_the_keys(rep[k]))
                /* keep reading: the other replies are still on the wire */
                snprintf(res->error, sizeof res->error, "redis: %s failed: %s",
                         k == 0 ? "ZCOUNT" : k == 1 ? "ZCARD" : "GET", rep[k]->str);
        }
        bool members_due = rep[0]->type != REDIS_REPLY_INTEGER || rep[0]->integer > 0;
        bool cadence = rep[1]->type != REDIS_REPLY_INTEGER || rep[1]->integer > 0;
        int64_t cursor = 0;
        bool behind = rep[2]->type != REDIS_REPLY_STRING ||
                      !cadence_cursor_parse(rep[2]->str, rep[2]->len, &cursor) || cursor < as_of;
        due[n] = members_due || (cadence && behind);
    }
    reply_arena_reset(&pl->arena);
    return res->error[0] == '\0';
}

void planner_partition_failed(planner_t *pl, planner_result_t *res, int partition,
                              const char *what, const char *why)
{
    static __thread log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
    log_limited(&rl, LOG_WARN, "planner: partition left for the next pass, a key of it is broken",
                "partition=%d key=%s error=\"%s\"", partition, what, why);
    res->partitions_failed++;
    metrics_planner_partition_failed(pl->app->metrics);
}

/* ------------------------------------------------------------------ */
/* Leases                                                             */

/*
 * SET NX PX, and one guard: a key there that never expires (no TTL, or a
 * TTL longer than any planner.lease_ms) is not a lease, since every notifd
 * writes its leases with PX up to PLANNER_LEASE_MS_MAX. SET NX alone would
 * take such a key (of any type) for another instance's lease and skip the
 * partition for good; the script replaces it instead. 1 acquired, 2
 * acquired in place of such a key, 0 held by another instance. (Neither
 * SET nor PTTL minds the type of the key, so the script's only errors are
 * Redis's as a whole.)
 */
static const char lease_acquire_script[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end\n"
    "local ttl = redis.call('PTTL', KEYS[1])\n"
    "if ttl == -1 or ttl > tonumber(ARGV[3]) then\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "  return 2\n"
    "end\n"
    "return 0\n";

/* 1 acquired, 0 held by another instance, -1 Redis failed (res->error). */
static int lease_acquire(planner_t *pl, const config_t *cfg, int partition,
                         planner_result_t *res)
{
    char key[KEY_MAX], ms[24], max[24];
    size_t kl = key_global(key, cfg->redis.prefix, "lease", partition);
    size_t ml = number_format_i64(ms, cfg->planner.lease_ms);
    size_t xl = number_format_i64(max, PLANNER_LEASE_MS_MAX);
    const char *argv[] = {"EVAL", lease_acquire_script, "1", key, pl->instance, ms, max};
    size_t lens[] = {4, strlen(lease_acquire_script), 1, kl, strlen(pl->instance), ml, xl};
    redisReply *r = planner_conn_command(pl, cfg, res, 7, argv, lens);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_INTEGER && (r->integer == 1 || r->integer == 2)) {
        if (r->integer == 2) {
            static __thread log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
            log_limited(&rl, LOG_WARN, "planner: replaced a lease key that never expires",
                        "partition=%d", partition);
        }
        return 1;
    }
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
        return 0;
    snprintf(res->error, sizeof res->error, "redis: lease failed: %s",
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
    (void)planner_conn_command(pl, cfg, res, 5, argv, lens);
}

/* ------------------------------------------------------------------ */
/* A pass                                                             */

static void pass_run(planner_t *pl, const config_t *cfg, int64_t as_of, const char *trigger,
                     bool force_connect, planner_result_t *res)
{
    memset(res, 0, sizeof *res);
    double t0 = planner_mono_s();
    pl->pass_t0 = t0;
    pl->pass_members = 0;
    planner_scores_new_pass(pl, cfg);
    void *metrics = pl->app->metrics;
    metrics_planner_pass_started(metrics);
    bool due[SCHEDULE_PARTITIONS];
    if (planner_conn_ensure(pl, cfg, force_connect, res) && due_partitions(pl, cfg, as_of, due, res)) {
        int start = (int)(pl->instance_hash % SCHEDULE_PARTITIONS);
        for (int i = 0; i < SCHEDULE_PARTITIONS; i++) {
            if (planner_stopping(pl)) {
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
            if (planner_partition_run(pl, cfg, n, as_of, res))
                res->partitions_done++;
            lease_release(pl, cfg, n, res);
            /* A broken key of one partition was counted and is left for
             * the next pass; Redis failing (or stop) ends the pass. */
            if (res->error[0] != '\0' || res->aborted)
                break;
        }
    }
    res->seconds = planner_mono_s() - t0;
    metrics_planner_pass_finished(metrics, res->seconds, res->planned, res->failed);
    double rate = res->seconds > 0 ? (double)res->planned / res->seconds : 0.0;
    log_write(res->error[0] ? LOG_WARN : LOG_INFO, "planner pass",
              "trigger=%s as_of=%lld planned=%llu kept=%llu failed=%llu removed=%llu "
              "chunks=%llu chunks_small=%llu partitions=%d "
              "skipped=%d partitions_failed=%d seconds=%.3f members_per_s=%.0f%s%s%s%s",
              trigger, (long long)as_of, (unsigned long long)res->planned,
              (unsigned long long)res->kept, (unsigned long long)res->failed, (unsigned long long)res->removed,
              (unsigned long long)res->chunks, (unsigned long long)res->chunks_small,
              res->partitions_done, res->partitions_skipped, res->partitions_failed,
              res->seconds, rate,
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
    /* planner_yield_to_fast_path sleeps in 20 us steps: the default 50 us
     * timer slack would stretch each one several times over. */
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
            if (planner_stopping(pl))
                break;
            if (pl->waiting_head != NULL) {
                req = pl->waiting_head;
                pl->waiting_head = req->next;
                if (pl->waiting_head == NULL)
                    pl->waiting_tail = NULL;
                break;
            }
            uint64_t now = planner_mono_ms();
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
        if (planner_stopping(pl)) {
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
                if (res.error[0] != '\0' && pl->next_connect_ms > planner_mono_ms() &&
                    pl->next_connect_ms - planner_mono_ms() < next)
                    next = pl->next_connect_ms - planner_mono_ms();
            }
            pl->next_timer_ms = planner_mono_ms() + next;
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
    planner_conn_drop(pl);
    reply_arena_free(&pl->arena);
    resp_buf_free(&pl->out);
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
    if (pl->app->stopping && !planner_stopping(pl)) {
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
    /* A pass streams MBs of replies: keep the blocks between groups. */
    reply_arena_init(&pl->arena, REPLY_ARENA_MANUAL, 1u << 20, 0);
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
    if (pl == NULL || planner_stopping(pl) || !pl->thread_started)
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
