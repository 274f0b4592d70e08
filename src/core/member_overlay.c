/*
 * member_overlay.c - see member_overlay.h.
 */
#include "notifd/core/member_overlay.h"

#include <stdlib.h>
#include <string.h>

#include "notifd/lib/hash.h"

#define OVERLAY_BUCKETS 1024

struct overlay_member {
    struct overlay_member *next;   /* hash chain */
    uint64_t hash;
    uint64_t *reads;               /* read positions in flight, ascending */
    size_t n_reads, cap_reads;
    overlay_effect_t *effects;     /* ascending seq; msg points into its own copy */
    size_t n_effects, cap_effects;
    size_t member_len;
    char member[];
};

struct overlay_table {
    overlay_member_t *buckets[OVERLAY_BUCKETS];
    size_t members;
};

void overlay_apply(const overlay_effect_t *e, member_view_t *v, const ranker_candidate_t *cands,
                   size_t n, double *last_sent)
{
    if (e->sent && e->msg != NULL && last_sent != NULL) {
        for (size_t i = 0; i < n; i++)
            if (cands[i].id_len == e->msg_len && memcmp(cands[i].id, e->msg, e->msg_len) == 0 &&
                !(last_sent[i] >= (double)e->ts))
                last_sent[i] = (double)e->ts;
    }
    v->version++; /* every record adds one, whatever its channel */
    if (e->channel != v->channel || e->channel_key != v->channel_key)
        return;
    opportunity_history_t *h = &v->history;
    int64_t slot = e->week - (v->week - 2);
    if (e->counted_opp && slot >= 0 && slot <= 2)
        h->counts[slot] += 1.0;
    if (e->sent && !e->unpaced && e->week == v->week)
        v->sent_this_week++;
    if (e->sent && !e->unpaced)
        overlay_push_send(v, e->ts);
    if (e->store_ewma) {
        h->have_ewma = true;
        h->ewma = e->ewma;
    }
    if (e->store_ewma_week) {
        h->have_ewma_week = true;
        h->ewma_week = e->ewma_week;
    }
    if (e->store_balance) {
        h->have_balance = true;
        h->balance = e->balance;
    }
    if (e->set_first_week && !h->have_first_week) {
        h->have_first_week = true;
        h->first_week = e->first_week;
        h->first_fraction = e->first_fraction;
    }
    if (e->have_score && v->max_recent > 0) {
        size_t keep = v->n_recent < v->max_recent ? v->n_recent : v->max_recent - 1;
        if (keep > PACING_MAX_RECENT - 1)
            keep = PACING_MAX_RECENT - 1;
        memmove(v->recent + 1, v->recent, keep * sizeof v->recent[0]);
        v->recent[0] = e->score;
        v->n_recent = keep + 1;
        if (v->n_recent_new < v->n_recent)
            v->n_recent_new++;
    }
}

void overlay_push_send(member_view_t *v, int64_t ts)
{
    size_t keep = v->n_sends < DECISION_MAX_RECENT_SENDS ? v->n_sends : DECISION_MAX_RECENT_SENDS - 1;
    memmove(v->sends + 1, v->sends, keep * sizeof v->sends[0]);
    v->sends[0] = ts;
    v->n_sends = keep + 1;
}

overlay_table_t *overlay_table_new(void) { return calloc(1, sizeof(overlay_table_t)); }

static void member_free(overlay_member_t *m)
{
    for (size_t i = 0; i < m->n_effects; i++)
        free((char *)m->effects[i].msg);
    free(m->effects);
    free(m->reads);
    free(m);
}

void overlay_table_free(overlay_table_t *t)
{
    if (t == NULL)
        return;
    for (size_t b = 0; b < OVERLAY_BUCKETS; b++) {
        overlay_member_t *m = t->buckets[b];
        while (m != NULL) {
            overlay_member_t *next = m->next;
            member_free(m);
            m = next;
        }
    }
    free(t);
}

size_t overlay_table_members(const overlay_table_t *t) { return t ? t->members : 0; }

static bool grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 4;
    while (c < need)
        c *= 2;
    void *p = realloc(*arr, c * elem);
    if (p == NULL)
        return false;
    *arr = p;
    *cap = c;
    return true;
}

overlay_member_t *overlay_join(overlay_table_t *t, const char *member, size_t len,
                               uint64_t read_seq)
{
    uint64_t h = hash_bytes(0, member, len);
    overlay_member_t **pp = &t->buckets[h % OVERLAY_BUCKETS];
    while (*pp != NULL && !((*pp)->hash == h && (*pp)->member_len == len &&
                            memcmp((*pp)->member, member, len) == 0))
        pp = &(*pp)->next;
    overlay_member_t *m = *pp;
    if (m == NULL) {
        m = calloc(1, sizeof *m + len);
        if (m == NULL)
            return NULL;
        m->hash = h;
        m->member_len = len;
        memcpy(m->member, member, len);
        *pp = m;
        t->members++;
    }
    if (!grow((void **)&m->reads, &m->cap_reads, m->n_reads + 1, sizeof *m->reads)) {
        if (m->n_reads == 0)
            overlay_leave(t, m, read_seq); /* frees the entry just made */
        return NULL;
    }
    m->reads[m->n_reads++] = read_seq;
    return m;
}

void overlay_apply_since(const overlay_member_t *m, uint64_t read_seq, member_view_t *v,
                         const ranker_candidate_t *cands, size_t n, double *last_sent)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_effects; i++)
        if (m->effects[i].seq > read_seq)
            overlay_apply(&m->effects[i], v, cands, n, last_sent);
}

bool overlay_add(overlay_member_t *m, const overlay_effect_t *e)
{
    if (m == NULL)
        return false;
    if (!grow((void **)&m->effects, &m->cap_effects, m->n_effects + 1, sizeof *m->effects))
        return false;
    overlay_effect_t copy = *e;
    copy.msg = NULL;
    if (e->sent && e->msg != NULL) {
        char *msg = malloc(e->msg_len ? e->msg_len : 1);
        if (msg == NULL)
            return false;
        memcpy(msg, e->msg, e->msg_len);
        copy.msg = msg;
    }
    m->effects[m->n_effects++] = copy;
    return true;
}

/* Drops the effects that every read still in flight has already seen. */
static void prune(overlay_member_t *m)
{
    uint64_t oldest = m->reads[0];
    size_t drop = 0;
    while (drop < m->n_effects && m->effects[drop].seq < oldest)
        free((char *)m->effects[drop++].msg);
    if (drop > 0) {
        memmove(m->effects, m->effects + drop, (m->n_effects - drop) * sizeof *m->effects);
        m->n_effects -= drop;
    }
}

void overlay_leave(overlay_table_t *t, overlay_member_t *m, uint64_t read_seq)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_reads; i++) {
        if (m->reads[i] == read_seq) {
            memmove(m->reads + i, m->reads + i + 1, (m->n_reads - i - 1) * sizeof *m->reads);
            m->n_reads--;
            break;
        }
    }
    if (m->n_reads > 0) {
        prune(m);
        return;
    }
    overlay_member_t **pp = &t->buckets[m->hash % OVERLAY_BUCKETS];
    while (*pp != NULL && *pp != m)
        pp = &(*pp)->next;
    if (*pp == m)
        *pp = m->next;
    t->members--;
    member_free(m);
}

size_t overlay_member_effects(const overlay_member_t *m) { return m ? m->n_effects : 0; }
