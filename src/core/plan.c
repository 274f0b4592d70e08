/*
 * plan.c - parsing the stored plan hash (see plan.h).
 */
#include "notifd/core/plan.h"

#include <string.h>

static bool field_is(const char *f, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(f, name, len) == 0;
}

static void copy_text(char *dst, size_t cap, const char *v, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* "g1,g2,...": at most NOTIFD_PLAN_MAX_NEIGHBOURS numbers. Returns how many
 * were read, or -1 when any entry is unusable (counted once). */
static int parse_gaps(const char *v, size_t vl, double *out, stored_invalid_t *invalid)
{
    if (v == NULL)
        return -1;
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= vl; i++) {
        if (i < vl && v[i] != ',')
            continue;
        if (n == NOTIFD_PLAN_MAX_NEIGHBOURS ||
            !stored_parse_real(STORED_PLAN_GAP, v + start, i - start, &out[n], invalid))
            return -1;
        n++;
        start = i + 1;
    }
    return n;
}

bool plan_parse_hash(plan_t *out, const char *const *channel_names, int n_channels,
                     double max_per_week, const char *const *fields,
                     const size_t *field_lens, const char *const *values,
                     const size_t *value_lens, size_t n_pairs, stored_invalid_t *invalid)
{
    memset(out, 0, sizeof *out);
    out->action = -1;
    bool unusable = false;
    double propensity = 0.0;
    int neighbours = 0;
    double greedy[NOTIFD_MAX_CHANNELS] = {0};
    double gaps[NOTIFD_PLAN_MAX_NEIGHBOURS];
    int n_gaps = 0;
    uint32_t greedy_mask = 0;
    for (size_t i = 0; i < n_pairs; i++) {
        const char *f = fields[i], *v = values[i];
        size_t fl = field_lens[i], vl = value_lens[i];
        int64_t n;
        if (f == NULL)
            continue;
        if (field_is(f, fl, "version")) {
            if (stored_parse_int(STORED_PLAN_VERSION, v, vl, &n, invalid))
                out->version = n;
        } else if (field_is(f, fl, "action")) {
            /* -1 is how a writer says "no action index". */
            if (!(vl == 2 && v != NULL && memcmp(v, "-1", 2) == 0) &&
                stored_parse_int(STORED_PLAN_ACTION, v, vl, &n, invalid))
                out->action = (int)n;
        } else if (field_is(f, fl, "computed_at")) {
            if (stored_parse_int(STORED_PLAN_TIME, v, vl, &n, invalid))
                out->computed_at = n;
        } else if (field_is(f, fl, "valid_until")) {
            if (stored_parse_int(STORED_PLAN_TIME, v, vl, &n, invalid))
                out->valid_until = n;
            else
                unusable = true;
        } else if (field_is(f, fl, "source")) {
            if (v != NULL)
                copy_text(out->source, sizeof out->source, v, vl);
        } else if (field_is(f, fl, "arm")) {
            if (v != NULL)
                copy_text(out->arm, sizeof out->arm, v, vl);
        } else if (field_is(f, fl, "propensity")) {
            double x;
            /* 0 is in the field's range but no logged choice has it. */
            if (stored_parse_real(STORED_PLAN_PROPENSITY, v, vl, &x, invalid)) {
                if (x > 0.0)
                    propensity = x;
                else
                    stored_invalid_add(invalid, STORED_PLAN_PROPENSITY);
            }
        } else if (field_is(f, fl, "gaps")) {
            n_gaps = parse_gaps(v, vl, gaps, invalid);
        } else if (field_is(f, fl, "neighbours")) {
            if (stored_parse_int(STORED_PLAN_NEIGHBOURS, v, vl, &n, invalid))
                neighbours = (int)n;
        } else if (fl > 7 && memcmp(f, "greedy_", 7) == 0) {
            for (int c = 0; c < n_channels && c < NOTIFD_MAX_CHANNELS; c++) {
                if (strlen(channel_names[c]) != fl - 7 || memcmp(f + 7, channel_names[c], fl - 7) != 0)
                    continue;
                double x;
                if (stored_parse_per_week(v, vl, max_per_week, &x, invalid)) {
                    greedy[c] = x;
                    greedy_mask |= 1u << c;
                }
            }
        } else if (fl > 9 && memcmp(f + fl - 9, "_per_week", 9) == 0) {
            for (int c = 0; c < n_channels && c < NOTIFD_MAX_CHANNELS; c++) {
                if (strlen(channel_names[c]) != fl - 9 || memcmp(f, channel_names[c], fl - 9) != 0)
                    continue;
                double x;
                if (stored_parse_per_week(v, vl, max_per_week, &x, invalid)) {
                    out->per_week[c] = x;
                    out->planned_mask |= 1u << c;
                } else {
                    unusable = true;
                }
            }
        }
    }
    if (out->source[0] == '\0')
        memcpy(out->source, "unknown", 8);
    /* A drawn plan needs both its propensity and K; either alone is not a
     * logged choice, and the plan is then read as greedy (propensity 1). A
     * channel without greedy_<ch> was not moved: its greedy value is its own. */
    if (propensity > 0.0 && neighbours > 0) {
        out->explore_neighbours = neighbours;
        out->propensity = propensity;
        for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++)
            out->greedy_per_week[c] = (greedy_mask & (1u << c)) ? greedy[c] : out->per_week[c];
        /* Gaps count only when there is one per neighbour. */
        if (n_gaps == neighbours) {
            out->n_gaps = n_gaps;
            memcpy(out->utility_gap, gaps, sizeof gaps);
        }
    }
    return out->planned_mask != 0 && !unusable;
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
