/*
 * decide_cache.c - a decide for a member seen recently, without the read.
 *
 * The member's state on a channel (core/member_cache.h) is cached after
 * each record, as the record leaves it: what the read returned, brought up
 * to date by the overlay, plus this decision's own effect. Redis keeps the
 * cache honest (store.h, "client-side caching"): every key a decide reads
 * is tracked, and a change by any other connection (another instance, the
 * planner, a feature loader, redis-cli) invalidates the member here within
 * milliseconds. This connection's own writes are not reported (NOLOOP):
 * records are applied to the entry here, feedback drops the member
 * (policy_forget_member).
 *
 * A decision made on an entry whose invalidation is still on its way is
 * caught by the record script, which re-checks every guarantee itself (the
 * idempotency key, both caps, the dedup window, the durable opt-out).
 * Whenever its outcome is not the one the view predicted, the member's
 * entries go. A refusal says what changed (a message sent meanwhile, an
 * opt-out), and the decide runs again with it, without another read.
 */
#include <stdlib.h>
#include <string.h>

#include "decide_internal.h"
#include "notifd/core/calendar.h"
#include "notifd/core/member_cache.h"
#include "notifd/core/plan_cache.h"
#include "notifd/fast/decide_cache.h"
#include "notifd/admin/metrics.h"
#include "notifd/policy.h"

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* The cache, made (or remade at another size) on first use. */
static member_cache_t *cache_of(decide_ctx_t *d)
{
    policy_state_t *ps = policy_state(d->app);
    const fast_config_t *base = &d->req->cfg->policy.fast;
    size_t want = base->member_cache_entries > 0 ? (size_t)base->member_cache_entries : 0;
    if (ps->member_cache != NULL && ps->member_cache_entries == want)
        return ps->member_cache;
    member_cache_free(ps->member_cache);
    ps->member_cache = member_cache_new(want);
    ps->member_cache_entries = want;
    return ps->member_cache;
}

static bool enabled(const decide_ctx_t *d) { return d->fast->member_cache_ms > 0; }

static member_cache_key_t key_of(const decide_ctx_t *d)
{
    return (member_cache_key_t){
        .member = d->r.member, .member_len = d->r.member_len,
        .channel_key = d->view.channel_key, .generation = d->req->cfg->generation,
        .max_recent = d->view.max_recent,
    };
}

void decide_cache_note_read(decide_ctx_t *d)
{
    d->cache_epoch = store_tracking_epoch(d->app->store);
    d->cache_since = member_cache_clock(policy_state(d->app)->member_cache);
}

bool decide_cache_wants_sent_set(const decide_ctx_t *d)
{
    return enabled(d) && d->r.member_len <= MEMBER_CACHE_MEMBER_MAX;
}

/* Copies n sent ids and times into d's own list. */
static bool keep_sent(decide_ctx_t *d, size_t n, const char *const *ids, const size_t *lens,
                      const double *ts)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lens[i];
    free(d->sent_buf);
    d->sent_buf = malloc(total + 1);
    d->n_sent = 0;
    if (d->sent_buf == NULL)
        return false;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(d->sent_buf + at, ids[i], lens[i]);
        d->sent_off[i] = at;
        d->sent_lens[i] = lens[i];
        d->sent_ts[i] = ts[i];
        at += lens[i];
    }
    d->n_sent = n;
    return true;
}

/* Each candidate's last send, from the kept list. */
static void candidates_last_sent(decide_ctx_t *d)
{
    for (size_t c = 0; c < d->r.n; c++)
        for (size_t i = 0; i < d->n_sent; i++)
            if (d->sent_lens[i] == d->r.candidates[c].id_len &&
                memcmp(d->sent_buf + d->sent_off[i], d->r.candidates[c].id,
                       d->sent_lens[i]) == 0) {
                if (!(d->r.last_sent[c] >= d->sent_ts[i]))
                    d->r.last_sent[c] = d->sent_ts[i];
                break;
            }
}

void decide_cache_take_sent(decide_ctx_t *d, const redisReply *r)
{
    const char *ids[MEMBER_CACHE_SENT_MAX];
    size_t lens[MEMBER_CACHE_SENT_MAX];
    double ts[MEMBER_CACHE_SENT_MAX];
    size_t n = 0;
    for (size_t i = 0; i + 1 < r->elements && n < MEMBER_CACHE_SENT_MAX; i += 2) {
        const redisReply *id = r->element[i], *score = r->element[i + 1];
        double x;
        if (id->type != REDIS_REPLY_STRING || score->type != REDIS_REPLY_STRING ||
            !stored_read_sent_time(score->str, score->len, &x, &d->invalid))
            continue;
        ids[n] = id->str;
        lens[n] = id->len;
        ts[n] = x;
        n++;
    }
    /* A full page may have left older sends out: use it, never cache it. */
    d->sent_complete = r->elements < 2 * MEMBER_CACHE_SENT_MAX;
    if (!keep_sent(d, n, ids, lens, ts))
        d->sent_complete = false;
    candidates_last_sent(d);
}

