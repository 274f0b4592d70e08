/*
 * events.c - the decision-event sink (see events.h; operator's view in
 * docs/events.md).
 *
 * Why a dedicated thread rather than curl_multi_socket_action on the libuv
 * loop: delivery is only half of the job. The other half is the spool, and
 * appending a batch with fdatasync() takes milliseconds on a busy disk; on
 * the loop thread that would stall every decision behind the disk, which
 * is exactly what the sink must never do. Moving the spool to the libuv
 * thread pool would split one state machine across two threads anyway. So
 * the loop thread only serialises the event (there, because an event may
 * share JSON values with the reply being sent, and jansson values must not
 * cross threads) and appends the text to a mutex-guarded inbox (a pointer
 * swap). One worker thread owns everything else: the curl multi handle
 * (waiting in curl_multi_poll, woken by curl_multi_wakeup), the batch in
 * flight, the retry backoff and the spool. The state machine then reads top
 * to bottom in one place.
 *
 * Stop (events_stop): when the endpoint is up and the spool empty, the
 * queue is POSTed within min(events.timeout_ms, shutdown_grace_s / 2);
 * otherwise, or when that fails or runs out of time, the request in flight
 * is abandoned and everything in memory is appended to the spool, which the
 * next start replays. A redelivered batch is deduplicated by event_id.
 *
 * Flow of an event (worker side, one loop iteration):
 *   inbox --splice--> pending (memory, FIFO) --+--> POST (one batch in flight)
 *                                              +--> spool segment (disk)
 *   spool segments --replay, oldest first--> POST --2xx--> segment removed
 * A batch is "ready" when it holds events.batch_max events or its oldest
 * event has waited events.flush_ms. A ready batch goes to the endpoint when
 * nothing is in flight, no retry is pending and the spool is empty; it goes
 * to the spool instead when the endpoint is down (a retry is pending), when
 * the spool already holds events (so that replay order stays write order),
 * or when a request is in flight and half of events.queue_max events, or
 * half of events.queue_max_bytes of them, wait in memory (the endpoint is
 * too slow). A batch also becomes ready, and is cut, at an eighth of
 * events.queue_max_bytes, so a few large events (a decide with hundreds
 * of candidates makes a 64 KB event) spill as early as many small ones.
 * The spool is always sent before
 * memory, so events reach the endpoint in publish order except around
 * retries. Exactly one batch is in flight: ordering stays simple and one
 * keep-alive connection is plenty for batches of hundreds of events.
 *
 * Failures: a connection error, a timeout, a 5xx, 408 or 429 keeps the
 * batch as the current one and retries it after a capped exponential
 * backoff (events.retry_min_ms doubling to events.retry_max_ms, plus up to
 * 25% jitter so a fleet does not retry in step), forever: meanwhile newer
 * events go to disk. Any other non-2xx answer (a 4xx) is permanent: the
 * batch is logged and appended to dead-letter.ndjson, and delivery goes on.
 *
 * Accounting: `depth` counts events held in memory (inbox, pending, the
 * current batch when it came from memory) and `depth_bytes` their NDJSON
 * size. events_publish() refuses events beyond events.queue_max or
 * events.queue_max_bytes, which can only build up while the spool refuses
 * writes (events.spool_max_bytes reached, or write(2) failing, e.g. ENOSPC)
 * or cannot keep up with publishing: those are the only events ever
 * dropped, with one larger than events.queue_max_bytes on its own, and
 * each one is counted.
 *
 * Replay treats the spool as untrusted input: every line must be one JSON
 * object of at most events.queue_max_bytes (spool_next_run); other lines
 * go to the dead-letter file and the valid ones around them are sent.
 *
 * Files: this one holds the in-memory queue, the loop-thread API and the
 * sink's lifecycle; the worker's loop is in events_worker.c, the spool side
 * in events_spool.c and HTTP in events_delivery.c (events_internal.h, the
 * struct they share, says which thread owns what).
 */
