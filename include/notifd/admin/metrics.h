/*
 * metrics.h - the daemon's metrics registry: counters, gauges and latency
 * histograms, rendered in the Prometheus text exposition format (0.0.4) by
 * metrics_render() for the admin endpoint (admin.c).
 *
 * Thread rules. Writers are the loop thread (requests, decisions, Redis
 * round trips, the published loop state), the planner thread (planner
 * progress) and later the event sink; the reader is the admin HTTP thread.
 * Every numeric cell is a relaxed atomic, so an observation never blocks and
 * a scrape never sees a torn value. A scrape may see one series a few
 * observations ahead of another, which Prometheus accepts; within one
 * histogram, _count is the sum of the bucket values read, so the +Inf bucket
 * always equals _count. The only non-numeric state (channel names and the
 * last Redis error text) changes rarely and sits behind a mutex that the hot
 * path never takes.
 *
 * State that lives in loop-thread structs (store and server counters, config
 * generation, stopping) is copied in by metrics_publish_*(), which admin.c
 * calls from a loop timer; the admin thread reads only the copies.
 *
 * Every function accepts a NULL registry and does nothing, so modules can be
 * tested without one. app.h declares `struct metrics` without including
 * this header, so app->metrics is a metrics_t * to the compiler.
 */
#ifndef NOTIFD_METRICS_H
#define NOTIFD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/app.h"
#include "notifd/config/config.h"
#include "notifd/core/decision.h"
#include "notifd/core/experiments.h"
#include "notifd/net/protocol.h"
#include "notifd/net/server.h"
#include "notifd/store/store.h"
#include "notifd/core/stored_fields.h"
#include "notifd/core/types.h"

typedef struct metrics metrics_t;

metrics_t *metrics_create(void);
void metrics_free(metrics_t *m);

/* ---- requests (ops.c) ---------------------------------------------------- */

void metrics_observe_request(metrics_t *m, op_id_t op, bool ok, proto_error_t code, double seconds);
/* What metrics_observe_request counted: the `stats` op reads these, so a
 * request is counted once (0 without a registry). */
uint64_t metrics_requests(const metrics_t *m, op_id_t op, bool ok);
uint64_t metrics_errors(const metrics_t *m, proto_error_t code);

/* ---- decisions (decide path) --------------------------------------------- */

/* Why a decision came out as it did; the label values of
 * notifd_decisions_total{reason=...}. The order is fixed (it indexes a
 * table); the names match the protocol's `reason` strings, plus `duplicate`
 * for a retried opportunity answered from its idempotency record. */
typedef enum metrics_reason {
#define METRICS_REASON_ENUM(id, name) METRICS_REASON_##id = REASON_##id,
    DECISION_REASONS(METRICS_REASON_ENUM)
#undef METRICS_REASON_ENUM
    METRICS_REASON_DUPLICATE = REASON_COUNT,
    METRICS_REASON_COUNT
} metrics_reason_t;

/* Decision modes: label values of {mode=...}. */
enum { METRICS_MODE_HIERARCHICAL = 0, METRICS_MODE_THRESHOLD = 1, METRICS_MODE_COUNT = 2 };

const char *metrics_reason_name(metrics_reason_t reason);
/* The reason whose name is `name` (the protocol string), or -1. */
int metrics_reason_from_name(const char *name);

/* One decision: counts notifd_decisions_total{channel,mode,reason} and
 * observes `seconds` (request received to answer) in
 * notifd_decide_duration_seconds{mode}. `channel` is the configured channel
 * index; an out-of-range channel, mode or reason is counted in
 * notifd_metrics_invalid_observations_total instead, so a caller bug shows. */
void metrics_observe_decision(metrics_t *m, int channel, int mode, int reason, double seconds);

/* A decision that considered candidates of a class above normal
 * (priority.h, PRIORITY_HIGH or PRIORITY_TRANSACTIONAL):
 * notifd_priority_decisions_total{channel,priority,reason}. Out-of-range
 * values count as invalid observations. */
