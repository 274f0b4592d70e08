/*
 * member_cache.h - what the decide path last knew of a member's state, so a
 * member seen recently is decided without a read round trip.
 *
 * A decide reads the member's state (plan aside: plan_cache.h) in one
 * pipelined round trip and records in a second. For a member decided
 * recently on this instance, the first is avoidable: its state is what the
 * last read returned plus what this instance's records since changed. That
 * is only safe while nothing else writes it, so the cache is used only
 * under Redis's client-side caching (CLIENT TRACKING ... NOLOOP, see
 * store.h): another instance's record, a feedback, a planner or any other
 * writer makes Redis invalidate the member's keys, and the member's
 * entries go (member_cache_invalidate). The record scripts re-check every
 * guarantee (idempotency, both caps, dedup, the durable opt-out) inside
 * Redis, so a decision made on a view an invalidation has not reached yet
 * can lose a race but never break a promise: the script refuses, the entry
 * is dropped, and the decide reads afresh.
 *
 * One entry per (member, channel): the week hash's fields of one channel,
 * the member hash's fields of that channel, the durable opt-out of that
 * channel, and the member's newest sent messages (dedup is per member, so
 * every channel's entry keeps them). Two ways per set; a set is chosen by
 * the member alone, so invalidating a member touches one set.
 *
 * Fills race with invalidations: a read sent before another writer's
 * write can answer after its invalidation was handled, and would then put
 * the old state back. So every invalidation stamps its set with a clock,
 * and a fill carries the clock read when its read was sent: a set stamped
 * since refuses it (the fill is simply not cached).
 *
 * Pure: the caller passes the time; nothing here talks to Redis.
 */
#ifndef NOTIFD_MEMBER_CACHE_H
#define NOTIFD_MEMBER_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/core/member_overlay.h"

/* Members with longer ids are not cached. */
#define MEMBER_CACHE_MEMBER_MAX 64
/* The newest sent messages an entry keeps; a member with more in its sent
 * set is not cached (its older sends would be missing from dedup). */
#define MEMBER_CACHE_SENT_MAX 32

/* A member's state on one channel, as a decide uses it. Pointers are the
 * caller's (put) or point into the cache until its next change (get). */
typedef struct member_snapshot {
    int tz;
    bool unsubscribed;
    double open_rate;
    member_view_t view;          /* recent[] is not kept: see scores */
    const char *scores;          /* the recent-scores field's text, or NULL */
    size_t scores_len;
    size_t n_sent;               /* the member's sent set, newest first */
    const char *sent_ids[MEMBER_CACHE_SENT_MAX];
    size_t sent_lens[MEMBER_CACHE_SENT_MAX];
    double sent_ts[MEMBER_CACHE_SENT_MAX];
} member_snapshot_t;

/* What an entry must match to be used: the config it was read under
 * (channel indexes, the arm's list length). The caller checks the week:
 * it depends on the time zone the entry holds (view.week). */
typedef struct member_cache_key {
    const char *member;
    size_t member_len;
    uint64_t channel_key;
    uint64_t generation;
    size_t max_recent;
} member_cache_key_t;

typedef struct member_cache member_cache_t;

/* A cache of about `entries` entries (rounded up to a power of two sets
 * of two); NULL when entries is 0 or out of memory. */
member_cache_t *member_cache_new(size_t entries);
void member_cache_free(member_cache_t *c);

/* The clock a fill must carry: read it when the fill's read is sent. */
uint64_t member_cache_clock(const member_cache_t *c);

/* The entry for `k` stored less than max_age_ms before now_ms, into *out
 * (out->view.recent left empty, its length in out->view.n_recent is 0; the
 * scores text holds the list). Valid until the cache next changes. */
bool member_cache_get(member_cache_t *c, const member_cache_key_t *k, uint64_t now_ms,
                      uint64_t max_age_ms, member_snapshot_t *out);

/* Stores `s` for `k` unless the member was invalidated after `since` (its
 * read's clock). Returns whether it was stored. */
bool member_cache_put(member_cache_t *c, const member_cache_key_t *k, uint64_t since,
                      uint64_t now_ms, const member_snapshot_t *s);

/* True unless the member was invalidated after `since`: what a read sent
 * at that clock returned may still be kept (plan_cache.h fills ask). */
bool member_cache_fresh(const member_cache_t *c, const char *member, size_t len,
                        uint64_t since);

/* Another writer changed the member's keys: every entry of the member
 * goes, and fills of reads sent before now are refused. */
void member_cache_invalidate(member_cache_t *c, const char *member, size_t len);
/* Everything goes (a flush, a lost connection, a reload). */
void member_cache_clear(member_cache_t *c);

/* Entries held now (for stats and tests). */
size_t member_cache_size(const member_cache_t *c);

#endif
