/*
 * features.c - parsing and decaying the member feature hash (see features.h).
 *
 * Field names are matched against two small tables, one for per-channel
 * suffixes and one for member-wide names, so the contract with the writer
 * reads in one screen. Values are byte strings with lengths (not
 * NUL-terminated): plain decimals, which is what the Lua writer produces, are
 * parsed by a short exact fast path, anything else by strtod on a stack copy
 * (notifd never calls setlocale, so the decimal point is '.').
 */
#include "notifd/features.h"

#include "notifd/number_parse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* How a parsed number is stored and checked. */
typedef enum field_kind {
    KIND_COUNT, /* finite, >= 0 */
    KIND_FLAG,  /* exactly 0 or 1 */
    KIND_TIME,  /* unix seconds, finite, within +-2^53 */
    KIND_TZ,    /* minutes east of UTC, integer in [-720, 840] */
} field_kind_t;

/* A string literal and its length, so matching never calls strlen. */
#define LIT(s) s, sizeof(s) - 1

typedef struct channel_field {
    const char *suffix; /* after "<ch>_" */
    size_t suffix_len;
    field_kind_t kind;
    size_t offset;      /* of the double / bool / int64_t in channel_features_t */
    uint32_t has_bit;   /* 0 when missing is the same as 0 */
} channel_field_t;

static const channel_field_t channel_fields[] = {
    {LIT("sent"), KIND_COUNT, offsetof(channel_features_t, sent), 0},
    {LIT("delivered"), KIND_COUNT, offsetof(channel_features_t, delivered), 0},
    {LIT("open"), KIND_COUNT, offsetof(channel_features_t, open), 0},
    {LIT("click"), KIND_COUNT, offsetof(channel_features_t, click), 0},
    {LIT("dismiss"), KIND_COUNT, offsetof(channel_features_t, dismiss), 0},
    {LIT("unsub_n"), KIND_COUNT, offsetof(channel_features_t, unsub_n), 0},
    {LIT("unsub"), KIND_FLAG, offsetof(channel_features_t, unsub), FEATURES_HAS_UNSUB},
    {LIT("last_sent"), KIND_TIME, offsetof(channel_features_t, last_sent),
     FEATURES_HAS_LAST_SENT},
    {LIT("last_open"), KIND_TIME, offsetof(channel_features_t, last_open),
     FEATURES_HAS_LAST_OPEN},
};

typedef struct member_field {
    const char *name;
    size_t name_len;
    field_kind_t kind;
    size_t offset; /* in member_features_t */
    uint32_t has_bit;
} member_field_t;

static const member_field_t member_fields[] = {
    {LIT("visit_org"), KIND_COUNT, offsetof(member_features_t, visit_org), 0},
    {LIT("visit_attr"), KIND_COUNT, offsetof(member_features_t, visit_attr), 0},
    {LIT("last_visit"), KIND_TIME, offsetof(member_features_t, last_visit),
     FEATURES_HAS_LAST_VISIT},
    {LIT("first_seen"), KIND_TIME, offsetof(member_features_t, first_seen),
     FEATURES_HAS_FIRST_SEEN},
    {LIT("updated_at"), KIND_TIME, offsetof(member_features_t, updated_at),
     FEATURES_HAS_UPDATED_AT},
    {LIT("tz_offset_min"), KIND_TZ, offsetof(member_features_t, tz_offset_min),
     FEATURES_HAS_TZ},
};

#define N_CHANNEL_FIELDS (sizeof(channel_fields) / sizeof(channel_fields[0]))
#define N_MEMBER_FIELDS (sizeof(member_fields) / sizeof(member_fields[0]))

/* ln 2, spelt out so the file does not depend on M_LN2 from <math.h>. */
#define LN2 0.69314718055994530942

/* Largest magnitude a time stamp may have and still be exact in a double. */
#define TIME_LIMIT 9007199254740992.0

void features_init(member_features_t *f)
{
    memset(f, 0, sizeof(*f));
}

static bool bytes_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* Checks `v` for `kind` and stores it at `dst`; false if out of range. */
static bool store_value(field_kind_t kind, double v, void *dst)
{
    switch (kind) {
    case KIND_COUNT:
        if (v < 0.0)
            return false;
        *(double *)dst = v;
        return true;
    case KIND_FLAG:
        if (v != 0.0 && v != 1.0)
            return false;
        *(bool *)dst = v == 1.0;
        return true;
    case KIND_TIME:
        if (fabs(v) > TIME_LIMIT)
            return false;
        *(int64_t *)dst = (int64_t)floor(v);
        return true;
    case KIND_TZ:
        if (v != floor(v) || v < -720.0 || v > 840.0)
            return false;
        *(int *)dst = (int)v;
        return true;
    }
    return false;
}