void metrics_observe_priority_decision(metrics_t *m, int channel, int priority, int reason);

/* A retried opportunity's stored answer (P idem:{M}:<opportunity>) was not
 * fit to replay: notifd_stored_answers_corrupt_total. */
void metrics_stored_answer_corrupt(metrics_t *m);

/* The decide path's member cache: a decide without a read (hit), one that
 * could have used it and read (miss), a record refused on a cached or read
 * view that was stale (conflict: the decide read again or chose again). */
typedef enum metrics_member_cache {
    METRICS_MEMBER_CACHE_HIT = 0,
    METRICS_MEMBER_CACHE_MISS,
    METRICS_MEMBER_CACHE_CONFLICT,
    METRICS_MEMBER_CACHE_COUNT
} metrics_member_cache_t;
void metrics_observe_member_cache(metrics_t *m, metrics_member_cache_t what);

/* Why a decision was answered `degraded` (fast.on_store_error):
 * notifd_decide_degraded_total{cause}. */
typedef enum metrics_degraded_cause {
    METRICS_DEGRADED_NOT_READY = 0,   /* Redis down or reconnecting: refused at once */
    METRICS_DEGRADED_QUEUE_FULL,      /* redis.max_queued commands already wait */
    METRICS_DEGRADED_DEADLINE,        /* fast.deadline_ms passed */
    METRICS_DEGRADED_ERROR_REPLY,     /* Redis answered an error (OOM, MISCONF, ...) */
    METRICS_DEGRADED_CONNECTION,      /* the connection was lost and the command not resent */
    METRICS_DEGRADED_INTERNAL,        /* out of memory in notifd */
    METRICS_DEGRADED_COUNT
} metrics_degraded_cause_t;
const char *metrics_degraded_cause_name(int cause);
void metrics_observe_degraded(metrics_t *m, int cause);

/* Names of the configured channels, used as label values. Called by admin.c
 * from the loop thread when a config generation is first seen. Counters are
 * kept per channel index: a reload that renames channel 1 continues its
 * series under the new name. */
void metrics_set_channel_names(metrics_t *m, const char names[][NOTIFD_CHANNEL_NAME_MAX], int n);

/* One global rate limiter's verdict on a send (decide_record.lua's letter:
 * 'l' limited, 's' would be limited (shadow), 'o' / 'c' an error failed
 * open / closed, 'r' a value that was no TAT reset, 'a' allowed). `which` is
 * 0 for the channel's own limit, 1 + t for limited tag t. Counted in
 * notifd_rate_limited_total{channel,tag,shadow} and
 * notifd_rate_limit_errors_total{channel,tag,action}. */
void metrics_observe_rate_limit(metrics_t *m, int channel, int which, char code);
/* The limited tags' names (config_global_limits_t.tags), label values of
 * those two; set by admin.c with the channel names. */
void metrics_set_limit_tag_names(metrics_t *m, const char names[][CONFIG_LIMIT_TAG_MAX], int n);

/* Decisions by experiment arm: layer 0 = fast, 1 = slow; arm -1 = control.
 * Arm names come from the config in force (set by admin.c on each new
 * generation); counts are kept by arm position. */
void metrics_observe_arm_decision(metrics_t *m, int layer, int arm, int reason);
void metrics_set_arm_names(metrics_t *m, int layer, const char names[][EXPERIMENT_NAME_MAX], int n);

/* ---- Redis (store.c observer) -------------------------------------------- */

/* Signature matches store_set_rtt_observer(): pass the registry as `arg`. */
void metrics_observe_redis_rtt(metrics_t *m, double seconds);

/* ---- planner progress (planner thread) ----------------------------------- */

/* A pass began: notifd_planner_passes_started_total, and the
 * notifd_planner_passes_running gauge goes up until pass_finished. */
void metrics_planner_pass_started(metrics_t *m);
/* `count` more members were planned and stored during the current pass;
 * call per batch so a long pass shows progress in
 * notifd_planner_members_planned_total. */
