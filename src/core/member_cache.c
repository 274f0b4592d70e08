/*
 * member_cache.c - see member_cache.h.
 *
 * Each way holds one malloc'd entry, resized as its member's text grows:
 * the fixed part (the view without its recent list, under 1 KiB) and the
 * variable part (the scores text and the sent ids) in one block. The
 * recent list (up to PACING_MAX_RECENT doubles, 2 KiB, in a view) is kept
 * as its text only, which is what the record script takes back anyway; it
 * is parsed again on use.
 */
#include "notifd/core/member_cache.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/lib/hash.h"

#define WAYS 2

typedef struct entry {
    uint64_t stored_ms;
    uint64_t channel_key;
    uint64_t generation;
    size_t max_recent;
    size_t member_len;
    char member[MEMBER_CACHE_MEMBER_MAX];
    int tz;
    bool unsubscribed;
    double open_rate;
    /* The view's fields but its recent list (the text holds that). */
    int64_t week, version;
    opportunity_history_t history;
    uint32_t sent_this_week;
    size_t n_sends;
    int64_t sends[DECISION_MAX_RECENT_SENDS];
    size_t scores_len;
    bool have_scores;
    uint16_t n_sent;
    uint16_t sent_lens[MEMBER_CACHE_SENT_MAX]; /* ids are at most MEMBER_ID_MAX bytes */
    double sent_ts[MEMBER_CACHE_SENT_MAX];
    size_t cap;               /* bytes of text[] */
    char text[];              /* the scores, then the sent ids */
} entry_t;

typedef struct set {
    uint64_t stamp;           /* clock of the last invalidation of a member here */
    unsigned next;            /* the way a newcomer takes */
    entry_t *way[WAYS];
} set_t;

struct member_cache {
    size_t n_sets;            /* a power of two */
    uint64_t clock;
    uint64_t cleared_at;      /* clock of the last clear */
    size_t size;
    set_t *sets;
};

member_cache_t *member_cache_new(size_t entries)
{
    if (entries == 0)
        return NULL;
    size_t n = 1;
    while (n * WAYS < entries)
        n *= 2;
    member_cache_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->sets = calloc(n, sizeof *c->sets);
    if (c->sets == NULL) {
        free(c);
        return NULL;
    }
    c->n_sets = n;
    return c;
}

void member_cache_free(member_cache_t *c)
{
    if (c == NULL)
        return;
    member_cache_clear(c);
    free(c->sets);
    free(c);
}

uint64_t member_cache_clock(const member_cache_t *c) { return c != NULL ? c->clock : 0; }

static set_t *set_of(const member_cache_t *c, const char *member, size_t len)
{
    return &c->sets[hash_bytes(0x6d656d62, member, len) & (c->n_sets - 1)];
}

static bool holds(const entry_t *e, const member_cache_key_t *k)
{
    return e != NULL && e->member_len == k->member_len && e->channel_key == k->channel_key &&
           memcmp(e->member, k->member, k->member_len) == 0;
}

static bool cacheable(const member_cache_t *c, const char *member, size_t len)
{
    return c != NULL && len > 0 && len <= MEMBER_CACHE_MEMBER_MAX && member != NULL;
}

bool member_cache_get(member_cache_t *c, const member_cache_key_t *k, uint64_t now_ms,
                      uint64_t max_age_ms, member_snapshot_t *out)
{
    if (!cacheable(c, k->member, k->member_len))
        return false;
    set_t *s = set_of(c, k->member, k->member_len);
    for (int w = 0; w < WAYS; w++) {
        const entry_t *e = s->way[w];
        if (!holds(e, k))
            continue;
        if (e->generation != k->generation ||
            e->max_recent != k->max_recent || now_ms < e->stored_ms ||
            now_ms - e->stored_ms >= max_age_ms)
            return false;
        out->tz = e->tz;
        out->unsubscribed = e->unsubscribed;
        out->open_rate = e->open_rate;
        memset(&out->view, 0, offsetof(member_view_t, recent));
        out->view.channel_key = e->channel_key;
        out->view.week = e->week;
        out->view.version = e->version;
        out->view.history = e->history;
        out->view.sent_this_week = e->sent_this_week;
        out->view.n_sends = e->n_sends;
        memcpy(out->view.sends, e->sends, e->n_sends * sizeof e->sends[0]);
        out->view.n_recent = out->view.n_recent_new = 0;
        out->view.max_recent = e->max_recent;
        out->scores = e->have_scores ? e->text : NULL;
        out->scores_len = e->scores_len;
        out->n_sent = e->n_sent;
        const char *at = e->text + e->scores_len;
        for (size_t i = 0; i < e->n_sent; i++) {
            out->sent_ids[i] = at;
            out->sent_lens[i] = e->sent_lens[i];
            out->sent_ts[i] = e->sent_ts[i];
            at += e->sent_lens[i];
        }
        return true;
    }
    return false;
}