#include "notifd/events/events.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "events_internal.h"
#include "notifd/admin/metrics.h"
#include "notifd/events/spool.h"
#include "notifd/lib/rng.h"
#include "notifd/log.h"
#include "notifd/version.h"

static const char *const counter_names[EVC_COUNT] = {
    [EVC_QUEUED] = "queued",   [EVC_SENT] = "sent",
    [EVC_RETRIED] = "retried", [EVC_SPOOLED] = "spooled",
    [EVC_DEAD_LETTERED] = "dead_lettered", [EVC_DROPPED] = "dropped",
    [EVC_DISABLED] = "disabled",
};

static const char *const endpoint_names[] = {"unknown", "up", "down", "disabled"};

uint64_t ev_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ev_count(events_t *ev, int kind, uint64_t n)
{
    if (n == 0)
        return;
    atomic_fetch_add_explicit(&ev->counts[kind], n, memory_order_relaxed);
    if (kind < METRICS_EVENT_COUNT)
        metrics_events_add(ev->metrics, (metrics_event_t)kind, n);
}

/* Events (and their bytes) entering (+) or leaving (-) memory. */
void ev_set_depth(events_t *ev, int64_t delta, int64_t delta_bytes)
{
    int64_t d = atomic_fetch_add_explicit(&ev->depth, delta, memory_order_relaxed) + delta;
    int64_t b = atomic_fetch_add_explicit(&ev->depth_bytes, delta_bytes, memory_order_relaxed) +
                delta_bytes;
    metrics_events_set_queue_depth(ev->metrics, d);
    metrics_events_set_queue_bytes(ev->metrics, b);
}

/* The most NDJSON bytes in one batch: an eighth of the memory bound, so
 * the batch in flight, its rendered copy and a segment being replayed stay
 * small next to it (docs/events.md, "Memory"). A single larger event is
 * still a batch of one. */
size_t ev_batch_bytes_max(const sink_settings_t *s)
{
    return (size_t)(s->queue_max_bytes / 8);
}

static void settings_from_config(sink_settings_t *s, const config_t *cfg)
{
    const config_events_t *e = &cfg->events;
    snprintf(s->url, sizeof s->url, "%s", e->url);
    s->batch_max = e->batch_max;
    s->flush_ms = e->flush_ms;
    s->timeout_ms = e->timeout_ms;
    s->queue_max = e->queue_max;
    s->queue_max_bytes = e->queue_max_bytes;
    s->retry_min_ms = e->retry_min_ms;
    s->retry_max_ms = e->retry_max_ms;
    s->spool_max_bytes = e->spool_max_bytes;
    s->fsync = e->fsync != 0;
    s->grace_ms = cfg->shutdown_grace_s * 1000;
}

/* ------------------------------------------------------------------ */
/* Lists and batches                                                  */

static void list_push(ev_list_t *l, ev_node_t *n)
{
    n->next = NULL;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
    l->count++;
    l->bytes += n->len + 1;
}

/* Moves all of `from` to the end of `to`. O(1): the loop thread waits for
 * the worker's lock at most this long. */
void ev_list_splice(ev_list_t *to, ev_list_t *from)
{
    if (from->head == NULL)
        return;
    if (to->tail)
        to->tail->next = from->head;
    else
        to->head = from->head;
    to->tail = from->tail;
    to->count += from->count;
    to->bytes += from->bytes;
    *from = (ev_list_t){NULL, NULL, 0, 0};
}

void ev_list_pop_free(ev_list_t *l, size_t n)
{
    while (n-- > 0 && l->head) {
        ev_node_t *x = l->head;
        l->head = x->next;
        if (l->head == NULL)
            l->tail = NULL;
        l->count--;
        l->bytes -= x->len + 1;
        free(x->line);
        free(x);
    }
}

/* NDJSON text of the first events of `l` (left in place): at most `max`
 * of them and `max_bytes` of text, but always the first one. */
