/*
 * stored_read.h - what a decide reads from Redis, as typed values: the
 * member hash fields it asks for, the week hash of its channel, and the
 * sent set's scores. Pure: decide.c hands over the reply's byte strings
 * (value NULL when Redis had none), so the same code runs under the fuzz
 * target (tests/fuzz/fuzz_stored.c) without a Redis.
 *
 * Every number goes through stored_fields.h: a value outside its field's
 * range is missing, and counted in the caller's stored_invalid_t.
 */
#ifndef NOTIFD_STORED_READ_H
#define NOTIFD_STORED_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/core/member_overlay.h"
#include "notifd/core/stored_fields.h"

/* The member hash fields a decide reads (HMGET), in this order. */
enum {
    STORED_MEMBER_TZ = 0,    /* tz_offset_min */
    STORED_MEMBER_UNSUB,     /* <ch>_unsub */
    STORED_MEMBER_OPEN,      /* <ch>_open */
    STORED_MEMBER_CLICK,     /* <ch>_click */
    STORED_MEMBER_SENT,      /* <ch>_sent */
    STORED_MEMBER_DELIVERED, /* <ch>_delivered */
    STORED_MEMBER_FIELDS
};

typedef struct stored_member {
    int tz_offset_min;  /* 0 when missing */
    bool unsubscribed;  /* false when missing */
    double open_rate;   /* in [0, 1]; -1 when too few sends to say */
} stored_member_t;

void stored_read_member(const char *const values[STORED_MEMBER_FIELDS],
                        const size_t lens[STORED_MEMBER_FIELDS], stored_member_t *out,
                        stored_invalid_t *invalid);

/* Week-hash fields of the channel from weeks that no longer count, which
 * the record deletes (at most this many per decide). */
#define STORED_MAX_STALE 8
#define STORED_STALE_FIELD_MAX 48

typedef struct stored_week {
    member_view_t *view;  /* its week and max_recent set by the caller */
    char stale[STORED_MAX_STALE][STORED_STALE_FIELD_MAX];
    int n_stale;
    const char *scores;   /* the recent-scores value as read (not copied), or NULL */
    size_t scores_len;
} stored_week_t;

/* One field/value of the week hash (HGETALL P week:{M}) into w->view.
 * Fields of other channels than `ch` are skipped. `value` is NULL when the
 * reply's value was not a string. Fields of weeks after the view's week
 * are left alone: never counted, never deleted. */
void stored_read_week_field(stored_week_t *w, const char *ch, size_t ch_len,
                            const char *field, size_t field_len, const char *value,
                            size_t value_len, stored_invalid_t *invalid);

/* A message's score in the sent set (ZMSCORE): when it was last sent. */
bool stored_read_sent_time(const char *s, size_t len, double *out, stored_invalid_t *invalid);

#endif
