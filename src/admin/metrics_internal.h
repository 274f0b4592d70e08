/*
 * metrics_internal.h - the metrics registry's struct, which its two files
 * share: metrics.c writes it (observations from any thread, published loop
 * state) and metrics_render.c reads it into the Prometheus text. Nothing
 * outside src/admin/metrics*.c includes it; everyone else sees metrics_t as
 * opaque (metrics.h).
 */
#ifndef NOTIFD_METRICS_INTERNAL_H
#define NOTIFD_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "notifd/admin/metrics.h"
#include "notifd/ops.h"

#define LATENCY_BUCKETS 15
#define LAST_ERROR_MAX 160

/* Upper bounds in seconds; the last bucket is +Inf. Dense below 1 ms, where
 * the decide latency goal and a local Redis round trip live. */
extern const double metrics_latency_bounds[LATENCY_BUCKETS - 1];

/* Bucket counts are per bucket (not cumulative) so an observation touches
 * one cell; the renderer accumulates. There is no separate count cell: the
 * rendered _count is the sum of the buckets read, so +Inf == _count holds in
 * every scrape even while writers run. */
typedef struct histogram {
    _Atomic uint64_t buckets[LATENCY_BUCKETS];
    _Atomic uint64_t sum_ns;
} histogram_t;

struct metrics {
    struct timespec started_mono;
    int64_t started_unix;

    /* requests (ops.c) */
    _Atomic uint64_t requests[OP_COUNT + 1][2];
    _Atomic uint64_t errors[PROTO_ERROR_COUNT];
    histogram_t request_seconds[OP_COUNT + 1];

    /* decisions */
    _Atomic uint64_t decisions[NOTIFD_MAX_CHANNELS][METRICS_MODE_COUNT][METRICS_REASON_COUNT];
    _Atomic uint64_t arm_decisions[2][EXPERIMENT_MAX_ARMS + 1][METRICS_REASON_COUNT];
    _Atomic uint64_t priority_decisions[NOTIFD_MAX_CHANNELS][PRIORITY_COUNT][METRICS_REASON_COUNT];
    char arm_names[2][EXPERIMENT_MAX_ARMS][EXPERIMENT_NAME_MAX]; /* under text_lock */
    int n_arms[2];
    histogram_t decide_seconds[METRICS_MODE_COUNT];
    _Atomic uint64_t stored_answers_corrupt;
    _Atomic uint64_t invalid_observations;
    _Atomic uint64_t degraded[METRICS_DEGRADED_COUNT];
    /* global rate limits: [channel][0 channel's, 1 + tag][shadow], and
     * [channel][which][open, closed, reset] */
    _Atomic uint64_t rate_limited[NOTIFD_MAX_CHANNELS][1 + CONFIG_LIMIT_TAGS_MAX][2];
    _Atomic uint64_t rate_limit_errors[NOTIFD_MAX_CHANNELS][1 + CONFIG_LIMIT_TAGS_MAX][3];

    /* stored values read back out of range (stored_fields.h) */
    _Atomic uint64_t stored_invalid[STORED_FIELD_COUNT];

    /* Redis */
    histogram_t redis_rtt;
    _Atomic int redis_state;
    _Atomic uint64_t redis_commands, redis_replies, redis_errors, redis_timeouts,
        redis_disconnects, redis_reconnects, redis_rejected, redis_queue_full, redis_resent,
        redis_expired, redis_noscript, redis_readonly, redis_probes, redis_congestions,
        redis_invalidations;
    _Atomic int redis_tracking;
    /* the decide path's member cache (decide_cache.c) */
    _Atomic uint64_t member_cache[METRICS_MEMBER_CACHE_COUNT];
    _Atomic int64_t redis_pending, redis_in_flight, redis_queued;

    /* server */
    _Atomic int64_t conn_open;
    _Atomic uint64_t conn_accepted, conn_rejected, conn_closed_idle, lines, lines_too_long,
        bytes_in, bytes_out, read_pauses;

    /* config and lifecycle */
    _Atomic uint64_t config_generation, reloads_ok, reloads_failed;
    _Atomic bool stopping;

    /* planner */
    _Atomic uint64_t passes_started, passes_finished, members_planned, members_failed,
        pass_ns_total, last_pass_ns, last_pass_members, last_pass_failed, partitions_failed;
    _Atomic int64_t passes_running, last_pass_end_unix;

    /* events */
    _Atomic uint64_t events[METRICS_EVENT_COUNT];
    _Atomic int64_t events_spool_bytes, events_queue_depth, events_queue_bytes;
    /* feedback queue */
    _Atomic uint64_t feedback[METRICS_FEEDBACK_COUNT];
    _Atomic int64_t feedback_queue_depth, feedback_spool_bytes;

    /* Rarely-changing text, behind a lock the hot path never takes. */
    pthread_mutex_t text_lock;
    int n_channels;
    char channels[NOTIFD_MAX_CHANNELS][NOTIFD_CHANNEL_NAME_MAX];
    int n_limit_tags;
    char limit_tags[CONFIG_LIMIT_TAGS_MAX][CONFIG_LIMIT_TAG_MAX];
    char redis_last_error[LAST_ERROR_MAX];
};

#define RELAXED memory_order_relaxed
#define ADD(cell, n) atomic_fetch_add_explicit(&(cell), (n), RELAXED)
#define SET(cell, v) atomic_store_explicit(&(cell), (v), RELAXED)
#define GET(cell) atomic_load_explicit(&(cell), RELAXED)


#endif