char *ev_list_render(const ev_list_t *l, size_t max, size_t max_bytes, size_t *len,
                         size_t *n_out)
{
    size_t total = 0, n = 0;
    for (const ev_node_t *x = l->head; x && n < max; x = x->next, n++) {
        if (n > 0 && total + x->len + 1 > max_bytes)
            break;
        total += x->len + 1;
    }
    max = n;
    char *buf = malloc(total + 1);
    if (buf == NULL)
        return NULL;
    size_t off = 0;
    n = 0;
    for (const ev_node_t *x = l->head; x && n < max; x = x->next, n++) {
        memcpy(buf + off, x->line, x->len);
        off += x->len;
        buf[off++] = '\n';
    }
    buf[off] = '\0';
    *len = off;
    *n_out = n;
    return buf;
}

void ev_batch_clear(events_t *ev)
{
    if (ev->cur.owned)
        free(ev->cur.data);
    ev->cur = (batch_t){0};
    ev->have_cur = false;
}

/* ------------------------------------------------------------------ */
/* Loop-thread API                                                    */

static void events_free(events_t *ev)
{
    if (ev->easy)
        curl_easy_cleanup(ev->easy);
    if (ev->multi)
        curl_multi_cleanup(ev->multi);
    curl_slist_free_all(ev->headers);
    spool_close(ev->spool);
    ev_list_pop_free(&ev->inbox, ev->inbox.count);
    ev_list_pop_free(&ev->pending, ev->pending.count);
    ev_batch_clear(ev);
    ev_replay_reset(ev);
    pthread_mutex_destroy(&ev->mu);
    free(ev);
    curl_global_cleanup();
}

static void on_async_closed(uv_handle_t *h) { events_free(h->data); }

static void on_finished(uv_async_t *h)
{
    events_t *ev = h->data;
    app_t *app = ev->app;
    pthread_join(ev->thread, NULL);
    ev->thread_started = false;
    void (*done)(void *) = ev->done;
    void *done_arg = ev->done_arg;
    app->events = NULL;
    uv_close((uv_handle_t *)h, on_async_closed);
    if (done)
        done(done_arg);
}

