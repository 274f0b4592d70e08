/*
 * planner_partition.c - one partition of a planner pass, under its lease:
 * the cadence walk and the due walk, chunks through a pipeline of command
 * groups, the plan of each member, and the schedule changes of a chunk
 * (see planner.c's top comment for the shape, docs/planner.md for why).
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifd/core/cadence.h"
#include "notifd/lib/number_parse.h"
#include "notifd/core/features.h"
#include "notifd/core/keys.h"
#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/core/slow_policy.h"
#include "notifd/store/store.h"
#include "notifd/core/stored_fields.h"
#include "planner_internal.h"


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

/* How a member's plan goes out (see plan_one). */
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
    size_t slice;        /* members per schedule command, now */
    size_t slice_max;    /* ... while the fast path is not busy */
    bool lockstep;       /* schedule slices: each answered before the next */
    size_t limit;        /* members asked for by the last chunk query */
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
    bool key_failed;     /* a key of the partition is broken (part_key_broken) */
    char failed_key[16]; /* ... the first: which, and Redis's answer */
    char failed_why[128];
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
    planner_conn_failed(p->pl, p->cfg, p->res, what);
}

/* A key of the partition is broken (planner_error_is_the_keys, or a walk
 * that cannot advance): unlike a failed Redis this is about this partition
 * only. The walk that needs the key stops; the partition is counted failed
 * once, at its end (planner_partition_failed), with the first such error. */
static void part_key_broken(part_ctx_t *p, const char *key, const char *why)
{
    if (p->key_failed)
        return;
    p->key_failed = true;
    snprintf(p->failed_key, sizeof p->failed_key, "%s", key);
    snprintf(p->failed_why, sizeof p->failed_why, "%s", why);
}

/* Hands the commands formatted in pl->out to hiredis and writes them out
 * now, so Redis works on them while this thread computes. */
