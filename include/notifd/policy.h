/*
 * policy.h - wiring of the fast policy (decide path state) and the slow
 * policy (planner worker) into the daemon's lifecycle, and the state the
 * decide path keeps between requests.
 */
#ifndef NOTIFD_POLICY_H
#define NOTIFD_POLICY_H

#include <stdbool.h>

#include "notifd/app.h"
#include "notifd/core/decision.h"
#include "notifd/core/experiments.h"
#include "notifd/core/threshold.h"
#include "notifd/core/types.h"

typedef struct policy_state {
    int script_record;   /* store script ids */
    int script_feedback;
    int script_plan_write; /* planner.h: shared by the replan op and the worker */
    /* Threshold (baseline) mode: one online-calibrated threshold per channel,
     * process-local, like the previous system's per-instance threshold. */
    threshold_state_t threshold[EXPERIMENT_MAX_ARMS + 1][NOTIFD_MAX_CHANNELS]; /* [fast arm + 1] */
    bool threshold_ready[EXPERIMENT_MAX_ARMS + 1][NOTIFD_MAX_CHANNELS];
    /* Decisions by experiment arm ([arm + 1], 0 = control), for stats. */
    uint64_t fast_arm_decisions[EXPERIMENT_MAX_ARMS + 1][REASON_COUNT];
    uint64_t slow_arm_decisions[EXPERIMENT_MAX_ARMS + 1][REASON_COUNT];
    struct overlay_table *overlay; /* decide.c: effects of decisions in flight */
    struct plan_cache *plan_cache; /* decide.c: plans for fast.plan_cache_ms, lazily made */
    struct member_cache *member_cache; /* decide_cache.c: member state, lazily made */
    size_t member_cache_entries;   /* what it was made with */
    struct deadline_list *deadlines; /* decide.c: fast.deadline_ms, lazily made */
} policy_state_t;

/* Registers scripts and starts the planner worker; 0 or -1. Call after
 * store_create and before store_configure (scripts load on connect). */
int policy_start(app_t *app);
/* A new config snapshot is about to be installed. */
void policy_apply_config(app_t *app, const config_t *next);
/* Plans this instance just changed: drop them from the decide path's plan
 * cache (fast.plan_cache_ms), one member or all. */
void policy_forget_plan(app_t *app, const char *member, size_t len);
void policy_forget_plans(app_t *app);
/* This instance wrote `member`'s state outside a decide (feedback): its
 * connection's own writes are not invalidated by Redis (NOLOOP). */
void policy_forget_member(app_t *app, const char *member, size_t len);
/* Stops the planner worker and frees policy state (loop thread, at stop). */
void policy_stop(app_t *app);

static inline policy_state_t *policy_state(app_t *app) { return app->policy; }

/* How long a member's feature hash lives without activity: long enough that
 * decay, not expiry, is what forgets (eight half-lives leave 0.4%), and at
 * least 90 days. */
static inline long long policy_member_ttl_s(const config_t *cfg)
{
    double t = cfg->policy.half_life_s * 8.0;
    return (long long)(t > 90.0 * 86400 ? t : 90.0 * 86400);
}

#endif