int events_start(app_t *app)
{
    const config_t *cfg = app->config;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("cannot start the event sink", "reason=\"curl_global_init failed\"");
        return -1;
    }
    events_t *ev = calloc(1, sizeof *ev);
    if (ev == NULL) {
        curl_global_cleanup();
        return -1;
    }
    ev->app = app;
    ev->metrics = app->metrics;
    pthread_mutex_init(&ev->mu, NULL);
    /* Non-blocking: an early-boot entropy pool must not hold up the start;
     * the fallback is still unique per process run on one host. */
    if (getrandom(&ev->instance, sizeof ev->instance, GRND_NONBLOCK) !=
        (ssize_t)sizeof ev->instance)
        ev->instance = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ ev_now_ms();
    rng_seed(&ev->jitter, ev->instance);
    settings_from_config(&ev->cfg, cfg);
    ev->url_set = cfg->events.url[0] != '\0';
    ev->queue_max = cfg->events.queue_max;
    ev->wake_count = (size_t)cfg->events.batch_max;
    ev->wake_bytes = ev_batch_bytes_max(&ev->cfg);
    ev->queue_max_bytes = cfg->events.queue_max_bytes;
    ev->idle = true;
    snprintf(ev->spool_path, sizeof ev->spool_path, "%s", cfg->events.spool_dir);
    snprintf(ev->user_agent, sizeof ev->user_agent, "notifd/%s", NOTIFD_VERSION);
    atomic_store(&ev->endpoint, ev->url_set ? ENDPOINT_UNKNOWN : ENDPOINT_DISABLED);
    ev->rl_publish = (log_ratelimit_t)LOG_RATELIMIT_INIT(10000, 3);
    ev->rl_fail = (log_ratelimit_t)LOG_RATELIMIT_INIT(10000, 3);
    ev->rl_reject = (log_ratelimit_t)LOG_RATELIMIT_INIT(10000, 5);
    ev->rl_spool_full = (log_ratelimit_t)LOG_RATELIMIT_INIT(10000, 1);
    ev->rl_spool_err = (log_ratelimit_t)LOG_RATELIMIT_INIT(10000, 3);
    ev->rl_bad_line = (log_ratelimit_t)LOG_RATELIMIT_INIT(10000, 5);

    /* With an endpoint configured, the spool must be usable from the start
     * (an outage must not be the first time we find out it is not), and an
     * existing spool is indexed now so the worker replays it first. */
    if (ev->url_set) {
        char why[256];
        ev->spool = spool_open(ev->spool_path, SEGMENT_BYTES, why, sizeof why);
        if (ev->spool == NULL) {
            log_error("cannot open the event spool", "dir=\"%s\" error=\"%s\"", ev->spool_path,
                      why);
            events_free(ev);
            return -1;
        }
        if (spool_segments(ev->spool) > 0)
            log_info("event spool found; replaying it", "dir=\"%s\" segments=%zu bytes=%" PRIu64,
                     ev->spool_path, spool_segments(ev->spool), spool_bytes(ev->spool));
        ev_publish_spool_gauges(ev);
    }
    ev->multi = curl_multi_init();
    ev->easy = curl_easy_init();
    ev->headers = curl_slist_append(NULL, "Content-Type: application/x-ndjson");
    if (ev->headers)
        /* No "Expect: 100-continue" round trip before large batches. */
        ev->headers = curl_slist_append(ev->headers, "Expect:");
    if (ev->multi == NULL || ev->easy == NULL || ev->headers == NULL) {
        log_error("cannot start the event sink", "reason=\"curl init failed\"");
        events_free(ev);
        return -1;
    }
    curl_multi_setopt(ev->multi, CURLMOPT_MAXCONNECTS, 2L);
    if (uv_async_init(app->loop, &ev->finished, on_finished) != 0) {
        events_free(ev);
        return -1;
    }
    ev->finished.data = ev;
    if (pthread_create(&ev->thread, NULL, ev_worker_main, ev) != 0) {
        log_error("cannot start the event sink", "reason=\"pthread_create failed\"");
        uv_close((uv_handle_t *)&ev->finished, on_async_closed);
        return -1;
    }
    ev->thread_started = true;
    app->events = ev;
    log_info("event sink started", "url=%s spool_dir=\"%s\"",
             ev->url_set ? cfg->events.url : "(none)", ev->spool_path);
    return 0;
}

void events_apply_config(app_t *app, const config_t *next)
{
    events_t *ev = app->events;
    if (ev == NULL)
        return;
    if (strcmp(ev->spool_path, next->events.spool_dir) != 0)
        log_warn("events.spool_dir changed; it takes effect at the next restart",
                 "running=\"%s\"", ev->spool_path);
    ev->url_set = next->events.url[0] != '\0';
    ev->queue_max = next->events.queue_max;
    ev->queue_max_bytes = next->events.queue_max_bytes;
    pthread_mutex_lock(&ev->mu);
    settings_from_config(&ev->next, next);
    ev->next_pending = true;
    pthread_mutex_unlock(&ev->mu);
    curl_multi_wakeup(ev->multi);
}

static void drop_published(events_t *ev, const char *why)
{
    ev_count(ev, EVC_DROPPED, 1);
    log_limited(&ev->rl_publish, LOG_ERROR, "decision event dropped",
                "reason=\"%s\" queue_max=%d queue_max_bytes=%" PRId64, why, ev->queue_max,
                ev->queue_max_bytes);
}

