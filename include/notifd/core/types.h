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
} plan_t;

static inline bool plan_has_channel(const plan_t *p, int channel)
{
    return channel >= 0 && channel < NOTIFD_MAX_CHANNELS &&
           (p->planned_mask & (1u << channel)) != 0;
}

#endif
