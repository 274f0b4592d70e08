/*
 * schedule.h - the planner's schedule in Redis: which members need a plan.
 *
 * SCHEDULE_PARTITIONS partitions, n = hash(member) mod partitions, each
 * with two sorted sets: `P cadence:<n>` (member -> phase, cadence.h), every
 * planned member, walked as its phase comes round; and `P sched:<n>`
 * (member -> unix time), the due set of members that need a plan before
 * that: they join on their first feedback and whenever a decide finds no
 * plan in force (a new member, or one whose plan expired), with ZADD LT so
 * an existing entry is only ever moved earlier. Planner instances claim partitions
 * with leases (`P lease:<n>`), so a fleet on one Redis shares a pass and
 * each member is replanned once per cadence. The count is fixed: it is
 * part of the key layout, and every instance must agree on it. The sets
 * are not TTL'd: they hold one entry per known member, and the planner
 * drops members whose feature hash has expired.
 */
#ifndef NOTIFD_SCHEDULE_H
#define NOTIFD_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "notifd/app.h"

#define SCHEDULE_PARTITIONS 64

int schedule_partition(const char *member, size_t member_len);

/* Fire-and-forget ZADD LT of the member, due at `due` (loop thread): it
 * joins, or an entry due later (or never: a garbage score) moves to `due`. */
void schedule_member(app_t *app, const config_t *cfg, const char *member, size_t member_len,
                     int64_t due);

#endif
