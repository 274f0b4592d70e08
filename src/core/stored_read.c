/*
 * stored_read.c - a decide's read of the member, week and sent state
 * (see stored_read.h).
 */
#include "notifd/core/stored_read.h"

#include <string.h>

#include "notifd/core/decision.h"
#include "notifd/core/pacing.h"

static const char *value_of(const char *const *v, size_t i) { return v != NULL ? v[i] : NULL; }

void stored_read_member(const char *const values[STORED_MEMBER_FIELDS],
                        const size_t lens[STORED_MEMBER_FIELDS], stored_member_t *out,
                        stored_invalid_t *invalid)
{
    *out = (stored_member_t){.open_rate = -1.0};
    int64_t tz;
#define PRESENT(i) (value_of(values, (i)) != NULL)
    if (PRESENT(STORED_MEMBER_TZ) &&
        stored_parse_int(STORED_TZ_OFFSET, values[STORED_MEMBER_TZ], lens[STORED_MEMBER_TZ],
                         &tz, invalid))
        out->tz_offset_min = (int)tz;
    if (PRESENT(STORED_MEMBER_UNSUB))
        stored_parse_flag(STORED_UNSUB, values[STORED_MEMBER_UNSUB], lens[STORED_MEMBER_UNSUB],
                          &out->unsubscribed, invalid);
    double n[STORED_MEMBER_FIELDS] = {0};
    for (int i = STORED_MEMBER_OPEN; i <= STORED_MEMBER_DELIVERED; i++)
        if (PRESENT(i))
            stored_parse_real(STORED_COUNT, values[i], lens[i], &n[i], invalid);
#undef PRESENT
    double base = n[STORED_MEMBER_SENT] > n[STORED_MEMBER_DELIVERED] ? n[STORED_MEMBER_SENT]
                                                                      : n[STORED_MEMBER_DELIVERED];
    double engaged = n[STORED_MEMBER_OPEN] > n[STORED_MEMBER_CLICK] ? n[STORED_MEMBER_OPEN]
                                                                     : n[STORED_MEMBER_CLICK];
    /* Below a couple of sends an open rate says nothing yet. Counts decay
     * and are written by feedback independently, so opens can outrun sends:
     * a rate stays a rate. */
    if (base >= 2.0)
        out->open_rate = engaged >= base ? 1.0 : engaged / base;
}

/* "0.5,0.25,…": the recent best scores, newest first. */
static void parse_scores(member_view_t *v, const char *s, size_t len, stored_invalid_t *invalid)
{
    const char *end = s + len;
    while (s < end && v->n_recent < v->max_recent && v->n_recent < PACING_MAX_RECENT) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *stop = comma ? comma : end;
        double x;
        if (stored_parse_real(STORED_SCORE, s, (size_t)(stop - s), &x, invalid))
            v->recent[v->n_recent++] = x;
        s = comma ? comma + 1 : end;
    }
}

/* "1795392000,1795300000,…": the channel's send times, newest first. */
static void parse_sends(member_view_t *v, const char *s, size_t len, stored_invalid_t *invalid)
{
    const char *end = s + len;
    while (s < end && v->n_sends < DECISION_MAX_RECENT_SENDS) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *stop = comma ? comma : end;
        int64_t t;
        if (stored_parse_int(STORED_SEND_TIME, s, (size_t)(stop - s), &t, invalid))
            v->sends[v->n_sends++] = t;
        s = comma ? comma + 1 : end;
    }
}

static bool is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

