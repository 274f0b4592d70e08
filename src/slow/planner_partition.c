/*
 * planner_partition.c - one partition of a planner pass, under its lease:
 * the cadence walk (from the partition's cursor) and the due walk, each a
 * series of chunk queries whose members go through the pipeline
 * (planner_pipeline.c), and the schedule changes of each chunk once its
 * plan writes are answered (see planner.c's top comment for the shape,
 * docs/planner.md for why).
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifd/core/cadence.h"
#include "notifd/core/keys.h"
#include "notifd/log.h"
#include "planner_internal.h"

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

/* What a schedule command puts before each member id. */
typedef enum slice_score { SCORE_NONE, SCORE_PHASE, SCORE_AS_OF } slice_score_t;

/* The reply of one schedule slice of `n` members; false when the
 * connection failed. An error reply is logged; with `step_over`, its members
 * are still in the due set and the due walk's offset steps over them. */
static bool slice_reply(part_ctx_t *p, size_t n, bool step_over)
{
    redisReply *r = planner_part_reply(p);
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
        if (!planner_part_flush(p))
            return;
        if (p->lockstep && !slice_reply(p, n, step_over))
            return;
        planner_yield_to_fast_path(p);
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
void planner_chunk_reschedule(part_ctx_t *p, size_t n)
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
    p->lockstep = planner_fast_path_busy(p);
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
    if (planner_part_flush(p) && slice_replies(p, n_moves, false) &&
        slice_replies(p, n_moves, due_walk) && slice_replies(p, n_removed, due_walk) &&
        slice_replies(p, n_removed, false) && slice_replies(p, n_retry, false))
        p->res->removed += n_removed;
    reply_arena_reset(&p->pl->arena);
}

/* Copies the ids of a ZRANGEBYSCORE reply into the chunk; returns how many
 * members the chunk has. */
static size_t chunk_load(part_ctx_t *p, const redisReply *r)
{
    size_t total = 0;
    for (size_t i = 0; i < r->elements; i++)
        total += r->element[i]->len + 1;
    if (total > p->ids_cap) {
        char *ids = realloc(p->ids, total);
        if (ids == NULL)
            return 0;
        p->ids = ids;
        p->ids_cap = total;
    }
    p->n_at_last = 0;
    p->removed_at_last = 0;
    size_t n = 0, off = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > MEMBER_ID_MAX) {
            p->offset++; /* not a member id notifd wrote; step over it */
            continue;
        }
        memcpy(p->ids + off, e->str, e->len);
        p->ids[off + e->len] = '\0';
        p->slots[n] = (member_slot_t){.id_off = off, .len = e->len, .raw = (uint32_t)i};
        off += e->len + 1;
        n++;
    }
    return n;
}

/* The chunk query's arguments: key, min, max, LIMIT offset and count. */
typedef struct chunk_query {
    const char *key, *min, *max;
    size_t key_len;
    uint64_t offset;
} chunk_query_t;

/* The cadence walk after a full chunk (another query follows): the score
 * of the chunk's last member, as Redis writes it (the next query's min),
 * and how many of the chunk's members share it (the next query skips
 * them), from one query WITHSCORES of the range's same last few members.
 * The chunk itself is queried without scores: formatting a double for
 * every member cost Redis more than the rest of the query. Members of one
 * score are a suffix of the chunk (ordered by id within a score), and ties
 * are rare (a phase is a hash of the id): 8 members almost always show
 * where the last score starts; when all of them share it, four times as
 * many are asked for, up to the whole chunk. The chunk's n members of `got`
 * are marked at_last by their place in the reply. Nothing but this lease's
 * holder removes members from the cadence set, so the range can only have
 * grown since the chunk query (a replan adding a member); the tail then
 * ends a member early and the next query reads that member again, and
 * keeps its fresh plan. */
