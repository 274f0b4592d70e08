/*
 * app.h - the daemon's process-wide context, owned by main.c and handed to
 * every shell module. There are no globals: tests can run several.
 *
 * Thread rules: everything here belongs to the loop thread, except the
 * config pointer, which the planner thread reads through app_config_acquire()
 * (a mutex guards the pointer swap; the snapshot itself is immutable).
 */
#ifndef NOTIFD_APP_H
#define NOTIFD_APP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "notifd/config/config.h"
#include "notifd/net/protocol.h"
#include "notifd/net/server.h"
#include "notifd/store/store.h"

/* Ops of the producer protocol: the one list of ids and wire names (the
 * dispatch table in ops.c, the op label of metrics and stats). */
#define NOTIFD_OPS(X)                                                         \
    X(AUTH, "auth")                                                           \
    X(HEALTH, "health")                                                       \
    X(STATS, "stats")                                                         \
    X(DECIDE, "decide")                                                       \
    X(FEEDBACK, "feedback")                                                   \
    X(PLAN, "plan")                                                           \
    X(REPLAN, "replan")                                                       \
    X(PLANNER_RUN, "planner_run")                                             \
    X(EXPLAIN, "explain")

typedef enum op_id {
#define NOTIFD_OP_ENUM(id, name) OP_##id,
    NOTIFD_OPS(NOTIFD_OP_ENUM)
#undef NOTIFD_OP_ENUM
    OP_COUNT,
    OP_UNKNOWN = OP_COUNT
} op_id_t;

/* The op's wire name; "unknown" for OP_UNKNOWN and anything out of range. */
static inline const char *ops_name(op_id_t op)
{
    static const char *const names[OP_COUNT + 1] = {
#define NOTIFD_OP_NAME(id, name) [OP_##id] = name,
        NOTIFD_OPS(NOTIFD_OP_NAME)
#undef NOTIFD_OP_NAME
        [OP_UNKNOWN] = "unknown",
    };
    return (int)op >= 0 && op <= OP_COUNT ? names[op] : "unknown";
}

/* Each module's state, opaque outside it: the compiler checks who gets what. */
struct policy_state;
struct planner;
struct metrics;
struct events;
struct fbq;
struct admin;

typedef struct app_counters {
    /* Requests and errors are counted once, in the metrics registry
     * (metrics_requests, metrics_errors). */
    uint64_t reloads_ok;
    uint64_t reloads_failed;
} app_counters_t;

typedef struct app {
    uv_loop_t *loop;
    char config_path[CONFIG_PATH_MAX];
    config_t *config;             /* current snapshot; swap under config_lock */
    pthread_mutex_t config_lock;
    server_t *server;
    store_t *store;
    int64_t started_unix;
    uint64_t started_ms;
    bool stopping;
    int exit_code;
    app_counters_t counters;
    struct policy_state *policy;  /* fast-path state (policy.h), may be NULL */
    struct planner *planner;      /* slow-policy worker (planner.h), may be NULL */
    struct metrics *metrics;      /* metrics registry (metrics.h), may be NULL */
    struct events *events;        /* decision-event sink (events.c), may be NULL */
    struct fbq *feedback_queue;   /* feedback waiting for Redis (feedback_queue.c), may be NULL */
    struct admin *admin;          /* admin HTTP endpoint (admin.c), NULL when off */
} app_t;

/* A reference to the current config snapshot; release with config_release. */
config_t *app_config_acquire(app_t *app);
/* Installs a new snapshot (takes over the caller's reference). */
void app_config_swap(app_t *app, config_t *next);

#endif