/* ---- stored state (stored_fields.h) -------------------------------------- */

/* Adds one read's unusable stored values to
 * notifd_stored_invalid_total{field=<stored_field_name>}; any thread. */
void metrics_observe_stored_invalid(metrics_t *m, const stored_invalid_t *invalid);

void metrics_planner_member_planned(metrics_t *m, uint64_t count);
/* A pass ended after `seconds`. `planned` is the pass total (published as
 * the notifd_planner_last_pass_members gauge; it is NOT added to the counter
 * again, member_planned already did), `failed` is added to
 * notifd_planner_members_failed_total. */
void metrics_planner_pass_finished(metrics_t *m, double seconds, uint64_t planned, uint64_t failed);
/* A pass left a partition (or part of one) because a key of it is broken:
 * notifd_planner_partitions_failed_total. */
void metrics_planner_partition_failed(metrics_t *m);

/* ---- decision events (event sink) ---------------------------------------- */

typedef enum metrics_event {
    METRICS_EVENT_QUEUED = 0,   /* accepted into the in-memory queue */
    METRICS_EVENT_SENT,         /* delivered to events.url (2xx) */
    METRICS_EVENT_RETRIED,      /* a delivery attempt failed and will be retried */
    METRICS_EVENT_SPOOLED,      /* written to events.spool_dir */
    METRICS_EVENT_DEAD_LETTERED,/* rejected by the endpoint for good, set aside */
    METRICS_EVENT_DROPPED,      /* lost: queue and spool full */
    METRICS_EVENT_COUNT
} metrics_event_t;

void metrics_events_add(metrics_t *m, metrics_event_t kind, uint64_t n);
void metrics_events_set_spool_bytes(metrics_t *m, int64_t bytes);
void metrics_events_set_queue_depth(metrics_t *m, int64_t depth);
void metrics_events_set_queue_bytes(metrics_t *m, int64_t bytes);

/* ---- the feedback queue (feedback_queue.c) ------------------------------ */

typedef enum metrics_feedback {
    METRICS_FEEDBACK_QUEUED = 0,    /* accepted while Redis could not take it */
    METRICS_FEEDBACK_REPLAYED,      /* applied from the queue */
    METRICS_FEEDBACK_SPOOLED,       /* written to feedback.spool_dir */
    METRICS_FEEDBACK_DEAD_LETTERED, /* refused by Redis for good, set aside */
    METRICS_FEEDBACK_REFUSED,       /* answered unavailable: memory and spool full */
    METRICS_FEEDBACK_COUNT
} metrics_feedback_t;

void metrics_feedback_add(metrics_t *m, metrics_feedback_t kind, uint64_t n);
void metrics_feedback_set_queue_depth(metrics_t *m, int64_t depth);
void metrics_feedback_set_spool_bytes(metrics_t *m, int64_t bytes);

/* ---- loop-thread state, copied for the admin thread ---------------------- */

void metrics_publish_store(metrics_t *m, store_state_t state, const char *last_error,
                           const store_counters_t *c);
void metrics_publish_server(metrics_t *m, const server_counters_t *c);
void metrics_publish_config(metrics_t *m, uint64_t generation, uint64_t reloads_ok,
                            uint64_t reloads_failed);
void metrics_publish_stopping(metrics_t *m, bool stopping);

/* Readiness as /readyz reports it: true when Redis is READY, a config is
 * loaded and the daemon is not stopping. Otherwise writes why into `why`. */
bool metrics_ready(metrics_t *m, char *why, size_t why_size);

/* ---- rendering (admin thread) -------------------------------------------- */

/* Renders every metric into a new malloc'd, NUL-terminated buffer. Returns
 * its length, or 0 with *out = NULL when out of memory. */
size_t metrics_render(metrics_t *m, char **out);

/* Escapes a label value (backslash, double quote, newline) into `out`, which
 * must hold 2 * strlen(value) + 1 bytes. Exposed for the unit test. */
void metrics_escape_label(const char *value, char *out);

#endif
