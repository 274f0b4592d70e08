/*
 * stored_fields.h - one parser and one range per kind of value notifd reads
 * back from Redis.
 *
 * Everything in Redis may have been written by someone else (another
 * writer of the plan contract, an operator's HSET, a bug, an attacker with
 * access to the store), so every stored number goes through here, whoever
 * reads it: the decide path (stored_read.h), the plan parser (plan.h), the
 * planner's feature parser (features.h) and the feedback op's validation of
 * the same fields. A value that does not parse, or parses outside its
 * field's range, is *missing*: the reader behaves as if the field were not
 * there, and counts it (stored_invalid_t) so the shell can log and export
 * it as notifd_stored_invalid_total{field=<name>}.
 *
 * Syntax: decimal only (no hex, no blanks, no "inf"/"nan"); an exponent is
 * accepted except where a field says "plain" (per-week plan values, which
 * any writer writes as a plain decimal). Integer fields must be integral.
 * Every range is finite and small enough for the value to be exact in a
 * double and to survive any cast and the arithmetic the policy does on it.
 * Pure; no I/O.
 */
#ifndef NOTIFD_STORED_FIELDS_H
#define NOTIFD_STORED_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Unix seconds notifd accepts anywhere: the range of a request's ts. */
#define STORED_TIME_MAX 1e11
/* Local week indexes of those times, in any time zone (calendar.h): the
 * week before index 0 holds 1970-01-01. */
#define STORED_WEEK_MIN (-1)
#define STORED_WEEK_MAX 165345
/* Minutes east of UTC: UTC-12:00 .. UTC+14:00. */
#define STORED_TZ_MIN (-720)
#define STORED_TZ_MAX 840
/* The default of slow.max_per_week, and the most it may be set to. */
#define STORED_PER_WEEK_DEFAULT 100.0
#define STORED_PER_WEEK_LIMIT 1000.0

typedef enum stored_field {
    STORED_PLAN_VERSION = 0, /* plan version: integer 0 .. 2^53-1 */
    STORED_PLAN_ACTION,      /* plan action index: integer 0 .. 1023 */
    STORED_PLAN_TIME,        /* plan computed_at / valid_until: unix seconds */
    STORED_PLAN_PER_WEEK,    /* <ch>_per_week: plain decimal 0 .. max_per_week */
    STORED_TZ_OFFSET,        /* member tz_offset_min: integer -720 .. 840 */
    STORED_UNSUB,            /* <ch>_unsub: exactly 0 or 1 */
    STORED_COUNT,            /* decayed feature counts: 0 .. 1e12 */
    STORED_TIME,             /* feature times (last_sent, first_seen, ...) */
    STORED_WEEK,             /* week indexes: first_week, ewma_week, <week>:... */
    STORED_WEEK_OPP,         /* <ch>:<week>:opp: integer 0 .. 1e9 */
    STORED_WEEK_SENT,        /* <ch>:<week>:sent: integer 0 .. 1e9 */
    STORED_EWMA,             /* <ch>:ewma opportunities per week: 0 .. 1e9 */
    STORED_BALANCE,          /* <ch>:bal fractional plan's balance: -2 .. 2 */
    STORED_FIRST_FRAC,       /* <ch>:first_frac: 0 .. 1 */
    STORED_SCORE,            /* <ch>:scores entries: -1e12 .. 1e12 */
    STORED_SEND_TIME,        /* <ch>:sends entries, sent zset scores: unix seconds */
    STORED_WEEK_VERSION,     /* the week hash's v: integer 0 .. 1e9 */
    STORED_PLAN_PROPENSITY,  /* plan propensity: 0 .. 1 (0 itself is refused by the plan parser) */
    STORED_PLAN_NEIGHBOURS,  /* plan neighbours: integer 1 .. 8 */
    STORED_PLAN_GAP,         /* entries of plan gaps: -1e12 .. 1e12 */
    STORED_FIELD_COUNT
} stored_field_t;

typedef struct stored_field_spec {
    const char *name; /* the metric label */
    double min, max;  /* inclusive */
    bool integer;     /* must be integral */
    bool plain;       /* no exponent */
} stored_field_spec_t;

/* The spec of `f`; NULL when f is not a field. */
const stored_field_spec_t *stored_field_spec(stored_field_t f);
/* The field's metric label ("week", "unsub", ...); "invalid" when f is not one. */
const char *stored_field_name(stored_field_t f);

/* Values that were present but unusable, per field, as one read found them. */
typedef struct stored_invalid {
    uint32_t n[STORED_FIELD_COUNT];
} stored_invalid_t;

/* Counts one unusable value of `f` (invalid may be NULL). */
void stored_invalid_add(stored_invalid_t *invalid, stored_field_t f);
/* Total over every field. */
uint32_t stored_invalid_total(const stored_invalid_t *invalid);

/* The value of field `f` in s[0..len) (not NUL-terminated), within f's
 * range. False (and *out untouched) when it is not; counted in `invalid`
 * (may be NULL) then. */
bool stored_parse_real(stored_field_t f, const char *s, size_t len, double *out,
                       stored_invalid_t *invalid);
/* As stored_parse_real; a real time or count is rounded down. */
bool stored_parse_int(stored_field_t f, const char *s, size_t len, int64_t *out,
                      stored_invalid_t *invalid);
/* A 0/1 flag. */
bool stored_parse_flag(stored_field_t f, const char *s, size_t len, bool *out,
                       stored_invalid_t *invalid);
/* A plan's per-week value, at most max_per_week (slow.max_per_week). */
bool stored_parse_per_week(const char *s, size_t len, double max_per_week, double *out,
                           stored_invalid_t *invalid);

#endif