void events_publish(app_t *app, json_t *event)
{
    events_t *ev = app->events;
    if (ev == NULL || !json_is_object(event)) {
        json_decref(event);
        return;
    }
    if (!ev->url_set) {
        ev_count(ev, EVC_DISABLED, 1);
        json_decref(event);
        return;
    }
    if (atomic_load_explicit(&ev->depth, memory_order_relaxed) >= ev->queue_max) {
        json_decref(event);
        drop_published(ev, "events.queue_max reached: the endpoint and the spool both refuse");
        return;
    }
    if (json_object_get(event, "event_id") == NULL) {
        char id[33];
        snprintf(id, sizeof id, "%016" PRIx64 "%016" PRIx64, ev->instance, ++ev->next_id);
        json_object_set_new(event, "event_id", json_string(id));
    }
    if (json_object_get(event, "version") == NULL)
        json_object_set_new(event, "version", json_string(NOTIFD_VERSION));
    ev_node_t *n = malloc(sizeof *n);
    char *line = json_dumps(event, JSON_COMPACT);
    json_decref(event);
    if (n == NULL || line == NULL) {
        free(n);
        free(line);
        drop_published(ev, "out of memory");
        return;
    }
    n->line = line;
    n->len = strlen(line);
    n->t_ms = ev_now_ms();
    int64_t bytes = (int64_t)n->len + 1;
    /* Checked once the size is known. Only this thread adds to depth_bytes,
     * so the bound holds; a read that misses the worker's latest drain only
     * errs towards dropping. */
    if (atomic_load_explicit(&ev->depth_bytes, memory_order_relaxed) + bytes >
        ev->queue_max_bytes) {
        free(line);
        free(n);
        drop_published(ev, bytes > ev->queue_max_bytes
                               ? "the event alone is larger than events.queue_max_bytes"
                               : "events.queue_max_bytes reached: the endpoint and the spool "
                                 "refuse or do not keep up");
        return;
    }
    pthread_mutex_lock(&ev->mu);
    if (ev->closed) {
        pthread_mutex_unlock(&ev->mu);
        free(line);
        free(n);
        drop_published(ev, "published after the event sink stopped");
        return;
    }
    list_push(&ev->inbox, n);
    bool wake = ev->idle || ev->inbox.count == ev->wake_count ||
                (ev->inbox.bytes >= ev->wake_bytes &&
                 ev->inbox.bytes - (size_t)bytes < ev->wake_bytes);
    if (wake)
        ev->idle = false;
    pthread_mutex_unlock(&ev->mu);
    ev_set_depth(ev, 1, bytes);
    ev_count(ev, EVC_QUEUED, 1);
    if (wake)
        curl_multi_wakeup(ev->multi);
}

void events_stop(app_t *app, void (*done)(void *arg), void *arg)
{
    events_t *ev = app->events;
    if (ev == NULL) {
        if (done)
            done(arg);
        return;
    }
    if (done != NULL && ev->done == NULL) {
        ev->done = done;
        ev->done_arg = arg;
    }
    pthread_mutex_lock(&ev->mu);
    ev->stop_requested = true;
    if (done == NULL)
        ev->hurry = true;
    pthread_mutex_unlock(&ev->mu);
    ev->stop_called = true;
    curl_multi_wakeup(ev->multi);
}

void events_stats(app_t *app, json_t *obj)
{
    events_t *ev = app->events;
    json_t *o = json_object();
    for (int k = 0; k < EVC_COUNT; k++)
        json_object_set_new(o, counter_names[k],
                            json_integer(ev ? (json_int_t)atomic_load(&ev->counts[k]) : 0));
    json_object_set_new(o, "queue_depth", json_integer(ev ? (json_int_t)atomic_load(&ev->depth) : 0));
    json_object_set_new(o, "queue_bytes",
                        json_integer(ev ? (json_int_t)atomic_load(&ev->depth_bytes) : 0));
    json_object_set_new(o, "spool_bytes",
                        json_integer(ev ? (json_int_t)atomic_load(&ev->spool_bytes) : 0));
    json_object_set_new(o, "spool_segments",
                        json_integer(ev ? (json_int_t)atomic_load(&ev->spool_segs) : 0));
    json_object_set_new(o, "spool_full", json_boolean(ev && atomic_load(&ev->spool_full)));
    json_object_set_new(o, "endpoint",
                        json_string(ev ? endpoint_names[atomic_load(&ev->endpoint)] : "stopped"));
    json_object_set_new(obj, "events", o);
}
