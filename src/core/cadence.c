/*
 * cadence.c - when the planner replans a member (see cadence.h).
 */
#include "notifd/core/cadence.h"

#include <math.h>
#include <stdio.h>

#include "notifd/lib/hash.h"
#include "notifd/lib/number_parse.h"

#define CADENCE_HASH_SEED 0x636164656e6365ull /* "cadence" */

double cadence_phase(const char *member, size_t member_len)
{
    return hash_to_unit(hash_bytes(CADENCE_HASH_SEED, member, member_len));
}

static int64_t mod_pos(int64_t a, int64_t m)
{
    int64_t r = a % m;
    return r < 0 ? r + m : r;
}

int64_t cadence_next(double u, int64_t interval_s, int64_t t)
{
    int64_t off = (int64_t)floor(u * (double)interval_s);
    if (off < 0 || off >= interval_s)
        off = 0;
    int64_t wait = mod_pos(off - t, interval_s);
    return t + (wait == 0 ? interval_s : wait);
}

int64_t cadence_valid_until(double u, int64_t interval_s, double grace_frac,
                            int64_t computed_at)
{
    int64_t next = cadence_next(u, interval_s, computed_at + interval_s / 2);
    int64_t floor_until = computed_at + interval_s;
    int64_t until = next > floor_until ? next : floor_until;
    return until + (int64_t)floor(grace_frac * (double)interval_s);
}

bool cadence_plan_current(int64_t interval_s, int64_t computed_at, int64_t valid_until,
                          int64_t as_of)
{
    /* A plan computed more than an interval after as_of is from another
     * era (a bad clock, a request far from the wall clock): replan. */
    return computed_at > as_of - interval_s / 2 && computed_at <= as_of + interval_s &&
           valid_until > as_of;
}

static void bound(char *out, bool exclusive, int64_t offset, int64_t interval_s)
{
    /* %.17g round-trips the double, so the next window's exclusive bound
     * is the very number this window's inclusive bound was. */
    snprintf(out, sizeof((cadence_range_t *)0)->min, "%s%.17g", exclusive ? "(" : "",
             (double)offset / (double)interval_s);
}

int cadence_window(bool have_cursor, int64_t cursor, int64_t as_of, int64_t interval_s,
                   cadence_range_t out[2])
{
    if (have_cursor && as_of <= cursor)
        return 0;
    if (!have_cursor || as_of - cursor >= interval_s) {
        snprintf(out[0].min, sizeof out[0].min, "-inf");
        snprintf(out[0].max, sizeof out[0].max, "+inf");
        return 1;
    }
    int64_t a = mod_pos(cursor, interval_s), b = mod_pos(as_of, interval_s);
    if (a < b) {
        bound(out[0].min, true, a, interval_s);
        bound(out[0].max, false, b, interval_s);
        return 1;
    }
    /* Wraps: the end of this cycle, then the start of the next. */
    bound(out[0].min, true, a, interval_s);
    snprintf(out[0].max, sizeof out[0].max, "+inf");
    snprintf(out[1].min, sizeof out[1].min, "-inf");
    bound(out[1].max, false, b, interval_s);
    return 2;
}

bool cadence_cursor_parse(const char *s, size_t len, int64_t *out)
{
    int64_t v;
    /* CADENCE_TS_MAX has 12 digits */
    if (!number_parse_digits(s, len, 11, &v) || v >= CADENCE_TS_MAX)
        return false;
    *out = v;
    return true;
}
