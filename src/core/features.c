/*
 * features.c - parsing and decaying the member feature hash (see features.h).
 *
 * Field names are matched against two small tables, one for per-channel
 * suffixes and one for member-wide names, so the contract with the writer
 * reads in one screen. Values are byte strings with lengths (not
 * NUL-terminated), parsed and range-checked by stored_fields.h (number_parse
 * underneath: a short exact fast path for plain decimals, strtod otherwise
 * (notifd never calls setlocale, so the decimal point is '.').
 */
#include "notifd/core/features.h"

#include "notifd/core/stored_fields.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A string literal and its length, so matching never calls strlen. */
#define LIT(s) s, sizeof(s) - 1

typedef struct channel_field {
    const char *suffix; /* after "<ch>_" */
    size_t suffix_len;
    stored_field_t kind;
    size_t offset;      /* of the double / bool / int64_t in channel_features_t */
    uint32_t has_bit;   /* 0 when missing is the same as 0 */
} channel_field_t;

static const channel_field_t channel_fields[] = {
    {LIT("sent"), STORED_COUNT, offsetof(channel_features_t, sent), 0},
    {LIT("delivered"), STORED_COUNT, offsetof(channel_features_t, delivered), 0},
    {LIT("open"), STORED_COUNT, offsetof(channel_features_t, open), 0},
    {LIT("click"), STORED_COUNT, offsetof(channel_features_t, click), 0},
    {LIT("dismiss"), STORED_COUNT, offsetof(channel_features_t, dismiss), 0},
    {LIT("unsub_n"), STORED_COUNT, offsetof(channel_features_t, unsub_n), 0},
    {LIT("unsub"), STORED_UNSUB, offsetof(channel_features_t, unsub), FEATURES_HAS_UNSUB},
    {LIT("last_sent"), STORED_TIME, offsetof(channel_features_t, last_sent),
     FEATURES_HAS_LAST_SENT},
    {LIT("last_open"), STORED_TIME, offsetof(channel_features_t, last_open),
     FEATURES_HAS_LAST_OPEN},
};

typedef struct member_field {
    const char *name;
    size_t name_len;
    stored_field_t kind;
    size_t offset; /* in member_features_t */
    uint32_t has_bit;
} member_field_t;

static const member_field_t member_fields[] = {
    {LIT("visit_org"), STORED_COUNT, offsetof(member_features_t, visit_org), 0},
    {LIT("visit_attr"), STORED_COUNT, offsetof(member_features_t, visit_attr), 0},
    {LIT("last_visit"), STORED_TIME, offsetof(member_features_t, last_visit),
     FEATURES_HAS_LAST_VISIT},
    {LIT("first_seen"), STORED_TIME, offsetof(member_features_t, first_seen),
     FEATURES_HAS_FIRST_SEEN},
    {LIT("updated_at"), STORED_TIME, offsetof(member_features_t, updated_at),
     FEATURES_HAS_UPDATED_AT},
    {LIT("tz_offset_min"), STORED_TZ_OFFSET, offsetof(member_features_t, tz_offset_min),
     FEATURES_HAS_TZ},
};

#define N_CHANNEL_FIELDS (sizeof(channel_fields) / sizeof(channel_fields[0]))
#define N_MEMBER_FIELDS (sizeof(member_fields) / sizeof(member_fields[0]))

/* ln 2, spelt out so the file does not depend on M_LN2 from <math.h>. */
#define LN2 0.69314718055994530942

void features_init(member_features_t *f)
{
    memset(f, 0, sizeof(*f));
}

static bool bytes_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* Parses s[0..len) as stored field `kind` (its range: stored_fields.h)
 * into `dst`: a double, except a flag (bool), a time (int64_t) and the time
 * zone (int). False, and counted in `invalid`, if unusable. */
static bool store_value(stored_field_t kind, const char *s, size_t len, void *dst,
                        stored_invalid_t *invalid)
{
    int64_t n;
    switch (kind) {
    case STORED_UNSUB:
        return stored_parse_flag(kind, s, len, (bool *)dst, invalid);
    case STORED_TIME:
        return stored_parse_int(kind, s, len, (int64_t *)dst, invalid);
    case STORED_TZ_OFFSET:
        if (!stored_parse_int(kind, s, len, &n, invalid))
            return false;
        *(int *)dst = (int)n;
        return true;
    default:
        return stored_parse_real(kind, s, len, (double *)dst, invalid);
    }
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

        stored_field_t kind;
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

        if (!store_value(kind, values[i], value_lens[i], dst, &f->invalid)) {
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

bool features_have_history(const member_features_t *f)
{
    if (f->visit_org > 0.0 || f->visit_attr > 0.0 || (f->has & FEATURES_HAS_LAST_VISIT))
        return true;
    for (int c = 0; c < f->n_channels && c < NOTIFD_MAX_CHANNELS; c++) {
        const channel_features_t *ch = &f->ch[c];
        if (ch->sent > 0.0 || ch->delivered > 0.0 || ch->open > 0.0 || ch->click > 0.0 ||
            ch->dismiss > 0.0 || ch->unsub_n > 0.0 ||
            (ch->has & (FEATURES_HAS_UNSUB | FEATURES_HAS_LAST_SENT | FEATURES_HAS_LAST_OPEN |
                        FEATURES_HAS_SCORE_OPEN)))
            return true;
    }
    return false;
}