static bool part_flush(part_ctx_t *p)
{
    resp_buf_t *out = &p->pl->out;
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

/* Whether this instance's fast path has sent Redis a command lately (see
 * PLANNER_BUSY_CHUNK): decides arrive one by one, so a quiet spell of a
 * few milliseconds between two of them does not make the fast path idle. */
static bool fast_path_busy(const part_ctx_t *p)
{
    const store_t *st = p->pl->app->store;
    if (st == NULL)
        return false;
    if (store_waiting(st) > 0)
        return true;
    uint64_t last = store_last_sent_ms(st);
    return last != 0 && planner_mono_ms() < last + PLANNER_BUSY_LINGER_MS;
}

static void send_reads(part_ctx_t *p, size_t first, size_t n)
{
    char key[KEY_MAX];
    const char *prefix = p->cfg->redis.prefix;
    resp_buf_t *out = &p->pl->out;
    for (size_t i = first; i < first + n; i++) {
        member_slot_t *s = &p->slots[i];
        size_t kl = key_member(key, prefix, "member", slot_id(p, s), s->len, "", 0);
        resp_buf_begin(out, 2);
        resp_buf_arg(out, "HGETALL", 7);
        resp_buf_arg(out, key, kl);
        kl = key_member(key, prefix, "plan", slot_id(p, s), s->len, "", 0);
        resp_buf_begin(out, 2);
        resp_buf_arg(out, "HGETALL", 7);
        resp_buf_arg(out, key, kl);
    }
    part_send(p, (group_t){.kind = GROUP_READ, .first = first, .n = n});
}

/* The lease renewal rides in the pipeline, between batches, once a third of
 * the lease time has passed since the last renewal. */
static bool maybe_send_renew(part_ctx_t *p)
{
    uint64_t now = planner_mono_ms();
    if (now - p->lease_renewed_ms < (uint64_t)p->cfg->planner.lease_ms / 3)
        return false;
    p->lease_renewed_ms = now;
    const char *argv[] = {"EVAL", planner_lease_renew_script, "1", p->lease_key, p->pl->instance,
                          p->lease_ms};
    size_t lens[] = {4, strlen(planner_lease_renew_script), 1, p->lease_len,
                     strlen(p->pl->instance), strlen(p->lease_ms)};
    resp_buf_argv(&p->pl->out, 6, argv, lens);
    part_send(p, (group_t){.kind = GROUP_RENEW});
    return true;
}

bool planner_str_i64(const char *s, size_t len, int64_t *out)
{
    return number_parse_digits(s, len, 18, out);
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
            have_at = stored_parse_int(STORED_PLAN_TIME, v->str, v->len, &at, NULL);
        else if (field_is(f, "valid_until", 11))
            have_until = stored_parse_int(STORED_PLAN_TIME, v->str, v->len, &until, NULL);
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
            if (v->type != REDIS_REPLY_STRING ||
                !stored_parse_int(STORED_PLAN_VERSION, v->str, v->len, version, NULL))
                covered = false; /* not ours: let the script sort it out */
            continue;
        }
        if (field_is(f, "expires_at", 10)) {
            if (v->type != REDIS_REPLY_STRING || !planner_str_i64(v->str, v->len, expires_at))
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
    metrics_observe_stored_invalid(p->pl->app->metrics, &mf.invalid);
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
     * long enough and leave it: an EXPIRE per member is a command per
     * member for nothing (docs/benchmarks.md). The script path always
     * sets it. */
    bool keep_ttl = covered && planner_ttl_long_enough(cfg, expires_at, plan.computed_at,
                                                       plan.valid_until, p->wall_now);
    int64_t ttl = planner_plan_ttl_set_s(cfg, plan.computed_at, plan.valid_until);

    char key[KEY_MAX];
    size_t kl = key_member(key, cfg->redis.prefix, "plan", id, s->len, "", 0);
    planner_write_args_t wa;
    planner_write_args_build(&wa, cfg, key, kl, &plan, ttl, keep_ttl ? 0 : p->wall_now + ttl);
    resp_buf_t *out = &p->pl->out;
    if (covered) {
        /* HSET key version v <fields>, then the TTL. wa: key, version, ttl,
         * field/value pairs. */
        resp_buf_begin(out, 2 + 2 + (wa.argc - 3));
        resp_buf_arg(out, "HSET", 4);
        resp_buf_arg(out, wa.argv[0], wa.lens[0]);
        resp_buf_arg(out, "version", 7);
        resp_buf_arg(out, wa.argv[1], wa.lens[1]);
        for (int i = 3; i < wa.argc; i++)
            resp_buf_arg(out, wa.argv[i], wa.lens[i]);
        s->write = WRITE_HSET_KEEP_TTL;
        if (!keep_ttl) {
            resp_buf_begin(out, 3);
            resp_buf_arg(out, "EXPIRE", 6);
            resp_buf_arg(out, key, kl);
            resp_buf_arg_i64(out, ttl);
            s->write = WRITE_HSET;
        }
    } else {
        resp_buf_begin(out, 3 + wa.argc);
        resp_buf_arg(out, "EVALSHA", 7);
        resp_buf_arg(out, p->pl->sha_write, 40);
        resp_buf_arg(out, "1", 1);
        for (int i = 0; i < wa.argc; i++)
            resp_buf_arg(out, wa.argv[i], wa.lens[i]);
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
    reply_arena_reset(&p->pl->arena);
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
    reply_arena_reset(&p->pl->arena);
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
    reply_arena_reset(&p->pl->arena);
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
    for (double now = planner_mono_s(); now < target && !planner_stopping(pl); now = planner_mono_s()) {
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

/* The reply of one schedule slice of `n` members; false when the
 * connection failed. An error reply is logged; with `step_over`, its members
 * are still in the due set and the due walk's offset steps over them. */
static bool slice_reply(part_ctx_t *p, size_t n, bool step_over)
{
    redisReply *r = part_reply(p);
    if (r == NULL)
        return false;
    if (r->type == REDIS_REPLY_ERROR) {
        if (planner_error_is_the_keys(r)) {
            part_key_broken(p, "schedule", r->str);
        } else {
            static __thread log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
            log_limited(&rl, LOG_WARN, "planner: schedule update failed", "error=\"%s\"",
                        r->str);
        }
        if (step_over)
            p->offset += n;
    }
    return true;
}

/* `cmd key [opt] ([score] member)...` over the given slots, in slices of at
 * most p->slice members, each sent as soon as it is formatted. `moves`
 * (phases computed) or `slots` (indexes into p->slots) lists the members.
 * In lockstep each reply is read before the next slice goes out; otherwise
 * slice_replies reads them all at the end. */
static void format_slices(part_ctx_t *p, const char *cmd, const char *key, size_t key_len,
                          const char *opt, slice_score_t score, const sched_move_t *moves,
                          const uint32_t *slots, size_t total, bool step_over)
{
    resp_buf_t *out = &p->pl->out;
    for (size_t first = 0; first < total; first += p->slice) {
        size_t n = slice_len(p, total, first);
        resp_buf_begin(out, (int)(2 + (opt != NULL) + n * (score == SCORE_NONE ? 1 : 2)));
        resp_buf_arg(out, cmd, strlen(cmd));
        resp_buf_arg(out, key, key_len);
        if (opt != NULL)
            resp_buf_arg(out, opt, strlen(opt));
        for (size_t i = first; i < first + n; i++) {
            const member_slot_t *s = &p->slots[moves != NULL ? moves[i].slot : slots[i]];
            if (score == SCORE_PHASE) {
                char num[32];
                int l = snprintf(num, sizeof num, "%.17g", moves[i].phase);
                resp_buf_arg(out, num, (size_t)l);
            } else if (score == SCORE_AS_OF) {
                resp_buf_arg_i64(out, p->as_of);
            }
            resp_buf_arg(out, slot_id(p, s), s->len);
        }
        /* Out slice by slice, giving way to the fast path in between: a
         * chunk's schedule changes are milliseconds of Redis time. */
        if (!part_flush(p))
            return;
        if (p->lockstep && !slice_reply(p, n, step_over))
            return;
        yield_to_fast_path(p);
    }
}

/* Reads the replies of format_slices(total) not read in lockstep; false
 * when the connection failed. */
static bool slice_replies(part_ctx_t *p, size_t total, bool step_over)
{
    if (p->lockstep)
        return true;
    for (size_t first = 0; first < total; first += p->slice)
        if (!slice_reply(p, slice_len(p, total, first), step_over))
            return false;
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
    bool due_walk = !p->cadence;
    p->lockstep = fast_path_busy(p);
    p->slice = p->lockstep && p->slice_max > PLANNER_BUSY_BATCH ? PLANNER_BUSY_BATCH : p->slice_max;
    format_slices(p, "ZADD", p->cadence_key, p->cadence_len, NULL, SCORE_PHASE, p->moves, NULL,
                  n_moves, false);
    format_slices(p, "ZREM", p->sched_key, p->sched_len, NULL, SCORE_NONE, p->moves, NULL,
                  n_moves, due_walk);
    format_slices(p, "ZREM", p->sched_key, p->sched_len, NULL, SCORE_NONE, NULL, p->removed,
                  n_removed, due_walk);
    format_slices(p, "ZREM", p->cadence_key, p->cadence_len, NULL, SCORE_NONE, NULL, p->removed,
                  n_removed, false);
    format_slices(p, "ZADD", p->sched_key, p->sched_len, "NX", SCORE_AS_OF, NULL, retry, n_retry,
                  false);
    if (part_flush(p) && slice_replies(p, n_moves, false) &&
        slice_replies(p, n_moves, due_walk) && slice_replies(p, n_removed, due_walk) &&
        slice_replies(p, n_removed, false) && slice_replies(p, n_retry, false))
        p->res->removed += n_removed;
    reply_arena_reset(&p->pl->arena);
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
    /* Microseconds: the bound is two milliseconds, which a millisecond
     * clock would stretch to almost three. */
    double t0 = planner_mono_s();
    struct timespec step = {.tv_sec = 0, .tv_nsec = PLANNER_YIELD_STEP_US * 1000L};
    while (store_waiting(st) > 0 && (planner_mono_s() - t0) * 1e6 < PLANNER_YIELD_MAX_US)
        nanosleep(&step, NULL);
}

/* Sends reads of the chunk's next members (from *sent on) until two read
 * groups are in flight: one computes while the next is read. While the fast
 * path is busy, one group of at most PLANNER_BUSY_BATCH members. */
static void send_more_reads(part_ctx_t *p, size_t n, size_t *sent, size_t *reads_out)
{
    bool busy = fast_path_busy(p);
    size_t depth = busy ? 1 : 2;
    size_t batch = busy && p->batch > PLANNER_BUSY_BATCH ? PLANNER_BUSY_BATCH : p->batch;
    while (*sent < n && *reads_out < depth && !p->broken) {
        size_t k = n - *sent < batch ? n - *sent : batch;
        send_reads(p, *sent, k);
        *sent += k;
        (*reads_out)++;
    }
}

/* Runs the pipeline over one chunk of `n` members (see the top comment). */
static void chunk_run(part_ctx_t *p, size_t n)
{
    size_t sent = 0, reads_out = 0;
    send_more_reads(p, n, &sent, &reads_out);
    while (p->fifo_count > 0 && !p->broken) {
        group_t g;
        fifo_pop(p, &g);
        switch (g.kind) {
        case GROUP_READ:
            reads_out--;
            on_read_group(p, &g);
            report_progress(p);
            pace(p, g.n);
            /* Stop and a lost lease take effect here, between batches:
             * batches never read simply stay due. */
            if (sent < n && !p->broken && !p->lease_lost && !planner_stopping(p->pl)) {
                yield_to_fast_path(p);
                maybe_send_renew(p);
                send_more_reads(p, n, &sent, &reads_out);
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
    if (planner_stopping(p->pl)) {
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
 * for at most `chunk` members (PLANNER_BUSY_CHUNK while the fast path is
 * busy; p->limit says which), and its chunk; the number of members the
 * query returned, or -1 to stop. */
static long chunk_next(part_ctx_t *p, const char *key, size_t key_len, const char *min,
                       const char *max, uint64_t offset, size_t chunk)
{
    p->limit = chunk;
    if (fast_path_busy(p)) {
        p->res->chunks_small++;
        if (p->limit > PLANNER_BUSY_CHUNK)
            p->limit = PLANNER_BUSY_CHUNK;
    }
    p->res->chunks++;
    char off[24], cnt[24];
    size_t offl = number_format_i64(off, (int64_t)offset);
    size_t cntl = number_format_i64(cnt, (int64_t)p->limit);
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
    redisReply *r = planner_conn_command(p->pl, p->cfg, res, argc, argv, lens);
    if (r == NULL) {
        p->broken = true;
        return -1;
    }
    if (planner_error_is_the_keys(r)) {
        part_key_broken(p, p->cadence ? "cadence" : "sched", r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        snprintf(res->error, sizeof res->error, "redis: ZRANGEBYSCORE failed: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return -1;
    }
    size_t got = p->cadence ? r->elements / 2 : r->elements;
    size_t n = chunk_load(p, r);
    reply_arena_reset(&p->pl->arena);
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
    number_format_i64(max, p->as_of);
    p->cadence = false;
    while (renew_between_chunks(p)) {
        long got = chunk_next(p, p->sched_key, p->sched_len, "-inf", max, p->offset, chunk);
        if (got < (long)p->limit)
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
        if (got < (long)p->limit)
            return !p->broken && !p->lease_lost;
        /* Removed members no longer count in the skip. */
        size_t gone = p->removed_at_last;
        size_t at_last = p->n_at_last - (gone < p->n_at_last ? gone : p->n_at_last);
        if (strcmp(min, p->last_score) == 0) {
            if (at_last == 0) { /* nothing moved on: do not loop */
                part_key_broken(p, "cadence", "the cadence walk did not advance");
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

/* The partition's cursor: the as_of its cadence was last walked to. A
 * cursor that is not a sane time (not a decimal, out of a ts's range, a key
 * of the wrong type) counts as none: the whole cadence is walked, and
 * cursor_set's SET replaces it. Trusting a garbage cursor far in the
 * future would leave the cadence unwalked for as long as the key lives. */
static bool cursor_get(part_ctx_t *p, const char *key, size_t kl, bool *have, int64_t *cursor)
{
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, kl};
    redisReply *r = planner_conn_command(p->pl, p->cfg, p->res, 2, argv, lens);
    *have = false;
    if (r == NULL) {
        p->broken = true;
        return false;
    }
    if (r->type == REDIS_REPLY_NIL)
        return true;
    if (r->type == REDIS_REPLY_ERROR && !planner_error_is_the_keys(r)) {
        snprintf(p->res->error, sizeof p->res->error, "redis: cursor GET failed: %s", r->str);
        return false;
    }
    *have = r->type == REDIS_REPLY_STRING && cadence_cursor_parse(r->str, r->len, cursor);
    if (!*have) {
        static __thread log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
        log_limited(&rl, LOG_WARN, "planner: the cursor is not a time, walking the whole cadence",
                    "partition=%d error=\"%s\"", p->partition,
                    r->type == REDIS_REPLY_ERROR ? r->str : "not a unix time");
    }
    return true;
}

/* Moves the cursor to as_of; it outlives two intervals without a pass (by
 * then the next window is the whole cadence anyway). */
static void cursor_set(part_ctx_t *p, const char *key, size_t kl)
{
    char v[24], ex[24];
    size_t vl = number_format_i64(v, p->as_of);
    size_t exl = number_format_i64(ex, 2 * p->cfg->planner.interval_s);
    const char *argv[] = {"SET", key, v, "EX", ex};
    size_t lens[] = {3, kl, vl, 2, exl};
    redisReply *r = planner_conn_command(p->pl, p->cfg, p->res, 5, argv, lens);
    if (r == NULL)
        p->broken = true;
    else if (r->type == REDIS_REPLY_ERROR) /* SET takes a key of any type */
        snprintf(p->res->error, sizeof p->res->error, "redis: cursor SET failed: %s", r->str);
}

bool planner_partition_run(planner_t *pl, const config_t *cfg, int partition, int64_t as_of,
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
    p.slice_max = p.batch < PLANNER_SCHED_SLICE_MAX ? p.batch : PLANNER_SCHED_SLICE_MAX;
    p.slice = p.slice_max;
    p.sched_len = key_global(p.sched_key, cfg->redis.prefix, "sched", partition);
    p.cadence_len = key_global(p.cadence_key, cfg->redis.prefix, "cadence", partition);
    p.lease_len = key_global(p.lease_key, cfg->redis.prefix, "lease", partition);
    number_format_i64(p.lease_ms, cfg->planner.lease_ms);
    p.lease_renewed_ms = planner_mono_ms();
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
        return true;
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
        if (n_ranges > 0 && walked && res->error[0] == '\0' && !planner_stopping(pl))
            cursor_set(&p, cursor_key, cursor_len);
    }
    if (!p.broken && !p.lease_lost && res->error[0] == '\0')
        due_walk(&p, chunk);
    if (planner_stopping(pl) && !p.broken)
        res->aborted = true;
    part_free(&p);
    if (p.key_failed)
        planner_partition_failed(pl, res, partition, p.failed_key, p.failed_why);
    return !p.key_failed;
}

