/*
 * plan.c - parsing the stored plan hash (see plan.h).
 */
#include "notifd/plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool field_is(const char *f, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(f, name, len) == 0;
}

/* Numbers arrive as Redis strings; anything that is not entirely a finite
 * number is treated as missing rather than as zero. */
static bool parse_number(const char *v, size_t len, double *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, v, len);
    buf[len] = '\0';
    char *end;
    double x = strtod(buf, &end);
    if (*end != '\0' || !isfinite(x))
        return false;
    *out = x;
    return true;
}

static void copy_text(char *dst, size_t cap, const char *v, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

bool plan_parse_hash(plan_t *out, const char *const *channel_names, int n_channels,
                     const char *const *fields, const size_t *field_lens,
                     const char *const *values, const size_t *value_lens, size_t n_pairs)
{
    memset(out, 0, sizeof *out);
    out->action = -1;
    for (size_t i = 0; i < n_pairs; i++) {
        const char *f = fields[i], *v = values[i];
        size_t fl = field_lens[i], vl = value_lens[i];
        double x;
        if (field_is(f, fl, "version")) {
            if (parse_number(v, vl, &x))
                out->version = (int64_t)x;
        } else if (field_is(f, fl, "action")) {
            if (parse_number(v, vl, &x))
                out->action = (int)x;
        } else if (field_is(f, fl, "computed_at")) {
            if (parse_number(v, vl, &x))
                out->computed_at = (int64_t)x;
        } else if (field_is(f, fl, "valid_until")) {
            if (parse_number(v, vl, &x))
                out->valid_until = (int64_t)x;
        } else if (field_is(f, fl, "source")) {
            copy_text(out->source, sizeof out->source, v, vl);
        } else if (field_is(f, fl, "arm")) {
            copy_text(out->arm, sizeof out->arm, v, vl);
        } else if (fl > 9 && memcmp(f + fl - 9, "_per_week", 9) == 0) {
            for (int c = 0; c < n_channels && c < NOTIFD_MAX_CHANNELS; c++) {
                if (strlen(channel_names[c]) == fl - 9 &&
                    memcmp(f, channel_names[c], fl - 9) == 0 && parse_number(v, vl, &x) &&
                    x >= 0) {
                    out->per_week[c] = x;
                    out->planned_mask |= 1u << c;
                }
            }
        }
    }
    if (out->source[0] == '\0')
        memcpy(out->source, "unknown", 8);
    return out->planned_mask != 0;
}

bool plan_in_force(const plan_t *plan, int64_t ts)
{
    if (plan->computed_at > ts + PLAN_MAX_AHEAD_S)
        return false; /* computed in another era: it must not hold the present */
    return plan->valid_until <= 0 || ts < plan->valid_until;
}

void plan_complete(plan_t *plan, uint32_t channels, uint32_t default_mask,
                   const double *default_per_week, const double *unplanned_per_week,
                   uint32_t unpaced_mask)
{
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++) {
        const uint32_t bit = 1u << c;
        if (!(channels & bit) || (plan->planned_mask & bit) || (unpaced_mask & bit))
            continue;
        plan->per_week[c] = (default_mask & bit) ? default_per_week[c] : unplanned_per_week[c];
        plan->planned_mask |= bit;
        plan->defaulted_mask |= bit;
    }
}

void plan_make_default(plan_t *out, uint32_t mask, const double *per_week)
{
    memset(out, 0, sizeof *out);
    out->action = -1;
    memcpy(out->source, "default", 8);
    out->planned_mask = mask;
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++)
        if (mask & (1u << c))
            out->per_week[c] = per_week[c];
}
