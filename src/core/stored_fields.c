/*
 * stored_fields.c - the stored fields' ranges and parsers (see
 * stored_fields.h).
 */
#include "notifd/core/stored_fields.h"

#include <math.h>
#include <string.h>

#include "notifd/core/pacing.h"
#include "notifd/core/plan_explore.h"
#include "notifd/lib/number_parse.h"

/* 2^53 - 1: the largest integer a double (and Lua) holds exactly. */
#define EXACT_INT_MAX 9007199254740991.0

static const stored_field_spec_t specs[STORED_FIELD_COUNT] = {
    [STORED_PLAN_VERSION] = {"plan_version", 0, EXACT_INT_MAX, true, false},
    [STORED_PLAN_ACTION] = {"plan_action", 0, 1023, true, false},
    [STORED_PLAN_TIME] = {"plan_time", 0, STORED_TIME_MAX, false, false},
    [STORED_PLAN_PER_WEEK] = {"plan_per_week", 0, STORED_PER_WEEK_LIMIT, false, true},
    [STORED_TZ_OFFSET] = {"tz_offset_min", STORED_TZ_MIN, STORED_TZ_MAX, true, false},
    [STORED_UNSUB] = {"unsub", 0, 1, true, false},
    [STORED_COUNT] = {"count", 0, 1e12, false, false},
    [STORED_TIME] = {"time", 0, STORED_TIME_MAX, false, false},
    [STORED_WEEK] = {"week", STORED_WEEK_MIN, STORED_WEEK_MAX, true, false},
    [STORED_WEEK_OPP] = {"week_opp", 0, 1e9, true, false}, /* HINCRBY: integral */
    [STORED_WEEK_SENT] = {"week_sent", 0, 1e9, true, false},
    [STORED_WEEK_VERSION] = {"week_version", 0, 1e9, true, false},
    [STORED_EWMA] = {"ewma", 0, 1e9, false, false},
    [STORED_BALANCE] = {"balance", -PACING_BALANCE_LIMIT, PACING_BALANCE_LIMIT, false, false},
    [STORED_FIRST_FRAC] = {"first_frac", 0, 1, false, false},
    [STORED_SCORE] = {"score", -1e12, 1e12, false, false},
    [STORED_SEND_TIME] = {"send_time", 0, STORED_TIME_MAX, false, false},
    [STORED_PLAN_PROPENSITY] = {"plan_propensity", 0, 1, false, false},
    [STORED_PLAN_GAP] = {"plan_gap", -1e12, 1e12, false, false},
    [STORED_PLAN_NEIGHBOURS] = {"plan_neighbours", 1, PLAN_EXPLORE_MAX_NEIGHBOURS, true, false},
};

const stored_field_spec_t *stored_field_spec(stored_field_t f)
{
    return (int)f >= 0 && f < STORED_FIELD_COUNT ? &specs[f] : NULL;
}

const char *stored_field_name(stored_field_t f)
{
    const stored_field_spec_t *s = stored_field_spec(f);
    return s != NULL ? s->name : "invalid";
}

void stored_invalid_add(stored_invalid_t *invalid, stored_field_t f)
{
    if (invalid != NULL && (int)f >= 0 && f < STORED_FIELD_COUNT &&
        invalid->n[f] < UINT32_MAX)
        invalid->n[f]++;
}

uint32_t stored_invalid_total(const stored_invalid_t *invalid)
{
    uint64_t total = 0;
    for (int f = 0; invalid != NULL && f < STORED_FIELD_COUNT; f++)
        total += invalid->n[f];
    return total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
}

/* The number in s, checked against `spec` with `max` as the upper bound. */
static bool parse_checked(const stored_field_spec_t *spec, double max, const char *s,
                          size_t len, double *out)
{
    if (s == NULL)
        return false;
    if (spec->plain && (memchr(s, 'e', len) != NULL || memchr(s, 'E', len) != NULL))
        return false;
    double x;
    if (!number_parse(s, len, &x) || !(x >= spec->min && x <= max))
        return false;
    if (spec->integer && x != floor(x))
        return false;
    *out = x == 0 ? 0.0 : x; /* no -0 */
    return true;
}

bool stored_parse_real(stored_field_t f, const char *s, size_t len, double *out,
                       stored_invalid_t *invalid)
{
    const stored_field_spec_t *spec = stored_field_spec(f);
    if (spec != NULL && parse_checked(spec, spec->max, s, len, out))
        return true;
    stored_invalid_add(invalid, f);
    return false;
}

bool stored_parse_int(stored_field_t f, const char *s, size_t len, int64_t *out,
                      stored_invalid_t *invalid)
{
    double x;
    if (!stored_parse_real(f, s, len, &x, invalid))
        return false;
    /* Every range is within +-2^53, so the cast is exact and defined. */
    *out = (int64_t)floor(x);
    return true;
}

bool stored_parse_flag(stored_field_t f, const char *s, size_t len, bool *out,
                       stored_invalid_t *invalid)
{
    double x;
    const stored_field_spec_t *spec = stored_field_spec(f);
    if (spec == NULL || spec->min != 0 || spec->max != 1 || !spec->integer) {
        stored_invalid_add(invalid, f);
        return false;
    }
    if (!stored_parse_real(f, s, len, &x, invalid))
        return false;
    *out = x == 1.0;
    return true;
}

bool stored_parse_per_week(const char *s, size_t len, double max_per_week, double *out,
                           stored_invalid_t *invalid)
{
    const stored_field_spec_t *spec = &specs[STORED_PLAN_PER_WEEK];
    double max = max_per_week < spec->max ? max_per_week : spec->max; /* NaN: spec->max */
    if (parse_checked(spec, max, s, len, out))
        return true;
    stored_invalid_add(invalid, STORED_PLAN_PER_WEEK);
    return false;
}
