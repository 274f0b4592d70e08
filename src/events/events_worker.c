/*
 * events_worker.c - the event sink's worker thread: one loop that takes the
 * inbox, applies reloads, drives the request in flight and then decides
 * what the pending events do (wait, spill to disk, or go out as the next
 * batch), until a stop ends it. Its own file because it is the state
 * machine the design comment at the top of events.c describes, read top to
 * bottom in one place; the queue and the loop-thread API (events.c), the
 * spool (events_spool.c) and HTTP (events_delivery.c) are what it drives.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "events_internal.h"
#include "notifd/events/spool.h"
#include "notifd/log.h"

static bool batch_ready(const events_t *ev, uint64_t now)
{
    if (ev->pending.count == 0)
        return false;
    return ev->stopping || ev->pending.count >= (size_t)ev->cfg.batch_max ||
           ev->pending.bytes >= ev_batch_bytes_max(&ev->cfg) ||
           now - ev->pending.head->t_ms >= (uint64_t)ev->cfg.flush_ms;
}

/* Why a ready batch goes to disk rather than waiting for the endpoint; see
 * the comment at the top of events.c. */
static bool must_spill(const events_t *ev)
{
    return ev->cfg.url[0] == '\0' || ev->down || ev_spool_pending(ev) ||
           (ev->in_flight && (ev->pending.count >= (size_t)ev->cfg.queue_max / 2 ||
                              ev->pending.bytes >= (size_t)(ev->cfg.queue_max_bytes / 2)));
}

static void spill_ready(events_t *ev, uint64_t now)
{
    while (now >= ev->spill_retry_at_ms && batch_ready(ev, now) && must_spill(ev))
        if (!ev_spill_pending(ev)) {
            ev->spill_retry_at_ms = now + SPILL_RETRY_MS;
            break;
        }
}

static void take_memory_batch(events_t *ev)
{
    size_t len, n;
    char *buf = ev_list_render(&ev->pending, (size_t)ev->cfg.batch_max, ev_batch_bytes_max(&ev->cfg),
                            &len, &n);
    if (buf == NULL)
        return;
    ev_list_pop_free(&ev->pending, n);
    ev->cur = (batch_t){buf, len, n, FROM_MEMORY, true, 0};
    ev->have_cur = true;
}

static void maybe_send(events_t *ev, uint64_t now)
{
    if (ev->in_flight || ev->cfg.url[0] == '\0' || now < ev->retry_at_ms)
        return;
    if (!ev->have_cur && !ev_next_replay_batch(ev) && batch_ready(ev, now))
        take_memory_batch(ev);
    if (ev->have_cur)
        ev_start_send(ev);
}

static void apply_settings(events_t *ev, const sink_settings_t *s)
{
    bool url_changed = strcmp(ev->cfg.url, s->url) != 0;
    ev->cfg = *s;
    if (ev->backoff_ms > s->retry_max_ms)
        ev->backoff_ms = s->retry_max_ms;
    if (!url_changed)
        return;
    /* A new endpoint starts with a clean slate; the old one's backoff says
     * nothing about it. */
    ev->down = false;
    ev->backoff_ms = 0;
    ev->retry_at_ms = 0;
    if (s->url[0] == '\0') {
        ev_abort_in_flight(ev);
        ev_cur_to_spool(ev, false);
        atomic_store(&ev->endpoint, ENDPOINT_DISABLED);
        log_info("events disabled; waiting events are spooled", "%s", "");
    } else {
        atomic_store(&ev->endpoint, ENDPOINT_UNKNOWN);
        ev_get_spool(ev); /* replays a spool left while events were off */
        log_info("event endpoint changed", "url=%s", s->url);
    }
}

static void begin_stop(events_t *ev, uint64_t now, bool hurry)
{
    int budget = ev->cfg.timeout_ms < ev->cfg.grace_ms / 2 ? ev->cfg.timeout_ms
                                                           : ev->cfg.grace_ms / 2;
    ev->stopping = true;
    ev->hurried = hurry;
    ev->stop_deadline_ms = now + (uint64_t)(budget > 0 ? budget : 0);
    /* Flush straight to the endpoint only when that is likely to work and
     * keeps order; otherwise the disk is the fast and safe place. */
    ev->stop_direct = !hurry && budget > 0 && ev->cfg.url[0] != '\0' && !ev->down &&
                      !ev_spool_pending(ev) && !(ev->have_cur && !ev->in_flight);
    if (!ev->stop_direct)
        ev_abort_in_flight(ev);
    log_info("event sink stopping", "in_memory=%" PRId64 " mode=%s budget_ms=%d",
             atomic_load(&ev->depth), ev->stop_direct ? "flush" : "spool", budget);
}

