/*
 * member_overlay.h - what one member's recorded decisions changed that a
 * later decision's read could not see yet.
 *
 * A decide reads the member's state (one pipelined read), decides, and
 * records (one script). Decides of one member may be in flight together
 * (pipelined producers, hot members): the second one's read can go out
 * before the first one's record, and would then spend the pacing budget a
 * second time. Serialising them (one read-decide-record at a time per
 * member) made a hot member a chain of round trips and cut throughput by
 * 2.5x under a Zipf load. Instead, every record leaves an *effect* here,
 * tagged with its position in the Redis command stream; Redis runs the
 * commands of our one connection in order, so a read at position r has
 * seen every effect before r and none after. A decision applies the
 * effects after its read, in order, and so decides exactly as if the
 * decides of the member had run one after another. Effects nobody can
 * need any more (every read in flight came after them) are dropped, and a
 * member with nothing in flight has no entry at all.
 */
#ifndef NOTIFD_MEMBER_OVERLAY_H
#define NOTIFD_MEMBER_OVERLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/core/decision.h"
#include "notifd/core/pacing.h"
#include "notifd/core/ranker.h"

/* What one recorded decision changed. */
typedef struct overlay_effect {
    uint64_t seq;              /* the record's position in the command stream */
    int channel;
    /* The channel's name as a hash: a reload may reorder the channels, and
     * a decision in flight across it must not take another channel's
     * record for its own (0 when the caller does not care). */
    uint64_t channel_key;
    int64_t week;              /* the member-local week it counted in */
    int64_t ts;
    bool counted_opp;          /* the week's opportunity count went up */
    bool sent;                 /* the week's sent count went up, msg marked sent */
    bool unpaced;              /* ... but a send outside the plan (transactional):
                                * only msg was marked sent */
    bool store_ewma;
    double ewma;
    bool store_ewma_week;
    int64_t ewma_week;
    bool store_balance;        /* a fractional plan's balance (opportunity_fold_t) */
    double balance;
    bool set_first_week;
    int64_t first_week;
    double first_fraction;
    bool have_score;           /* a best score joined the channel's recent list */
    double score;
    const char *msg;           /* sent message id (copied by overlay_add) */
    size_t msg_len;
} overlay_effect_t;

/* One decision's view of its member's state on its channel and week, as
 * read from Redis; overlay_apply brings it up to date. */
typedef struct member_view {
    int channel;
    uint64_t channel_key;            /* as overlay_effect_t.channel_key */
    int64_t week;
    /* The week hash's v: every record (of any channel, on any instance)
     * adds one, so a record that finds it other than this + 1 knows the
     * view missed someone else's (member_cache.h). 0 when missing. */
    int64_t version;
    opportunity_history_t history;   /* counts[0..2]: weeks W-2..W */
    uint32_t sent_this_week;
    int64_t sends[DECISION_MAX_RECENT_SENDS]; /* send times, newest first */
    size_t n_sends;
    double recent[PACING_MAX_RECENT];/* newest first */
    size_t n_recent;
    size_t n_recent_new;             /* of them, put in front by the overlay */
    size_t max_recent;               /* the list's configured length */
} member_view_t;

/* Applies one effect to a view and to the candidates' last-sent times
 * (dedup is per member, across channels). Pure. */
void overlay_apply(const overlay_effect_t *e, member_view_t *v, const ranker_candidate_t *cands,
                   size_t n, double *last_sent);

/* Puts a send time at the head of the view's send times (the oldest drops
 * out when the list is full). Pure. */
void overlay_push_send(member_view_t *v, int64_t ts);

typedef struct overlay_table overlay_table_t;
typedef struct overlay_member overlay_member_t;

overlay_table_t *overlay_table_new(void);
void overlay_table_free(overlay_table_t *t);
/* Members with something in flight (for tests and stats). */
size_t overlay_table_members(const overlay_table_t *t);

/* A decision of `member` is about to send its read at position read_seq
 * (positions only grow). Returns its member's entry, or NULL when out of
 * memory (the decision then runs without an overlay, as a lone one would). */
overlay_member_t *overlay_join(overlay_table_t *t, const char *member, size_t len,
                               uint64_t read_seq);
/* Applies, in order, every effect recorded after read_seq. */
void overlay_apply_since(const overlay_member_t *m, uint64_t read_seq, member_view_t *v,
                         const ranker_candidate_t *cands, size_t n, double *last_sent);
/* Records an effect (its seq must not be below any earlier one's). Returns
 * false when out of memory: later decisions then may not see it. */
bool overlay_add(overlay_member_t *m, const overlay_effect_t *e);
/* The decision that joined at read_seq needs the overlay no more. */
void overlay_leave(overlay_table_t *t, overlay_member_t *m, uint64_t read_seq);
/* Effects an entry holds now (for tests). */
size_t overlay_member_effects(const overlay_member_t *m);

#endif
