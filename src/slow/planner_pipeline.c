/*
 * planner_pipeline.c - one chunk of a partition walk through the worker's
 * pipeline: the command groups (READ: a member's features and stored plan,
 * and with the score prior on its recent scores, planner_scores.c;
 * WRITE: its new plan; RENEW: the lease) sent in order and their replies
 * read in that order, the plan of each member from its two reads, the
 * lease renewals between batches and between chunks, and the give-way to
 * this instance's fast path and planner.max_members_per_s. The walks that
 * feed it chunks, and the schedule changes that follow each chunk, are in
 * planner_partition.c (see planner.c's top comment for the whole shape).
 *
 * Commands are written straight into RESP (resp_buf.h) in pl->out, one
 * buffer per group, and handed to hiredis with a single append: a pass
 * sends millions of small commands.
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

static void part_broken(part_ctx_t *p, const char *what)
{
    p->broken = true;
    planner_conn_failed(p->pl, p->cfg, p->res, what);
}

/* Hands the commands formatted in pl->out to hiredis and writes them out
 * now, so Redis works on them while this thread computes. */
bool planner_part_flush(part_ctx_t *p)
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

/* Remembers a group formatted in pl->out so its replies are read in order;
 * it goes out with the next planner_part_flush. */
static void part_queue(part_ctx_t *p, group_t g)
{
    p->fifo[(p->fifo_head + p->fifo_count) % PLANNER_MAX_GROUPS] = g;
    p->fifo_count++;
}

/* part_queue, and out now. */
static void part_send(part_ctx_t *p, group_t g)
{
    if (!planner_part_flush(p))
        return;
    part_queue(p, g);
}

redisReply *planner_part_reply(part_ctx_t *p)
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
bool planner_fast_path_busy(const part_ctx_t *p)
{
    const store_t *st = p->pl->app->store;
    if (st == NULL)
        return false;
    if (store_waiting(st) > 0)
        return true;
    uint64_t last = store_last_sent_ms(st);
    return last != 0 && planner_mono_ms() < last + PLANNER_BUSY_LINGER_MS;
}