/* One step of a stop; true when the worker may finish. */
static bool stop_step(events_t *ev, uint64_t now)
{
    if (ev->hurried || now >= ev->stop_deadline_ms || !ev->stop_direct) {
        ev_abort_in_flight(ev);
        return true;
    }
    if (ev->in_flight)
        return false;
    if (ev->have_cur)
        return true; /* a failed flush: on_complete turned stop_direct off already */
    if (ev->pending.count == 0)
        return true;
    take_memory_batch(ev);
    if (ev->have_cur)
        ev_start_send(ev);
    return !ev->in_flight;
}

/* The worker's last act: whatever is still in memory goes to disk. */
static void finish(events_t *ev)
{
    ev_abort_in_flight(ev);
    pthread_mutex_lock(&ev->mu);
    ev->closed = true;
    ev_list_splice(&ev->pending, &ev->inbox);
    pthread_mutex_unlock(&ev->mu);
    size_t spooled_before = (size_t)atomic_load(&ev->counts[EVC_SPOOLED]);
    ev_cur_to_spool(ev, true);
    while (ev->pending.count > 0) {
        if (!ev_spill_pending(ev)) {
            size_t n = ev->pending.count;
            log_error("events lost at stop: cannot spool them", "events=%zu dir=\"%s\"", n,
                      ev->spool_path);
            size_t bytes = ev->pending.bytes;
            ev_count(ev, EVC_DROPPED, n);
            ev_list_pop_free(&ev->pending, n);
            ev_set_depth(ev, -(int64_t)n, -(int64_t)bytes);
        }
    }
    ev_replay_reset(ev);
    log_info("event sink stopped",
             "sent=%" PRIu64 " spooled_at_stop=%zu spool_bytes=%" PRIu64 " dropped=%" PRIu64,
             atomic_load(&ev->counts[EVC_SENT]),
             (size_t)atomic_load(&ev->counts[EVC_SPOOLED]) - spooled_before,
             ev->spool ? spool_bytes(ev->spool) : 0, atomic_load(&ev->counts[EVC_DROPPED]));
}

static int next_timeout(const events_t *ev, uint64_t now)
{
    uint64_t t = IDLE_POLL_MS;
    if (ev->stopping) {
        uint64_t left = ev->stop_deadline_ms > now ? ev->stop_deadline_ms - now : 0;
        return (int)(left < t ? left : t);
    }
    if (ev->pending.count > 0) {
        uint64_t due = ev->pending.head->t_ms + (uint64_t)ev->cfg.flush_ms;
        if (due > now && due - now < t)
            t = due - now;
        if (ev->spill_retry_at_ms > now && ev->spill_retry_at_ms - now < t)
            t = ev->spill_retry_at_ms - now;
    }
    if ((ev->have_cur || ev_spool_pending(ev)) && !ev->in_flight && ev->retry_at_ms > now &&
        ev->retry_at_ms - now < t)
        t = ev->retry_at_ms - now;
    return (int)t;
}

void *ev_worker_main(void *arg)
{
    events_t *ev = arg;
    for (;;) {
        uint64_t now = ev_now_ms();
        sink_settings_t next;
        pthread_mutex_lock(&ev->mu);
        ev_list_splice(&ev->pending, &ev->inbox);
        bool have_next = ev->next_pending;
        if (have_next)
            next = ev->next;
        ev->next_pending = false;
        bool stop = ev->stop_requested, hurry = ev->hurry;
        pthread_mutex_unlock(&ev->mu);

        if (have_next)
            apply_settings(ev, &next);
        if (stop && !ev->stopping)
            begin_stop(ev, now, hurry);
        if (ev->stopping && hurry)
            ev->hurried = true;

        ev_drive_transfer(ev);
        now = ev_now_ms();
        if (ev->stopping) {
            if (stop_step(ev, now))
                break;
        } else {
            spill_ready(ev, now);
            maybe_send(ev, now);
        }

        /* Before sleeping, look at the inbox once more under the lock and
         * tell publishers when to wake us: a publish between here and
         * curl_multi_poll() is not missed, because a wakeup sent before the
         * poll makes the poll return at once. */
        pthread_mutex_lock(&ev->mu);
        size_t before = ev->pending.count;
        ev_list_splice(&ev->pending, &ev->inbox);
        bool more = ev->pending.count != before || ev->next_pending ||
                    ev->stop_requested != stop || ev->hurry != hurry;
        ev->idle = ev->pending.count == 0;
        size_t bm = (size_t)ev->cfg.batch_max;
        ev->wake_count = ev->pending.count < bm ? bm - ev->pending.count : 1;
        size_t bb = ev_batch_bytes_max(&ev->cfg);
        ev->wake_bytes = ev->pending.bytes < bb ? bb - ev->pending.bytes : 1;
        pthread_mutex_unlock(&ev->mu);
        if (more)
            continue;
        curl_multi_poll(ev->multi, NULL, 0, next_timeout(ev, ev_now_ms()), NULL);
    }
    finish(ev);
    uv_async_send(&ev->finished);
    return NULL;
}

