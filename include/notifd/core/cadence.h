/*
 * cadence.h - when the planner replans a member (pure; see docs/planner.md).
 *
 * Every member has a fixed place in the cadence: a phase u in [0, 1), a
 * stable hash of its id, so its replans come round every interval_s at
 * the same offset u * interval_s into the cycle (cycles start at unix time
 * 0). The planner keeps members in `P cadence:<n>` sorted sets scored by u,
 * and a pass as of T walks the members whose offset came round since the
 * partition's previous pass: nothing moves in Redis when a member is
 * replanned, which is what makes a pass cheap.
 */
#ifndef NOTIFD_CADENCE_H
#define NOTIFD_CADENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The member's phase in [0, 1). */
double cadence_phase(const char *member, size_t member_len);

/* The first time strictly after `t` at which phase `u` comes round. */
int64_t cadence_next(double u, int64_t interval_s, int64_t t);

/*
 * valid_until of a plan computed at `computed_at`: at least one interval,
 * and at least until the member's phase comes round after half an interval
 * (when the planner replaces it), plus `grace_frac` of an interval so a
 * late pass does not leave the member on the default plan. Between one and
 * one and a half intervals, plus the grace; exactly one interval plus the
 * grace when the plan is computed as the phase comes round.
 */
int64_t cadence_valid_until(double u, int64_t interval_s, double grace_frac,
                            int64_t computed_at);

/*
 * Whether a stored plan is recent enough for a pass as of `as_of` to keep
 * it: computed less than half an interval before and still in force. (A
 * member replanned off its phase, by `replan` or on joining, is then not
 * planned again as its phase comes round a moment later.) A plan computed
 * more than an interval after as_of is not current: it comes from another
 * era and is replanned.
 */
bool cadence_plan_current(int64_t interval_s, int64_t computed_at, int64_t valid_until,
                          int64_t as_of);

/* A ZRANGEBYSCORE range of phases, "(" for an exclusive bound. */
typedef struct cadence_range {
    char min[40], max[40];
} cadence_range_t;

/*
 * The phases that came round in (cursor, as_of]: 0, 1 or 2 ranges (2 when
 * the window wraps past the end of a cycle). Every phase when there is no
 * cursor yet or a whole interval or more has passed; the outer ends are
 * -inf and +inf, so a score outside [0, 1) is never stranded. The bounds
 * of two consecutive windows are formatted from the same number, so a
 * phase falls in exactly one of them.
 */
int cadence_window(bool have_cursor, int64_t cursor, int64_t as_of, int64_t interval_s,
                   cadence_range_t out[2]);

/* A cursor is an as_of, and an as_of is a request's ts: unix seconds in
 * [0, CADENCE_TS_MAX) (request.c checks the same range). */
#define CADENCE_TS_MAX 100000000000LL

/*
 * A partition cursor as stored in Redis (`P cursor:<n>`): true and *out
 * when `s` is a decimal in [0, CADENCE_TS_MAX), false for anything else
 * (a sign, spaces, a fraction, too many digits), which the planner treats
 * as no cursor. A garbage cursor trusted as a time far ahead would leave
 * the partition's cadence unwalked for as long as the key lives.
 */
bool cadence_cursor_parse(const char *s, size_t len, int64_t *out);

#endif
