/*
 * plan_cache.h - plans read from Redis, kept for fast.plan_cache_ms.
 *
 * A member's plan changes once per planner cadence (a week by default), yet
 * every decide read it: one HGETALL of the read pipeline, a tenth of
 * Redis' work per decide. With fast.plan_cache_ms > 0 a plan read on this
 * instance is reused for that long. The cost is staleness: a plan written
 * by another instance or by the planner thread is seen up to that much
 * later (this instance's replan and planner_run ops drop what they change).
 * A cached plan is only used while it is in force at the decision's ts,
 * and members without a plan are never cached, so a new plan after a
 * week's end or for a new member is read at once.
 *
 * Direct-mapped: a member's slot is fixed by its hash and a newcomer
 * overwrites it, so the cache is a bounded array with no eviction lists.
 * Pure: the caller passes the time.
 *
 * Every entry carries the config generation its plan was parsed under, and
 * a lookup under another generation misses. A plan_t holds its per-week
 * values by channel index (per_week[c], in the order of the config's
 * `channels`), so a plan parsed under one config means something else
 * under a config that reordered the channels. Clearing the cache on reload
 * is not enough: a decide that read before the reload parses its reply
 * (with its own, older snapshot) after it, and would put the plan back.
 */
#ifndef NOTIFD_PLAN_CACHE_H
#define NOTIFD_PLAN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/core/types.h"

/* Members with longer ids are not cached (the slot keeps the id inline). */
#define PLAN_CACHE_MEMBER_MAX 64

typedef struct plan_cache plan_cache_t;

plan_cache_t *plan_cache_new(size_t slots);
void plan_cache_free(plan_cache_t *c);
/* The plan stored for `member` under config generation `generation` less
 * than ttl_ms before now_ms, if any. */
bool plan_cache_get(const plan_cache_t *c, const char *member, size_t len, uint64_t generation,
                    uint64_t now_ms, uint64_t ttl_ms, plan_t *out);
/* Stores `plan`, parsed under config generation `generation`. */
void plan_cache_put(plan_cache_t *c, const char *member, size_t len, uint64_t generation,
                    uint64_t now_ms, const plan_t *plan);
void plan_cache_forget(plan_cache_t *c, const char *member, size_t len);
void plan_cache_clear(plan_cache_t *c);

#endif