/* HMGET P week:{M} <ch>:scores <ch>:ewma ... (the score prior's read). */
static void send_scores_read(part_ctx_t *p, const member_slot_t *s)
{
    char key[KEY_MAX];
    resp_buf_t *out = &p->pl->out;
    int n_fields = 2 * p->cfg->n_channels;
    size_t kl = key_member(key, p->cfg->redis.prefix, "week", slot_id(p, s), s->len, "", 0);
    resp_buf_begin(out, 2 + n_fields);
    resp_buf_arg(out, "HMGET", 5);
    resp_buf_arg(out, key, kl);
    for (int i = 0; i < n_fields; i++)
        resp_buf_arg(out, p->score_fields[i], p->score_field_lens[i]);
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
        if (p->read_scores)
            send_scores_read(p, s);
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
        /* A drawn plan writes its propensity and K (and greedy_<ch>, whose
         * value may be the plan's own next time: those go by script). */
        if (plan->explore_neighbours > 0 &&
            (field_is(f, "propensity", 10) || field_is(f, "neighbours", 10) ||
             (plan->n_gaps > 0 && field_is(f, "gaps", 4))))
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

/* Whether the stored plan already holds field f with exactly the value v. */
static bool stored_has_pair(const redisReply *stored, const char *f, size_t fl, const char *v,
                            size_t vl)
{
    for (size_t i = 0; i + 1 < stored->elements; i += 2) {
        const redisReply *sf = stored->element[i], *sv = stored->element[i + 1];
        if (sf->type == REDIS_REPLY_STRING && field_is(sf, f, fl))
            return sv->type == REDIS_REPLY_STRING && sv->len == vl &&
                   memcmp(sv->str, v, vl) == 0;
    }
    return false;
}

/* Plans one member from its two read replies and formats the write. */
static void plan_one(part_ctx_t *p, member_slot_t *s, const redisReply *feat,
                     const redisReply *stored, const redisReply *week)
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
    if (week != NULL)
        planner_scores_apply(p, id, s->len, week, &mf);
    metrics_observe_stored_invalid(p->pl->app->metrics, &mf.invalid);
    /* The member's slow experiment arm, or the base parameters (control). */
    const char *arm_name = "control";
    const slow_config_t *slow = policy_slow_for(&cfg->policy, id, s->len, NULL, &arm_name);
    plan_t plan;
    memset(&plan, 0, sizeof plan);
    if (planner_plan_member(cfg, slow, id, s->len, &mf, p->as_of, &plan) < 0) {
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
         * field/value pairs. Only the pairs the stored plan does not hold
         * already go out: the stored fields are a subset of the new plan's
         * (covered), so the hash ends up the same as after a full HSET, in
         * one atomic command, while Redis parses and rewrites fewer fields
         * (source, arm and most per_week counts rarely change between two
         * passes). version, computed_at and valid_until always do. */
        bool send[PLANNER_WRITE_MAX_ARGS];
        int n_pairs = 0;
        for (int i = 3; i + 1 < wa.argc; i += 2) {
            send[i] = !stored_has_pair(stored, wa.argv[i], wa.lens[i], wa.argv[i + 1],
                                       wa.lens[i + 1]);
            n_pairs += send[i];
        }
        resp_buf_begin(out, 2 + 2 + 2 * n_pairs);
        resp_buf_arg(out, "HSET", 4);
        resp_buf_arg(out, wa.argv[0], wa.lens[0]);
        resp_buf_arg(out, "version", 7);
        resp_buf_arg(out, wa.argv[1], wa.lens[1]);
        for (int i = 3; i + 1 < wa.argc; i += 2) {
            if (!send[i])
                continue;
            resp_buf_arg(out, wa.argv[i], wa.lens[i]);
            resp_buf_arg(out, wa.argv[i + 1], wa.lens[i + 1]);
        }
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
        redisReply *feat = planner_part_reply(p);
        if (feat == NULL)
            return;
        redisReply *stored = planner_part_reply(p);
        if (stored == NULL)
            return;
        redisReply *week = NULL;
        if (p->read_scores && (week = planner_part_reply(p)) == NULL)
            return;
        plan_one(p, &p->slots[i], feat, stored, week);
    }
    reply_arena_reset(&p->pl->arena);
    /* The writes wait in pl->out for the next reads (planner_chunk_run), so
     * both reach Redis in one write: one read event and one reply write
     * in Redis for the two groups instead of two each. While the fast path
     * is busy they go out at once, and the reads after the give-way. */
    if (planner_fast_path_busy(p))
        part_send(p, (group_t){.kind = GROUP_WRITE, .first = g->first, .n = g->n});
    else
        part_queue(p, (group_t){.kind = GROUP_WRITE, .first = g->first, .n = g->n});
}

static void on_write_group(part_ctx_t *p, const group_t *g)
{
    uint64_t ok = 0;
    for (size_t i = g->first; i < g->first + g->n; i++) {
        member_slot_t *s = &p->slots[i];
        if (s->write == WRITE_NONE)
            continue;
        redisReply *r = planner_part_reply(p);
        if (r == NULL)
            return;
        const redisReply *bad = r->type == REDIS_REPLY_INTEGER ? NULL : r;
        if (s->write == WRITE_HSET) {
            redisReply *e = planner_part_reply(p); /* EXPIRE */
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
    redisReply *r = planner_part_reply(p);
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
void planner_yield_to_fast_path(part_ctx_t *p)
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
    bool busy = planner_fast_path_busy(p);
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
void planner_chunk_run(part_ctx_t *p, size_t n)
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
                planner_yield_to_fast_path(p);
                maybe_send_renew(p);
                send_more_reads(p, n, &sent, &reads_out);
            }
            planner_part_flush(p); /* a write group still waiting (on_read_group) */
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
        planner_chunk_reschedule(p, n);
    report_progress(p);
}

/* Renews the lease when it is time, between chunks (the pipeline is empty,
 * so the reply is read at once); false when the partition must stop. */
bool planner_renew_between_chunks(part_ctx_t *p)
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