/* "<week>:opp" or "<week>:sent" of the view's channel. */
static void week_counter(stored_week_t *w, const char *rest, size_t rl, const char *field,
                         size_t field_len, const char *value, size_t value_len,
                         stored_invalid_t *invalid)
{
    member_view_t *v = w->view;
    const char *colon = memchr(rest, ':', rl);
    if (colon == NULL)
        return;
    const char *kind = colon + 1;
    size_t kl = rl - (size_t)(kind - rest);
    bool opp = is(kind, kl, "opp"), sent = is(kind, kl, "sent");
    if (!opp && !sent)
        return; /* not a field of ours */
    int64_t wk;
    if (!stored_parse_int(STORED_WEEK, rest, (size_t)(colon - rest), &wk, invalid))
        return;
    /* Both weeks are within the calendar's range (a few 10^5): no overflow. */
    if (wk < v->week - 2) {
        /* A week the EWMA has folded in: delete it with the record. */
        if (w->n_stale < STORED_MAX_STALE && field_len < STORED_STALE_FIELD_MAX) {
            memcpy(w->stale[w->n_stale], field, field_len);
            w->stale[w->n_stale++][field_len] = '\0';
        }
        return;
    }
    if (wk > v->week)
        return; /* a week from the future: neither the present nor to delete */
    if (value == NULL) {
        stored_invalid_add(invalid, opp ? STORED_WEEK_OPP : STORED_WEEK_SENT);
        return;
    }
    if (opp) {
        double x;
        if (stored_parse_real(STORED_WEEK_OPP, value, value_len, &x, invalid))
            v->history.counts[wk - (v->week - 2)] = x;
    } else {
        int64_t x;
        if (!stored_parse_int(STORED_WEEK_SENT, value, value_len, &x, invalid))
            return;
        if (wk == v->week)
            v->sent_this_week = (uint32_t)x;
        else
            v->history.sent_before[v->week - 1 - wk] = (uint32_t)x;
    }
}

void stored_read_week_field(stored_week_t *w, const char *ch, size_t ch_len,
                            const char *field, size_t field_len, const char *value,
                            size_t value_len, stored_invalid_t *invalid)
{
    member_view_t *v = w->view;
    if (field != NULL && is(field, field_len, "v")) {
        int64_t version;
        if (stored_parse_int(STORED_WEEK_VERSION, value, value_len, &version, invalid))
            v->version = version;
        return;
    }
    if (field == NULL || field_len <= ch_len + 1 || memcmp(field, ch, ch_len) != 0 ||
        field[ch_len] != ':')
        return;
    opportunity_history_t *h = &v->history;
    const char *rest = field + ch_len + 1;
    size_t rl = field_len - ch_len - 1;
    if (is(rest, rl, "scores")) {
        if (value != NULL && w->scores == NULL) {
            parse_scores(v, value, value_len, invalid);
            w->scores = value;
            w->scores_len = value_len;
        }
        return;
    }
    if (is(rest, rl, "sends")) {
        if (value != NULL)
            parse_sends(v, value, value_len, invalid);
        return;
    }
    int64_t wk;
    if (is(rest, rl, "bal")) {
        h->have_balance =
            stored_parse_real(STORED_BALANCE, value, value_len, &h->balance, invalid);
    } else if (is(rest, rl, "ewma")) {
        h->have_ewma = stored_parse_real(STORED_EWMA, value, value_len, &h->ewma, invalid);
    } else if (is(rest, rl, "ewma_week")) {
        h->have_ewma_week = stored_parse_int(STORED_WEEK, value, value_len, &wk, invalid);
        if (h->have_ewma_week)
            h->ewma_week = wk;
    } else if (is(rest, rl, "first_week")) {
        h->have_first_week = stored_parse_int(STORED_WEEK, value, value_len, &wk, invalid);
        if (h->have_first_week)
            h->first_week = wk;
    } else if (is(rest, rl, "first_frac")) {
        stored_parse_real(STORED_FIRST_FRAC, value, value_len, &h->first_fraction, invalid);
    } else {
        week_counter(w, rest, rl, field, field_len, value, value_len, invalid);
    }
}

bool stored_read_sent_time(const char *s, size_t len, double *out, stored_invalid_t *invalid)
{
    return stored_parse_real(STORED_SEND_TIME, s, len, out, invalid);
}