#define CHUNK_TAIL_FIRST 8
static bool chunk_tail(part_ctx_t *p, const chunk_query_t *q, size_t got, size_t n)
{
    size_t k = got < CHUNK_TAIL_FIRST ? got : CHUNK_TAIL_FIRST;
    for (;;) {
        char off[24], cnt[24];
        size_t offl = number_format_i64(off, (int64_t)(q->offset + got - k));
        size_t cntl = number_format_i64(cnt, (int64_t)k);
        const char *argv[] = {"ZRANGEBYSCORE", q->key, q->min, q->max, "WITHSCORES", "LIMIT",
                              off, cnt};
        size_t lens[] = {13, q->key_len, strlen(q->min), strlen(q->max), 10, 5, offl, cntl};
        redisReply *r = planner_conn_command(p->pl, p->cfg, p->res, 8, argv, lens);
        if (r == NULL) {
            p->broken = true;
            return false;
        }
        if (planner_error_is_the_keys(r)) {
            part_key_broken(p, "cadence", r->str);
            return false;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
            snprintf(p->res->error, sizeof p->res->error, "redis: ZRANGEBYSCORE failed: %s",
                     r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            return false;
        }
        size_t m = r->elements / 2;
        const redisReply *last = m > 0 ? r->element[2 * m - 1] : NULL;
        if (last == NULL || last->type != REDIS_REPLY_STRING ||
            last->len >= sizeof p->last_score) {
            part_key_broken(p, "cadence", "the cadence walk cannot read its last score");
            return false;
        }
        size_t ties = 0;
        while (ties < m) {
            const redisReply *sc = r->element[2 * (m - 1 - ties) + 1];
            if (sc->type != REDIS_REPLY_STRING || sc->len != last->len ||
                memcmp(sc->str, last->str, last->len) != 0)
                break;
            ties++;
        }
        if (ties == m && m == k && k < got) {
            k = k * 4 < got ? k * 4 : got;
            continue;
        }
        snprintf(p->last_score, sizeof p->last_score, "%.*s", (int)last->len, last->str);
        p->n_at_last = ties;
        for (size_t i = 0; i < n; i++)
            p->slots[i].at_last = p->slots[i].raw + ties >= got;
        reply_arena_reset(&p->pl->arena);
        return true;
    }
}

static void part_free(part_ctx_t *p)
{
    free(p->slots);
    free(p->moves);
    free(p->removed);
    free(p->ids);
}

/* One chunk query (ZRANGEBYSCORE key min max [WITHSCORES] LIMIT off count)
 * for at most `chunk` members (PLANNER_BUSY_CHUNK while the fast path is
 * busy; p->limit says which), and its chunk; the number of members the
 * query returned, or -1 to stop. */
static long chunk_next(part_ctx_t *p, const char *key, size_t key_len, const char *min,
                       const char *max, uint64_t offset, size_t chunk)
{
    p->limit = chunk;
    if (planner_fast_path_busy(p)) {
        p->res->chunks_small++;
        if (p->limit > PLANNER_BUSY_CHUNK)
            p->limit = PLANNER_BUSY_CHUNK;
    }
    p->res->chunks++;
    char off[24], cnt[24];
    size_t offl = number_format_i64(off, (int64_t)offset);
    size_t cntl = number_format_i64(cnt, (int64_t)p->limit);
    const char *argv[] = {"ZRANGEBYSCORE", key, min, max, "LIMIT", off, cnt};
    size_t lens[] = {13, key_len, strlen(min), strlen(max), 5, offl, cntl};
    planner_result_t *res = p->res;
    redisReply *r = planner_conn_command(p->pl, p->cfg, res, 7, argv, lens);
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
    size_t got = r->elements;
    size_t n = chunk_load(p, r);
    reply_arena_reset(&p->pl->arena);
    if (n == 0 && got > 0 && p->ids_cap == 0) {
        snprintf(res->error, sizeof res->error, "out of memory");
        return -1;
    }
    chunk_query_t q = {.key = key, .min = min, .max = max, .key_len = key_len, .offset = offset};
    if (p->cadence && got == p->limit && !chunk_tail(p, &q, got, n))
        return -1;
    p->wall_now = (int64_t)time(NULL);
    if (n > 0)
        planner_chunk_run(p, n);
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
    while (planner_renew_between_chunks(p)) {
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
    while (planner_renew_between_chunks(p)) {
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
    planner_scores_fields(&p);
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
        /* Chunks of the due walk's size: the cadence walk's query asks
         * for no scores either (chunk_tail). */
        bool walked = true;
        for (int i = 0; i < n_ranges && walked; i++)
            walked = cadence_walk(&p, &ranges[i], chunk);
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
