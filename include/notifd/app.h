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

#include "notifd/config.h"
#include "notifd/protocol.h"
#include "notifd/server.h"
#include "notifd/store.h"

/* Ops of the producer protocol; the order is the order of ops_table. */
typedef enum op_id {
    OP_AUTH = 0,
    OP_HEALTH,
    OP_STATS,
    OP_DECIDE,
    OP_FEEDBACK,
    OP_PLAN,
    OP_REPLAN,
    OP_PLANNER_RUN,
    OP_COUNT,
    OP_UNKNOWN = OP_COUNT
} op_id_t;

/* Each module's state, opaque outside it: the compiler checks who gets what. */
struct policy_state;
struct planner;
struct metrics;
struct events;
struct fbq;
struct admin;

typedef struct app_counters {
    uint64_t requests[OP_COUNT + 1][2];       /* [op][0 ok, 1 error] */
    uint64_t errors[PROTO_ERROR_COUNT];
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
