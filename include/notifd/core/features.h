/*
 * features.h - a member's feature hash (`P member:{M}`) as typed values.
 *
 * The feedback path (a Lua script in the shell) keeps, per member, decayed
 * counts of what happened: sends notifd decided, deliveries, opens, clicks,
 * dismissals and opt-outs per channel, and visits split into "organic" and
 * "attributed to an open". This module turns the field/value pairs of an
 * HGETALL reply into a member_features_t, brings the decayed counts forward
 * to a given time, and measures how long the member has been observed on the
 * same decayed scale. It does no I/O and allocates nothing.
 *
 * Ranges are those of stored_fields.h (one per field, shared with decide).
 * Field names (the contract shared with the writer), per channel <ch>:
 *   <ch>_sent <ch>_delivered <ch>_open <ch>_click <ch>_dismiss <ch>_unsub_n
 *       decayed counts, >= 0
 *   <ch>_unsub                      0 or 1: the member is opted out now
 *   <ch>_last_sent <ch>_last_open   unix seconds
 * and member-wide:
 *   visit_org  visit_attr           decayed counts of visits outside / inside
 *                                   the attribution window after an open
 *   last_visit first_seen updated_at   unix seconds
 *   tz_offset_min                   minutes east of UTC, in [-720, 840]
 *
 * Invariants:
 * - Every count is as of `updated_at`: count(t) = count(updated_at) *
 *   2^(-(t - updated_at) / half_life). features_decay_to() applies exactly
 *   this, the same rule the writer applies on every update.
 * - ch[i] describes channel_names[i] as given to features_parse_hash(), so a
 *   channel index here is the configured channel index everywhere else.
 * - Counts are finite and >= 0; a missing count is 0. Where "missing" is not
 *   the same as 0 (time stamps, the time zone) a has-flag says so.
 */
#ifndef NOTIFD_FEATURES_H
#define NOTIFD_FEATURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/core/stored_fields.h"
#include "notifd/core/types.h"

/* Bits of channel_features_t.has. */
enum {
    FEATURES_HAS_UNSUB = 1u << 0,     /* <ch>_unsub was present */
    FEATURES_HAS_LAST_SENT = 1u << 1, /* <ch>_last_sent was present */
    FEATURES_HAS_LAST_OPEN = 1u << 2, /* <ch>_last_open was present */
    FEATURES_HAS_SCORE_OPEN = 1u << 3, /* score_open was set (not from the hash) */
};

/* Bits of member_features_t.has. */
enum {
    FEATURES_HAS_TZ = 1u << 0,
    FEATURES_HAS_LAST_VISIT = 1u << 1,
    FEATURES_HAS_FIRST_SEEN = 1u << 2,
    FEATURES_HAS_UPDATED_AT = 1u << 3,
};

typedef struct channel_features {
    double sent;      /* decayed count of sends notifd decided */
    double delivered; /* decayed counts of feedback events ... */
    double open;
    double click;
    double dismiss;
    double unsub_n;   /* ... including opt-out events (resubscribes keep them) */
    bool unsub;       /* opted out now: plan nothing on this channel */
    int64_t last_sent; /* unix s, valid with FEATURES_HAS_LAST_SENT */
    int64_t last_open; /* unix s, valid with FEATURES_HAS_LAST_OPEN */
    /* P(open) of the member's first message of a week as its recent scores
     * predict it (score_prior.h), valid with FEATURES_HAS_SCORE_OPEN. Not a
     * field of the member hash: the planner sets it from the week hash when
     * slow.priors.score_strength > 0. */
    double score_open;
    uint32_t has;      /* FEATURES_HAS_UNSUB | _LAST_SENT | _LAST_OPEN | _SCORE_OPEN */
} channel_features_t;

typedef struct member_features {
    int n_channels; /* entries of ch[] in use: the configured channels */
    channel_features_t ch[NOTIFD_MAX_CHANNELS];
    double visit_org;   /* decayed visits outside any attribution window */
    double visit_attr;  /* decayed visits within W after an open */
    int64_t last_visit; /* unix s, valid with FEATURES_HAS_LAST_VISIT */
    int64_t first_seen; /* unix s, valid with FEATURES_HAS_FIRST_SEEN */
    int64_t updated_at; /* unix s, valid with FEATURES_HAS_UPDATED_AT */
    int tz_offset_min;  /* valid with FEATURES_HAS_TZ */
    uint32_t has;       /* FEATURES_HAS_* member-wide bits */
    int n_bad;          /* fields present but unparsable, treated as missing */
    stored_invalid_t invalid; /* the same, per stored field (stored_fields.h) */
} member_features_t;

/* A member with no history: all counts 0, nothing known, no channels. */
void features_init(member_features_t *f);

/*
 * Fills `f` (after features_init) from the n_pairs field/value pairs of an
 * HGETALL reply. Fields and values are byte strings with explicit lengths, not
 * NUL-terminated. Channel i is channel_names[i] (NUL-terminated, 1 <=
 * n_channels <= NOTIFD_MAX_CHANNELS). Unknown fields are ignored (other code
 * may keep its own fields in the hash). A value that is not a finite number,
 * a negative count, an opt-out flag other than 0/1 or an out-of-range time
 * zone is treated as missing and counted in f->n_bad.
 * Returns the number of bad values (>= 0), or -1 if the arguments are invalid.
 */
int features_parse_hash(member_features_t *f, const char *const *channel_names,
                        int n_channels, const char *const *fields,
                        const size_t *field_lens, const char *const *values,
                        const size_t *value_lens, size_t n_pairs);

/*
 * Brings every decayed count forward from updated_at to `now` (multiplies by
 * 2^(-(now - updated_at) / half_life_s)) and sets updated_at = now. A `now`
 * before updated_at (clock skew between writers) changes nothing: counts are
 * never inflated. Without updated_at the counts are taken as current.
 */
void features_decay_to(member_features_t *f, int64_t now, double half_life_s);

/*
 * Whether the features say anything about the member beyond the priors: a
 * send, any feedback (deliveries, opens, clicks, dismissals, opt-outs, on
 * any channel), a visit, or a score prior (FEATURES_HAS_SCORE_OPEN). A member
 * without any is planned the default plan (actions.h, new_member_action).
 */
bool features_have_history(const member_features_t *f);

/*
 * The member's observation span on the decayed scale, in days:
 *   integral over t in [first_seen, now] of 2^(-(now - t)/H) dt
 *     = H / ln 2 * (1 - 2^(-(now - first_seen)/H)),
 * the denominator that makes (decayed count of visits) / exposure a rate per
 * day, whatever the member's age. It tends to H / ln 2 for old members and to
 * now - first_seen for new ones. 0 when first_seen is unknown or in the future.
 */
double features_exposure_days(const member_features_t *f, int64_t now,
                              double half_life_s);

#endif
