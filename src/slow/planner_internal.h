/*
 * planner_internal.h - what the planner's files share (not an API):
 * planner.c (the thread, passes, leases), planner_conn.c (the worker's
 * Redis connection), planner_partition.c (one partition: the walks, the
 * cursor, the schedule changes of a chunk) and planner_pipeline.c (a
 * chunk's command groups, their replies, the plan of each member). See
 * planner.c's top comment for the whole shape.
 */
#ifndef NOTIFD_PLANNER_INTERNAL_H
#define NOTIFD_PLANNER_INTERNAL_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "notifd/config/config.h"
#include "notifd/core/keys.h"
#include "notifd/core/score_prior.h"
#include "notifd/lib/resp_buf.h"
#include "notifd/lib/number_format.h"
#include "notifd/slow/planner.h"
#include "notifd/store/reply_arena.h"

/* A chunk is this many batches, and at least PLANNER_CHUNK_MIN members: one
 * ZRANGEBYSCORE feeds them all, and the due walk's schedule changes go out
 * together at its end, sorted (small chunks made the old schedule's sorted
 * moves cost Redis twice as much per member: 1.7 us at 512 members per
 * chunk, 0.8-1.0 us at 4096). The cadence walk uses half-size chunks. */
#define PLANNER_BATCHES_PER_CHUNK 8
#define PLANNER_CHUNK_MIN 4096
/* Fields of a feature hash looked at; a hash with more is read in part. */
#define PLANNER_MAX_PAIRS 256
/* The worker's command timeout is never below this: a pipeline of a few
 * thousand commands may legitimately take longer than a fast-path command
 * timeout (tens of ms), and nothing latency-sensitive waits on the worker. */
#define PLANNER_MIN_TIMEOUT_MS 1000
#define PLANNER_MAX_GROUPS 16
/* Most members per schedule command (ZADD / ZREM) at the end of a chunk;
 * a smaller batch_size makes the slices smaller too (see part_ctx.slice). */
#define PLANNER_SCHED_SLICE_MAX 512
/* While this instance's fast path is busy (its store sent a command within
 * the last PLANNER_BUSY_LINGER_MS), a pass goes in small steps: chunk
 * queries of at most PLANNER_BUSY_CHUNK members, groups of at most
 * PLANNER_BUSY_BATCH members with one read group in flight instead of two,
 * and schedule slices of PLANNER_BUSY_BATCH members, each answered before
 * the next goes out. Redis works through everything one client has sent
 * before it turns to the next, so this bounds the planner work a decide can
 * find ahead of it to about 0.15 ms of Redis time (1-2 ms in full steps).
 * An idle fast path gets the full steps and the pass's full speed. */
#define PLANNER_BUSY_CHUNK 256
#define PLANNER_BUSY_BATCH 16
#define PLANNER_BUSY_LINGER_MS 100
/* The largest planner.lease_ms the config accepts (config.c): a lease key
 * that lives longer than this, or has no expiry at all, was not written by
 * any notifd, and the lease script takes it over (planner.c). */
#define PLANNER_LEASE_MS_MAX 3600000



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
    reply_arena_t arena;             /* replies of c (reply_arena.h, manual resets) */
    resp_buf_t out;                  /* RESP of the group being formatted */
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
    /* The score prior's pooled calibration (score_prior.h), by channel:
     * this pass's members add to score_pass, and the pass plans with
     * score_cal, the passes before merged in at each pass's start. */
    score_calibration_t score_pass[NOTIFD_MAX_CHANNELS];
    score_calibration_t score_cal[NOTIFD_MAX_CHANNELS];
    double pass_t0;                  /* planner_mono_s() at the start of the pass */
    uint64_t pass_members;           /* members read so far in the pass */
};

uint64_t planner_mono_ms(void);
double planner_mono_s(void);
/* The worker's stop flag (set by planner_stop or the daemon stopping). */
bool planner_stopping(planner_t *pl);

/* A non-negative decimal of at most 18 digits. */
bool planner_str_i64(const char *s, size_t len, int64_t *out);

/* Whether an error reply is about the key it names (WRONGTYPE: a key of
 * the wrong type, so that partition only) rather than about Redis as a
 * whole (LOADING, OOM, NOAUTH, READONLY, BUSY...), which ends the pass as a
 * failed connection does: 64 partitions "failed" would hide an outage. */
bool planner_error_is_the_keys(const redisReply *r);

/* A partition the pass could not walk (whole or in part) because one of its
 * keys is broken: a key of the wrong type, a set whose walk cannot advance.
 * Counted in res->partitions_failed and the metrics, logged
 * (rate-limited) with `what` (the key or command) and `why` (Redis's
 * error); the pass goes on with the next partition. */
void planner_partition_failed(planner_t *pl, planner_result_t *res, int partition,
                              const char *what, const char *why);