bool member_cache_put(member_cache_t *c, const member_cache_key_t *k, uint64_t since,
                      uint64_t now_ms, const member_snapshot_t *s)
{
    if (!cacheable(c, k->member, k->member_len) || s->n_sent > MEMBER_CACHE_SENT_MAX)
        return false;
    for (size_t i = 0; i < s->n_sent; i++)
        if (s->sent_lens[i] > UINT16_MAX)
            return false;
    set_t *set = set_of(c, k->member, k->member_len);
    if (set->stamp > since || c->cleared_at > since)
        return false;
    size_t need = s->scores != NULL ? s->scores_len : 0;
    for (size_t i = 0; i < s->n_sent; i++)
        need += s->sent_lens[i];
    int w = 0;
    while (w < WAYS && !holds(set->way[w], k))
        w++;
    if (w == WAYS) {
        w = (int)(set->next++ % WAYS);
        /* An empty way first, so two members of a set both stay. */
        for (int i = 0; i < WAYS; i++)
            if (set->way[i] == NULL) {
                w = i;
                break;
            }
    }
    entry_t *e = set->way[w];
    if (e == NULL || e->cap < need) {
        entry_t *grown = realloc(e, sizeof *e + need);
        if (grown == NULL)
            return false; /* the old entry (if any) stays valid and is still ours */
        if (e == NULL)
            c->size++;
        e = grown;
        e->cap = need;
        set->way[w] = e;
    }
    e->stored_ms = now_ms;
    e->channel_key = k->channel_key;
    e->generation = k->generation;
    e->max_recent = k->max_recent;
    e->member_len = k->member_len;
    memcpy(e->member, k->member, k->member_len);
    e->tz = s->tz;
    e->unsubscribed = s->unsubscribed;
    e->open_rate = s->open_rate;
    e->week = s->view.week;
    e->version = s->view.version;
    e->history = s->view.history;
    e->sent_this_week = s->view.sent_this_week;
    e->n_sends = s->view.n_sends <= DECISION_MAX_RECENT_SENDS ? s->view.n_sends
                                                              : DECISION_MAX_RECENT_SENDS;
    memcpy(e->sends, s->view.sends, e->n_sends * sizeof e->sends[0]);
    e->have_scores = s->scores != NULL;
    e->scores_len = s->scores != NULL ? s->scores_len : 0;
    if (e->scores_len > 0)
        memcpy(e->text, s->scores, e->scores_len);
    char *at = e->text + e->scores_len;
    e->n_sent = (uint16_t)s->n_sent;
    for (size_t i = 0; i < s->n_sent; i++) {
        memcpy(at, s->sent_ids[i], s->sent_lens[i]);
        at += s->sent_lens[i];
        e->sent_lens[i] = (uint16_t)s->sent_lens[i];
        e->sent_ts[i] = s->sent_ts[i];
    }
    return true;
}

bool member_cache_fresh(const member_cache_t *c, const char *member, size_t len,
                        uint64_t since)
{
    if (!cacheable(c, member, len))
        return c == NULL; /* no cache: nothing was invalidated */
    const set_t *s = set_of(c, member, len);
    return s->stamp <= since && c->cleared_at <= since;
}

void member_cache_invalidate(member_cache_t *c, const char *member, size_t len)
{
    if (!cacheable(c, member, len))
        return;
    set_t *s = set_of(c, member, len);
    s->stamp = ++c->clock;
    for (int w = 0; w < WAYS; w++) {
        entry_t *e = s->way[w];
        if (e != NULL && e->member_len == len && memcmp(e->member, member, len) == 0) {
            free(e);
            s->way[w] = NULL;
            c->size--;
        }
    }
}

void member_cache_clear(member_cache_t *c)
{
    if (c == NULL)
        return;
    c->cleared_at = ++c->clock;
    for (size_t i = 0; i < c->n_sets; i++)
        for (int w = 0; w < WAYS; w++) {
            free(c->sets[i].way[w]);
            c->sets[i].way[w] = NULL;
        }
    c->size = 0;
}

size_t member_cache_size(const member_cache_t *c) { return c != NULL ? c->size : 0; }
