/*
 * plan.h - the pacing plan as stored in Redis (`P plan:{M}`, a HASH) and
 * as shown in responses.
 *
 * The hash is a contract (docs/stored-state.md): version, action, computed_at,
 * valid_until, source, arm, and <channel>_per_week for every planned
 * channel. Any writer that follows it is honoured like the planner
 * ("stickiness"), so parsing is lenient about extra fields and strict about
 * the values it uses: a plan with no usable <channel>_per_week is not a plan.
 */
#ifndef NOTIFD_PLAN_H
#define NOTIFD_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/core/stored_fields.h"
#include "notifd/core/types.h"

/* Parses HGETALL field/value pairs (not NUL-terminated). Every number goes
 * through stored_fields.h: one out of its range is missing and counted in
 * `invalid` (may be NULL). Returns true when at least one configured
 * channel has a per-week value (a plain decimal in [0, max_per_week]) and
 * no value the plan depends on was unusable: a configured channel's
 * per-week value or valid_until that is present but out of range makes the
 * whole hash "no plan", so the default plan applies until the planner
 * rewrites it (rather than an unpaced channel or a plan that never ends). */
bool plan_parse_hash(plan_t *out, const char *const *channel_names, int n_channels,
                     double max_per_week, const char *const *fields,
                     const size_t *field_lens, const char *const *values,
                     const size_t *value_lens, size_t n_pairs, stored_invalid_t *invalid);

/* How far after a decision's ts a plan may have been computed and still be
 * in force: writers' clocks differ, but a plan from months ahead was made
 * in another era (a bad clock, a request far from the wall clock) and would
 * otherwise hold the member until then. */
#define PLAN_MAX_AHEAD_S (31 * 86400)

/* A stored plan is in force at `ts` unless valid_until is set and has
 * passed, or it was computed more than PLAN_MAX_AHEAD_S after ts. */
bool plan_in_force(const plan_t *plan, int64_t ts);

/* Gives every channel of `channels` (a mask) that the plan leaves out a
 * per-week value, so that no channel goes unpaced by accident: the default
 * plan's (default_mask, default_per_week) where it has one, else
 * unplanned_per_week[c]; channels in unpaced_mask stay out (best message
 * whenever the guardrails allow). Marks what it filled in defaulted_mask. */
void plan_complete(plan_t *plan, uint32_t channels, uint32_t default_mask,
                   const double *default_per_week, const double *unplanned_per_week,
                   uint32_t unpaced_mask);

/* The default plan: per_week from config, source "default", version 0. */
void plan_make_default(plan_t *out, uint32_t mask, const double *per_week);

#endif