/* Drops the worker's connection after a failure and records `what` in
 * res->error. */
void planner_conn_failed(planner_t *pl, const config_t *cfg, planner_result_t *res,
                         const char *what);
/* One command and its reply (in the arena), or NULL after
 * planner_conn_failed. */
redisReply *planner_conn_command(planner_t *pl, const config_t *cfg, planner_result_t *res,
                                 int argc, const char **argv, const size_t *lens);
/* Makes sure the connection is up (`force` ignores the reconnect backoff)
 * and the plan-write script loaded (pl->sha_write); false with res->error
 * set when Redis cannot be used now. */
bool planner_conn_ensure(planner_t *pl, const config_t *cfg, bool force, planner_result_t *res);
/* Closes the connection, if any, and drops what was half formatted. */
void planner_conn_drop(planner_t *pl);

extern const char planner_lease_renew_script[];

/* ------------------------------------------------------------------ */
/* One partition: planner_partition.c and planner_pipeline.c          */

/* A group of commands in the pipeline; groups are answered in the order
 * they were sent (part_ctx.fifo). */
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
    uint32_t raw;        /* its place in the chunk query's reply (chunk_tail) */
} member_slot_t;

/* One partition's walk, its chunk and its pipeline (worker thread only). */
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
    size_t removed_at_last; /* ... of which planner_chunk_reschedule removed */
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
    sched_move_t *moves; /* planner_chunk_reschedule's buffers, one entry per slot */
    uint32_t *removed;
    char *ids;           /* the chunk's member ids, back to back */
    size_t ids_cap;
    group_t fifo[PLANNER_MAX_GROUPS];
    int fifo_head, fifo_count;
    const char *channel_names[NOTIFD_MAX_CHANNELS];
    size_t channel_name_lens[NOTIFD_MAX_CHANNELS];
    /* slow.priors.score_strength > 0 in the base or an arm: each member's
     * read adds an HMGET of its week hash for these fields, "<ch>:scores"
     * and "<ch>:ewma" per channel (planner_scores_fields). */
    bool read_scores;
    char score_fields[2 * NOTIFD_MAX_CHANNELS][NOTIFD_CHANNEL_NAME_MAX + 8];
    size_t score_field_lens[2 * NOTIFD_MAX_CHANNELS];
    uint64_t planned_since_report;
} part_ctx_t;

static inline const char *slot_id(const part_ctx_t *p, const member_slot_t *s)
{
    return p->ids + s->id_off;
}

/* Whether a pass reads the members' recent scores: score_strength > 0 in
 * the base slow section or in any slow arm. Sets p->read_scores and the
 * HMGET's fields. */
void planner_scores_fields(part_ctx_t *p);
/* A pass's start: the last pass's sums join the calibration this pass
 * plans with, which is logged (at info). */
void planner_scores_new_pass(planner_t *pl, const config_t *cfg);

/* The member's HMGET of its week hash (the read_scores fields, in order)
 * into mf's score-predicted open rates; and its sends into the pass's
 * calibration. A reply of any other shape leaves mf as it is. */
struct member_features;
void planner_scores_apply(part_ctx_t *p, const char *member, size_t member_len,
                          const redisReply *week, struct member_features *mf);

/* Hands the commands formatted in pl->out to hiredis and writes them out
 * now; false (p->broken) when the connection failed. */
bool planner_part_flush(part_ctx_t *p);
/* The next reply on the connection, or NULL (p->broken). */
redisReply *planner_part_reply(part_ctx_t *p);
/* Whether this instance's fast path is busy (PLANNER_BUSY_CHUNK). */
bool planner_fast_path_busy(const part_ctx_t *p);
/* Holds the next command back while the fast path has commands in flight
 * (for at most ~2 ms). */
void planner_yield_to_fast_path(part_ctx_t *p);
/* Runs the pipeline over the chunk's `n` members, then its schedule
 * changes (planner_pipeline.c). */
void planner_chunk_run(part_ctx_t *p, size_t n);
/* Between chunks: stop, and the lease renewal when due; false when the
 * partition must stop (planner_pipeline.c). */
bool planner_renew_between_chunks(part_ctx_t *p);
/* The schedule changes of a chunk whose plan writes are all answered
 * (planner_partition.c). */
void planner_chunk_reschedule(part_ctx_t *p, size_t n);

/* Walks partition `partition` as of `as_of` under its lease: the cadence
 * window, then the due set (planner_partition.c). A broken key of the
 * partition (planner_partition_failed) stops only the walk that needs it:
 * a due set of the wrong type still lets the cadence be walked, and the
 * other way round. False when a key was broken (already counted). */
bool planner_partition_run(planner_t *pl, const config_t *cfg, int partition, int64_t as_of,
                           planner_result_t *res);

#endif
