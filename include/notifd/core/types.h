/*
 * types.h - small value types shared by the policy core and the shell.
 *
 * These are plain data: no allocation, no I/O. A channel is an index into the
 * configured channel list (config.h), never a string on the hot path. A plan
 * is what the slow policy writes to `P plan:{M}` and what the fast policy
 * reads back; per_week[] is only meaningful for channels whose bit is set in
 * planned_mask.
 */
#ifndef NOTIFD_TYPES_H
#define NOTIFD_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NOTIFD_MAX_CHANNELS 8
#define NOTIFD_CHANNEL_NAME_MAX 16
#define NOTIFD_SOURCE_MAX 32
#define NOTIFD_ARM_NAME_MAX 32

/* Most neighbours of a plan on the grid: one step down and up on each of
 * at most 4 planned channels (plan_explore.h). */
#define NOTIFD_PLAN_MAX_NEIGHBOURS 8

#define NOTIFD_SECONDS_PER_DAY 86400
#define NOTIFD_SECONDS_PER_WEEK 604800

/* A member's pacing plan: messages per week per planned channel. */
typedef struct plan {
    int64_t version;      /* 0 for the default plan */
    int action;           /* index into the action grid, -1 when unknown */
    int64_t computed_at;  /* unix seconds */
    int64_t valid_until;  /* unix seconds; 0 = never expires */
    char source[NOTIFD_SOURCE_MAX]; /* "planner", "default" or a writer's name */
    char arm[NOTIFD_ARM_NAME_MAX];  /* slow experiment arm, "" if none */
    uint32_t planned_mask;          /* bit c set: per_week[c] is planned */
    uint32_t defaulted_mask;        /* ... by plan_complete(), not by the plan itself */
    double per_week[NOTIFD_MAX_CHANNELS];
    /* Plan-level exploration (plan_explore.h). explore_neighbours is K, the
     * valid neighbours of the greedy action, when the plan was drawn with
     * slow.explore_prob > 0; 0 means it was not drawn: propensity and
     * greedy_per_week are then meaningless (plan_action_propensity() gives
     * 1, the greedy plan is the plan itself). */
    int explore_neighbours;
    double propensity;                         /* P(this action | member) */
    double greedy_per_week[NOTIFD_MAX_CHANNELS]; /* the argmax's values */
    /* U(greedy) - U(neighbour j), in plan_explore_neighbours() order, when
     * n_gaps == explore_neighbours (else unknown): what lets an offline
     * evaluation find the plan another slow.message_cost would have chosen
     * among the same neighbours, without the member's estimate. */
    int n_gaps;
    double utility_gap[NOTIFD_PLAN_MAX_NEIGHBOURS];
} plan_t;

static inline bool plan_has_channel(const plan_t *p, int channel)
{
    return channel >= 0 && channel < NOTIFD_MAX_CHANNELS &&
           (p->planned_mask & (1u << channel)) != 0;
}

/* The probability with which the writer chose this plan: 1 for a plan
 * that was not drawn (greedy, default, or another writer's). */
static inline double plan_action_propensity(const plan_t *p)
{
    return p->explore_neighbours > 0 ? p->propensity : 1.0;
}

/* The greedy (argmax) plan's value on `channel`: the plan's own unless
 * the plan was drawn. */
static inline double plan_greedy_per_week(const plan_t *p, int channel)
{
    return p->explore_neighbours > 0 ? p->greedy_per_week[channel] : p->per_week[channel];
}

#endif