bool decide_from_cache(decide_ctx_t *d)
{
    if (!enabled(d) || store_state(d->app->store) != STORE_READY)
        return false;
    member_cache_t *c = cache_of(d);
    member_snapshot_t s;
    member_cache_key_t k = key_of(d);
    /* Without its plan cached the decide reads anyway: the whole read. */
    if (c == NULL || (!decide_threshold_mode(d) && !decide_cached_plan(d)) || !member_cache_get(c, &k, now_ms(), (uint64_t)d->fast->member_cache_ms, &s) ||
        calendar_week_index(d->r.ts, s.tz) != s.view.week) {
        metrics_observe_member_cache(d->app->metrics, METRICS_MEMBER_CACHE_MISS);
        return false;
    }
    if (!keep_sent(d, s.n_sent, s.sent_ids, s.sent_lens, s.sent_ts))
        return false;
    d->tz = s.tz;
    d->unsubscribed = s.unsubscribed;
    d->open_rate = s.open_rate;
    /* The entry's view is this decide's: same member, channel and config. */
    size_t max_recent = d->view.max_recent;
    int channel = d->view.channel;
    d->view = s.view;
    d->view.channel = channel;
    d->view.max_recent = max_recent;
    d->view.n_recent = 0;
    d->view.n_recent_new = 0;
    if (s.scores != NULL) {
        /* The list is kept as the text the record passes on; parse it as
         * a read would. */
        const char *ch = d->req->cfg->channels[d->r.channel];
        char field[64];
        size_t fl = strlen(ch);
        if (fl + 8 > sizeof field)
            return false;
        memcpy(field, ch, fl);
        memcpy(field + fl, ":scores", 7);
        fl += 7;
        stored_week_t w = {.view = &d->view};
        stored_read_week_field(&w, ch, strlen(ch), field, fl, s.scores, s.scores_len,
                               &d->invalid);
        if ((d->scores_raw = malloc(s.scores_len + 1)) == NULL)
            return false;
        memcpy(d->scores_raw, s.scores, s.scores_len);
        d->scores_raw_len = s.scores_len;
    }
    d->n_stale = 0;
    d->sent_complete = true;
    candidates_last_sent(d);
    d->from_cache = true;
    decide_cache_note_read(d);
    /* Decides of this member whose reads are out must see this record. */
    overlay_table_t *t = decide_overlay_table(d->app);
    d->read_seq = store_position(d->app->store);
    d->overlay = t ? overlay_join(t, d->r.member, d->r.member_len, d->read_seq) : NULL;
    metrics_observe_member_cache(d->app->metrics, METRICS_MEMBER_CACHE_HIT);
    return true;
}

void decide_cache_fill(decide_ctx_t *d, const overlay_effect_t *effect)
{
    if (!enabled(d))
        return;
    if (d->no_fill || !d->sent_complete) {
        /* This record changes the member, and the entry (if any) would
         * not know: it goes. */
        decide_cache_drop(d);
        return;
    }
    member_cache_t *c = cache_of(d);
    if (c == NULL)
        return;
    member_snapshot_t s = {
        .tz = d->tz, .unsubscribed = d->unsubscribed, .open_rate = d->open_rate,
        .view = d->view,
    };
    overlay_apply(effect, &s.view, NULL, 0, NULL);
    if (effect->have_score) {
        s.scores = d->scores_new;
        s.scores_len = d->scores_new_len;
    } else {
        s.scores = d->scores_raw;
        s.scores_len = d->scores_raw_len;
    }
    size_t n = 0;
    bool truncated = false;
    if (effect->sent && effect->msg != NULL) {
        s.sent_ids[n] = effect->msg;
        s.sent_lens[n] = effect->msg_len;
        s.sent_ts[n] = (double)effect->ts;
        n++;
    }
    for (size_t i = 0; i < d->n_sent; i++) {
        if (n == MEMBER_CACHE_SENT_MAX) {
            truncated = true;
            break;
        }
        if (effect->sent && effect->msg != NULL && d->sent_lens[i] == effect->msg_len &&
            memcmp(d->sent_buf + d->sent_off[i], effect->msg, effect->msg_len) == 0)
            continue; /* sent again: its newer time is first */
        s.sent_ids[n] = d->sent_buf + d->sent_off[i];
        s.sent_lens[n] = d->sent_lens[i];
        s.sent_ts[n] = d->sent_ts[i];
        n++;
    }
    if (truncated)
        return; /* the list no longer holds the whole set */
    s.n_sent = n;
    member_cache_key_t k = key_of(d);
    (void)member_cache_put(c, &k, d->cache_since, now_ms(), &s);
}

void decide_cache_drop(decide_ctx_t *d)
{
    member_cache_invalidate(policy_state(d->app)->member_cache, d->r.member, d->r.member_len);
}

/* The part of a tracked key between its braces: the member (keys.h). */
static bool member_of_key(const char *key, size_t len, const char **member, size_t *mlen)
{
    const char *open = memchr(key, '{', len);
    if (open == NULL)
        return false;
    const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
    if (close == NULL)
        return false;
    *member = open + 1;
    *mlen = (size_t)(close - open - 1);
    return true;
}

void decide_cache_on_invalidate(void *arg, const char *key, size_t len)
{
    app_t *app = arg;
    policy_state_t *ps = policy_state(app);
    if (ps == NULL)
        return;
    if (key == NULL) {
        member_cache_clear(ps->member_cache);
        plan_cache_clear(ps->plan_cache);
        return;
    }
    const char *member;
    size_t mlen;
    if (!member_of_key(key, len, &member, &mlen))
        return;
    member_cache_invalidate(ps->member_cache, member, mlen);
    plan_cache_forget(ps->plan_cache, member, mlen);
}
