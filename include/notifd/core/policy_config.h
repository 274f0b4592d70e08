/*
 * policy_config.h - the policy part of the configuration: fast.* (the
 * decide path), slow.* (the planner) and features.* (how feedback decays).
 *
 * The fast and slow sections are separate structs on purpose: an experiment
 * arm overrides one layer without touching the other (the two layers
 * evolve independently: docs/slow-policy.md), so each layer's parameters can be copied and
 * overridden as a unit. Every field is filled with its default first; parsing
 * only overrides keys that are present, which is also how arm overrides are
 * applied on top of the base config.
 */
#ifndef NOTIFD_POLICY_CONFIG_H
#define NOTIFD_POLICY_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "notifd/core/actions.h"
#include "notifd/core/calendar.h"
#include "notifd/core/estimate.h"
#include "notifd/core/experiments.h"
#include "notifd/core/pacing.h"
#include "notifd/core/ranker.h"
#include "notifd/core/types.h"
#include "notifd/core/utility.h"

typedef enum fast_mode {
    FAST_MODE_HIERARCHICAL = 0, /* read the plan, flip the pacing coin, rank */
    FAST_MODE_THRESHOLD = 1,    /* the previous single-policy system */
} fast_mode_t;

typedef enum store_error_policy {
    STORE_ERROR_SKIP = 0,         /* answer send:false, reason "degraded" */
    STORE_ERROR_DEFAULT_PLAN = 1, /* decide on the default plan, no counters */
} store_error_policy_t;

typedef struct fast_config {
    fast_mode_t mode;
    pacing_params_t pacing;
    double cap_factor;            /* hard cap = ceil(per_week * cap_factor) */
    bool rolling_cap;             /* a cap also bounds sends in any 7 days */
    double rolling_cap_factor;    /* ... of ceil(per_week * this), at least the weekly cap */
    int rolling_cap_min_slack;    /* ... and at least this above it (decision_rolling_cap) */
    quiet_hours_t quiet_hours;    /* member-local */
    int dedup_days;               /* a message id is not sent twice within this */
    int64_t idempotency_ttl_s;    /* how long a decision is remembered */
    store_error_policy_t on_store_error;
    int quality_history;          /* recent best scores kept per member and channel */
    ranker_weights_t ranker[NOTIFD_MAX_CHANNELS];
    ranker_params_t exploration;
    double threshold_target_send_rate; /* threshold mode: share of opportunities */
    double threshold_initial;
    int plan_cache_ms;            /* 0: read the plan from Redis on every decide */
    int member_cache_ms;          /* 0: read the member's state on every decide */
    int member_cache_entries;     /* of the member cache (the base config's counts) */
    int deadline_ms;              /* a decide unanswered this long degrades alone; 0: none */
    /* Channels outside the slow policy's grid are paced at this per-week
     * value, capped like a plan, unless listed in unpaced_mask. */
    double unplanned_per_week[NOTIFD_MAX_CHANNELS];
    uint32_t unpaced_mask;        /* fast.unpaced_channels: best message whenever allowed */
    /* A "transactional" candidate still respects a channel opt-out (the
     * default); false: it goes to an opted-out channel too (priority.h). */
    bool transactional_respects_optout;
} fast_config_t;

typedef struct slow_config {
    uint32_t default_mask;                      /* planned channels with a default */
    double default_per_week[NOTIFD_MAX_CHANNELS];
    action_grid_t grid;                         /* slow.actions: the planned channels */
    slow_priors_t priors;
    slow_weights_t weights;
    /* slow.max_per_week: no action, default plan or stored plan may ask for
     * more messages a week on a channel (a stored plan above it is not a
     * plan, stored_fields.h). Base only: arms share it. */
    double max_per_week;
    /* slow.explore_prob: the probability that a plan is a neighbour of the
     * best action (plan_explore.h); 0 = greedy plans. */
    double explore_prob;
} slow_config_t;

/* One experiment layer (experiments.slow or experiments.fast): arms with
 * shares; members outside every share are in "control". */
typedef struct experiment_layer {
    char salt[EXPERIMENT_SALT_MAX];
    int n_arms;
    char names[EXPERIMENT_MAX_ARMS][EXPERIMENT_NAME_MAX];
    double shares[EXPERIMENT_MAX_ARMS];
} experiment_layer_t;

typedef struct policy_config {
    fast_config_t fast;           /* the base (control) fast layer */
    slow_config_t slow;           /* the base (control) slow layer */
    double half_life_s;           /* features.half_life_days */
    int64_t event_id_ttl_s;       /* features.event_id_ttl_s: feedback event ids remembered */
    double attribution_window_s;  /* = slow.priors.attribution_window_s */
    /* experiments.holdout_share / holdout_salt: members who never get a
     * paced message (reason "holdout"), to measure what messages are worth
     * at all. share 0: no holdout. */
    double holdout_share;
    char holdout_salt[EXPERIMENT_SALT_MAX];
    experiment_layer_t fast_layer;
    experiment_layer_t slow_layer;
    fast_config_t *fast_arms;     /* fast_layer.n_arms copies of `fast`, overridden */
    slow_config_t *slow_arms;     /* slow_layer.n_arms copies of `slow`, overridden */
} policy_config_t;

/* The fast (decide) or slow (planner) parameters for a member: its arm's, or
 * the base ones for control. *arm_index is -1 for control; *arm_name is the
 * arm's name or "control". Pure and stable (experiments.h). */
const fast_config_t *policy_fast_for(const policy_config_t *pc, const char *member,
                                     size_t member_len, int *arm_index, const char **arm_name);
/* Whether the member is in the permanent holdout (experiments.h). */
bool policy_in_holdout(const policy_config_t *pc, const char *member, size_t member_len);

const slow_config_t *policy_slow_for(const policy_config_t *pc, const char *member,
                                     size_t member_len, int *arm_index, const char **arm_name);

#endif