/*
 * Matches "<ch>_<suffix>" against the channel names. When two configured
 * names could both match (say "x" with suffix "last_sent" and "x_last" with
 * "sent") the longer channel name wins, so the result never depends on the
 * order of the configured channels.
 */
static bool match_channel_field(const char *const *channel_names,
                                const size_t *name_lens, int n_channels,
                                const char *field, size_t len, int *channel,
                                const channel_field_t **which)
{
    size_t best_len = 0;
    bool found = false;
    for (int c = 0; c < n_channels; c++) {
        size_t nlen = name_lens[c];
        if (nlen == 0 || nlen + 1 >= len || nlen < best_len)
            continue;
        if (memcmp(field, channel_names[c], nlen) != 0 || field[nlen] != '_')
            continue;
        const char *suffix = field + nlen + 1;
        size_t slen = len - nlen - 1;
        for (size_t i = 0; i < N_CHANNEL_FIELDS; i++) {
            if (bytes_equal(suffix, slen, channel_fields[i].suffix,
                            channel_fields[i].suffix_len)) {
                *channel = c;
                *which = &channel_fields[i];
                best_len = nlen;
                found = true;
                break;
            }
        }
    }
    return found;
}

int features_parse_hash(member_features_t *f, const char *const *channel_names,
                        int n_channels, const char *const *fields,
                        const size_t *field_lens, const char *const *values,
                        const size_t *value_lens, size_t n_pairs)
{
    if (f == NULL || channel_names == NULL || n_channels < 1 ||
        n_channels > NOTIFD_MAX_CHANNELS)
        return -1;
    if (n_pairs > 0 && (fields == NULL || field_lens == NULL || values == NULL ||
                        value_lens == NULL))
        return -1;
    size_t name_lens[NOTIFD_MAX_CHANNELS];
    for (int c = 0; c < n_channels; c++) {
        if (channel_names[c] == NULL)
            return -1;
        name_lens[c] = strlen(channel_names[c]);
    }

    f->n_channels = n_channels;
    int bad = 0;
    for (size_t i = 0; i < n_pairs; i++) {
        const char *name = fields[i];
        size_t len = field_lens[i];
        if (name == NULL)
            continue;

        field_kind_t kind;
        void *dst;
        uint32_t *has = NULL;
        uint32_t has_bit = 0;

        const member_field_t *mf = NULL;
        for (size_t k = 0; k < N_MEMBER_FIELDS; k++) {
            if (bytes_equal(name, len, member_fields[k].name, member_fields[k].name_len)) {
                mf = &member_fields[k];
                break;
            }
        }
        if (mf != NULL) {
            kind = mf->kind;
            dst = (char *)f + mf->offset;
            has = &f->has;
            has_bit = mf->has_bit;
        } else {
            int c;
            const channel_field_t *cf;
            if (!match_channel_field(channel_names, name_lens, n_channels, name, len, &c,
                                     &cf))
                continue; /* someone else's field */
            kind = cf->kind;
            dst = (char *)&f->ch[c] + cf->offset;
            has = &f->ch[c].has;
            has_bit = cf->has_bit;
        }

        double v;
        if (values[i] == NULL || !number_parse(values[i], value_lens[i], &v) ||
            !store_value(kind, v, dst)) {
            bad++;
            continue;
        }
        *has |= has_bit;
    }
    f->n_bad += bad;
    return bad;
}

void features_decay_to(member_features_t *f, int64_t now, double half_life_s)
{
    if (!(f->has & FEATURES_HAS_UPDATED_AT) || now <= f->updated_at ||
        !(half_life_s > 0.0))
        return;
    double k = exp2(-(double)(now - f->updated_at) / half_life_s);
    for (int c = 0; c < f->n_channels; c++) {
        channel_features_t *ch = &f->ch[c];
        ch->sent *= k;
        ch->delivered *= k;
        ch->open *= k;
        ch->click *= k;
        ch->dismiss *= k;
        ch->unsub_n *= k;
    }
    f->visit_org *= k;
    f->visit_attr *= k;
    f->updated_at = now;
}

double features_exposure_days(const member_features_t *f, int64_t now,
                              double half_life_s)
{
    if (!(f->has & FEATURES_HAS_FIRST_SEEN) || now <= f->first_seen ||
        !(half_life_s > 0.0))
        return 0.0;
    double age = (double)(now - f->first_seen);
    /* -expm1(-x) keeps precision for members much younger than a half-life,
     * where 1 - 2^(-age/H) would cancel. */
    double span = half_life_s / LN2 * -expm1(-age * LN2 / half_life_s);
    return span / NOTIFD_SECONDS_PER_DAY;
}
