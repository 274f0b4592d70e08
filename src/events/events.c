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
 */
#include "notifd/events/events.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/lib/rng.h"
#include "notifd/events/spool.h"
#include "notifd/version.h"

#define SEGMENT_BYTES (4u << 20)    /* a new spool segment every 4 MiB */
#define IDLE_POLL_MS 1000           /* safety net: the worker re-checks at least this often */
#define SPILL_RETRY_MS 1000         /* after a failed spool write, try again this much later */
#define RESPONSE_SNIPPET 200        /* bytes of an error response kept for the log */
#define SPILL_EVENTS_MAX 4096       /* events per spool write: bounds its iovec array */

/* Local counters; the first six are also the registry's metrics_event_t. */
enum {
    EVC_QUEUED = METRICS_EVENT_QUEUED,
    EVC_SENT = METRICS_EVENT_SENT,
    EVC_RETRIED = METRICS_EVENT_RETRIED,
    EVC_SPOOLED = METRICS_EVENT_SPOOLED,
    EVC_DEAD_LETTERED = METRICS_EVENT_DEAD_LETTERED,
    EVC_DROPPED = METRICS_EVENT_DROPPED,
    EVC_DISABLED = METRICS_EVENT_COUNT, /* published while events.url is unset */
    EVC_COUNT
};

static const char *const counter_names[EVC_COUNT] = {
    [EVC_QUEUED] = "queued",   [EVC_SENT] = "sent",
    [EVC_RETRIED] = "retried", [EVC_SPOOLED] = "spooled",
    [EVC_DEAD_LETTERED] = "dead_lettered", [EVC_DROPPED] = "dropped",
    [EVC_DISABLED] = "disabled",
};

enum { ENDPOINT_UNKNOWN = 0, ENDPOINT_UP, ENDPOINT_DOWN, ENDPOINT_DISABLED };
static const char *const endpoint_names[] = {"unknown", "up", "down", "disabled"};

/* What the worker needs from a config snapshot (copied: the worker never
 * holds a config_t, so reloads need no reference juggling across threads). */
typedef struct sink_settings {
    char url[CONFIG_URL_MAX];
    int batch_max;
    int flush_ms;
    int timeout_ms;
    int queue_max;
    int64_t queue_max_bytes;
    int retry_min_ms;
    int retry_max_ms;
    int64_t spool_max_bytes;
    bool fsync;
    int grace_ms;
} sink_settings_t;

typedef struct ev_node {
    struct ev_node *next;
    uint64_t t_ms;                  /* when published (monotonic) */
    size_t len;
    char *line;                     /* compact JSON, no newline */
} ev_node_t;

typedef struct ev_list {
    ev_node_t *head, *tail;
    size_t count;
    size_t bytes;                   /* NDJSON size: the lines and their newlines */
} ev_list_t;

typedef enum batch_source { FROM_MEMORY, FROM_SPOOL } batch_source_t;

/* The batch being delivered: NDJSON text and where it came from. A spool
 * batch points into the segment being replayed (not owned). */
typedef struct batch {
    char *data;
    size_t len;
    size_t count;
    batch_source_t source;
    bool owned;
    size_t spool_end;               /* replay offset once delivered */
} batch_t;

typedef struct events {
    app_t *app;
    void *metrics;

    /* ---- loop thread only ---- */
    uint64_t instance;              /* random per process run: first half of event_id */
    uint64_t next_id;               /* second half */
    bool url_set;
    int queue_max;
    int64_t queue_max_bytes;
    bool stop_called;
    void (*done)(void *arg);
    void *done_arg;
    uv_async_t finished;            /* worker -> loop: "I am done" */
    log_ratelimit_t rl_publish;

    /* ---- shared, under mu ---- */
    pthread_mutex_t mu;
    ev_list_t inbox;
    sink_settings_t next;
    bool next_pending;
    bool stop_requested;
    bool hurry;
    bool closed;                    /* the worker took its last look at the inbox */
    bool idle;                      /* worker sleeps with nothing pending: wake on publish */
    size_t wake_count;              /* inbox size at which a batch becomes full */
    size_t wake_bytes;              /* inbox bytes at which a batch becomes full */

    /* ---- any thread ---- */
    _Atomic int64_t depth;
    _Atomic int64_t depth_bytes;    /* NDJSON bytes of the `depth` events */
    _Atomic uint64_t counts[EVC_COUNT];
    _Atomic int64_t spool_bytes;
    _Atomic int64_t spool_segs;
    _Atomic int endpoint;
    _Atomic bool spool_full;
    CURLM *multi;                   /* curl_multi_wakeup() is thread-safe */

    /* ---- worker thread only ---- */
    pthread_t thread;
    bool thread_started;
    CURL *easy;
    struct curl_slist *headers;
    char user_agent[64];
    sink_settings_t cfg;
    char spool_path[CONFIG_PATH_MAX];
    spool_t *spool;
    ev_list_t pending;
    batch_t cur;
    bool have_cur;
    bool in_flight;
    bool down;
    int backoff_ms;
    uint64_t retry_at_ms;
    uint64_t spill_retry_at_ms;
    bool replaying;
    uint64_t replay_seq;
    char *replay_buf;
    size_t replay_len, replay_off;
    bool stopping, stop_direct, hurried;
    uint64_t stop_deadline_ms;
    rng_t jitter;
    char curl_err[CURL_ERROR_SIZE];
    char resp[RESPONSE_SNIPPET + 1];
    size_t resp_len;
    log_ratelimit_t rl_fail, rl_reject, rl_spool_full, rl_spool_err, rl_bad_line;
} events_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void count(events_t *ev, int kind, uint64_t n)
{
    if (n == 0)
        return;
    atomic_fetch_add_explicit(&ev->counts[kind], n, memory_order_relaxed);
    if (kind < METRICS_EVENT_COUNT)
        metrics_events_add(ev->metrics, (metrics_event_t)kind, n);
}

/* Events (and their bytes) entering (+) or leaving (-) memory. */
static void set_depth(events_t *ev, int64_t delta, int64_t delta_bytes)
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
static size_t batch_bytes_max(const sink_settings_t *s)
{
    return (size_t)(s->queue_max_bytes / 8);
}

static void publish_spool_gauges(events_t *ev)
{
    int64_t bytes = ev->spool ? (int64_t)spool_bytes(ev->spool) : 0;
    atomic_store_explicit(&ev->spool_bytes, bytes, memory_order_relaxed);
    atomic_store_explicit(&ev->spool_segs, ev->spool ? (int64_t)spool_segments(ev->spool) : 0,
                          memory_order_relaxed);
    metrics_events_set_spool_bytes(ev->metrics, bytes);
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
static void list_splice(ev_list_t *to, ev_list_t *from)
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

static void list_pop_free(ev_list_t *l, size_t n)
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
static char *list_render(const ev_list_t *l, size_t max, size_t max_bytes, size_t *len,
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

static void batch_clear(events_t *ev)
{
    if (ev->cur.owned)
        free(ev->cur.data);
    ev->cur = (batch_t){0};
    ev->have_cur = false;
}

static void replay_reset(events_t *ev)
{
    free(ev->replay_buf);
    ev->replay_buf = NULL;
    ev->replaying = false;
    ev->replay_len = ev->replay_off = 0;
}

/* ------------------------------------------------------------------ */
/* Spool (worker thread)                                              */

static spool_t *get_spool(events_t *ev)
{
    if (ev->spool != NULL)
        return ev->spool;
    char why[256];
    ev->spool = spool_open(ev->spool_path, SEGMENT_BYTES, why, sizeof why);
    if (ev->spool == NULL)
        log_limited(&ev->rl_spool_err, LOG_ERROR, "cannot open the event spool",
                    "dir=\"%s\" error=\"%s\"", ev->spool_path, why);
    publish_spool_gauges(ev);
    return ev->spool;
}

static bool spool_pending(const events_t *ev)
{
    return ev->replaying || (ev->spool != NULL && spool_segments(ev->spool) > 0);
}

/* Appends one batch of NDJSON to the spool. Returns true when it is on disk;
 * otherwise logs (rate-limited) and the caller keeps the events. */
static bool spool_write(events_t *ev, struct iovec *iov, int iovcnt, size_t n)
{
    spool_t *sp = get_spool(ev);
    if (sp == NULL)
        return false;
    int rc = spool_appendv(sp, iov, iovcnt, ev->cfg.fsync, ev->cfg.spool_max_bytes);
    if (rc == SPOOL_FULL) {
        if (!atomic_exchange(&ev->spool_full, true))
            log_error("EVENT SPOOL FULL: events.spool_max_bytes reached; events now wait in "
                      "memory and are dropped (counted) once events.queue_max is reached",
                      "dir=\"%s\" spool_bytes=%" PRIu64 " spool_max_bytes=%" PRId64,
                      ev->spool_path, spool_bytes(sp), ev->cfg.spool_max_bytes);
        else
            log_limited(&ev->rl_spool_full, LOG_ERROR, "event spool still full",
                        "dir=\"%s\" spool_bytes=%" PRIu64 " waiting_in_memory=%" PRId64,
                        ev->spool_path, spool_bytes(sp), atomic_load(&ev->depth));
        return false;
    }
    if (rc != 0) {
        log_limited(&ev->rl_spool_err, LOG_ERROR,
                    "cannot write the event spool; events wait in memory",
                    "dir=\"%s\" error=\"%s\" events=%zu", ev->spool_path, strerror(-rc), n);
        return false;
    }
    atomic_store(&ev->spool_full, false);
    count(ev, EVC_SPOOLED, n);
    publish_spool_gauges(ev);
    return true;
}

/* Moves the oldest events of `pending` to disk in one write and one sync
 * (group commit): when publishing outpaces fdatasync, each write takes all
 * that piled up during the last one, so the spool keeps up where one sync
 * per batch would fall behind and memory would fill up. The lines are
 * written from where they are, not copied. Takes at most what still fits
 * under events.spool_max_bytes, but always one event, so that a full spool
 * is still reported as full. */
static bool spill_pending(events_t *ev)
{
    spool_t *sp = get_spool(ev);
    if (sp == NULL || ev->pending.count == 0)
        return false;
    uint64_t room = UINT64_MAX;
    if (ev->cfg.spool_max_bytes >= 0) {
        uint64_t used = spool_bytes(sp), max = (uint64_t)ev->cfg.spool_max_bytes;
        room = max > used ? max - used : 0;
    }
    size_t cap = ev->pending.count < SPILL_EVENTS_MAX ? ev->pending.count : SPILL_EVENTS_MAX;
    struct iovec *iov = malloc(2 * cap * sizeof *iov);
    if (iov == NULL)
        return false;
    size_t n = 0, bytes = 0;
    for (ev_node_t *x = ev->pending.head; x != NULL && n < cap; x = x->next, n++) {
        if (n > 0 && bytes + x->len + 1 > room)
            break;
        iov[2 * n] = (struct iovec){x->line, x->len};
        iov[2 * n + 1] = (struct iovec){(void *)"\n", 1};
        bytes += x->len + 1;
    }
    bool ok = spool_write(ev, iov, (int)(2 * n), n);
    free(iov);
    if (ok) {
        list_pop_free(&ev->pending, n);
        set_depth(ev, -(int64_t)n, -(int64_t)bytes);
    }
    return ok;
}

/* The current batch goes back to disk (stop, or the endpoint removed by a
 * reload). A spool batch needs nothing: its segment is still on disk. */
static void cur_to_spool(events_t *ev, bool last_chance)
{
    if (!ev->have_cur)
        return;
    if (ev->cur.source == FROM_SPOOL) {
        batch_clear(ev);
        replay_reset(ev);
        return;
    }
    struct iovec one = {ev->cur.data, ev->cur.len};
    if (spool_write(ev, &one, 1, ev->cur.count)) {
        set_depth(ev, -(int64_t)ev->cur.count, -(int64_t)ev->cur.len);
        batch_clear(ev);
    } else if (last_chance) {
        log_error("events lost at stop: cannot spool them", "events=%zu", ev->cur.count);
        count(ev, EVC_DROPPED, ev->cur.count);
        set_depth(ev, -(int64_t)ev->cur.count, -(int64_t)ev->cur.len);
        batch_clear(ev);
    }
}

/* Appends `n` events (NDJSON) to the dead-letter file; if that fails they
 * are lost, and said so. */
static void dead_letter(events_t *ev, const char *data, size_t len, size_t n)
{
    spool_t *sp = get_spool(ev);
    int rc = sp ? spool_dead_letter(sp, data, len, ev->cfg.fsync) : -EIO;
    if (rc == 0) {
        count(ev, EVC_DEAD_LETTERED, n);
        return;
    }
    log_error("cannot write the dead-letter file; rejected events lost",
              "dir=\"%s\" error=\"%s\" events=%zu", ev->spool_path, strerror(-rc), n);
    count(ev, EVC_DROPPED, n);
}

/* Reads the oldest segment into replay_buf, '\n'-terminated: a last line
 * without its newline (a crash mid-append) is then a line like the others,
 * and is either a whole event or bad. False when the spool is empty. */
static bool replay_open_oldest(events_t *ev)
{
    for (;;) {
        uint64_t seq;
        if (ev->spool == NULL || !spool_oldest(ev->spool, &seq))
            return false;
        /* A segment this config could have written holds SEGMENT_BYTES
         * plus at most one batch, itself at most events.queue_max_bytes
         * (one large event). A larger one is not read into memory. */
        size_t max = SEGMENT_BYTES + (size_t)ev->cfg.queue_max_bytes;
        int rc = spool_read(ev->spool, seq, max, &ev->replay_buf, &ev->replay_len);
        char *grown = NULL;
        if (rc == 0 && ev->replay_len > 0 && ev->replay_buf[ev->replay_len - 1] != '\n') {
            grown = realloc(ev->replay_buf, ev->replay_len + 2);
            if (grown == NULL) {
                rc = -ENOMEM;
                replay_reset(ev);
            } else {
                ev->replay_buf = grown;
                ev->replay_buf[ev->replay_len++] = '\n';
                ev->replay_buf[ev->replay_len] = '\0';
            }
        }
        if (rc != 0) {
            log_error("cannot read an event spool segment; quarantined",
                      "dir=\"%s\" seq=%" PRIu64 " error=\"%s\" max_bytes=%zu", ev->spool_path,
                      seq, strerror(-rc), max);
            spool_quarantine(ev->spool, seq);
            publish_spool_gauges(ev);
            continue;
        }
        ev->replaying = true;
        ev->replay_seq = seq;
        ev->replay_off = 0;
        log_info("replaying event spool segment", "seq=%" PRIu64 " bytes=%zu%s", seq,
                 ev->replay_len, grown ? " last_line_unterminated=true" : "");
        return true;
    }
}

/* The next batch of the spool, oldest segment first. Every line is checked
 * (spool_next_run): lines that are not one JSON object, or longer than
 * events.queue_max_bytes, go to the dead-letter file on the way, so one bad
 * line never takes a valid batch down with it. Delivered and emptied
 * segments are removed on the way too. */
static bool next_replay_batch(events_t *ev)
{
    spool_run_limits_t lim = {(size_t)ev->cfg.batch_max, batch_bytes_max(&ev->cfg),
                              (size_t)ev->cfg.queue_max_bytes};
    for (;;) {
        if (!ev->replaying && !replay_open_oldest(ev))
            return false;
        size_t end, n;
        spool_run_t run = spool_next_run(ev->replay_buf, ev->replay_len, ev->replay_off, &lim,
                                         &end, &n);
        if (run == SPOOL_RUN_END) {
            spool_remove(ev->spool, ev->replay_seq);
            replay_reset(ev);
            publish_spool_gauges(ev);
            continue;
        }
        if (run == SPOOL_RUN_BAD) {
            log_limited(&ev->rl_bad_line, LOG_WARN,
                        "event spool lines are not events; written to the dead-letter file",
                        "seq=%" PRIu64 " offset=%zu lines=%zu bytes=%zu file=\"%s/%s\"",
                        ev->replay_seq, ev->replay_off, n, end - ev->replay_off,
                        ev->spool_path, SPOOL_DEAD_LETTER_NAME);
            dead_letter(ev, ev->replay_buf + ev->replay_off, end - ev->replay_off, n);
            ev->replay_off = end;
            continue;
        }
        ev->cur = (batch_t){ev->replay_buf + ev->replay_off, end - ev->replay_off, n,
                            FROM_SPOOL, false, end};
        ev->have_cur = true;
        return true;
    }
}

/* ------------------------------------------------------------------ */
/* HTTP (worker thread)                                               */

static size_t on_response_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    events_t *ev = userdata;
    size_t n = size * nmemb, room = RESPONSE_SNIPPET - ev->resp_len;
    size_t k = n < room ? n : room;
    for (size_t i = 0; i < k; i++) {
        /* Kept for a log line: no quotes or control characters. */
        char c = ptr[i];
        ev->resp[ev->resp_len++] = (c == '"' || (unsigned char)c < 0x20) ? ' ' : c;
    }
    ev->resp[ev->resp_len] = '\0';
    return n;
}

static void abort_in_flight(events_t *ev)
{
    if (!ev->in_flight)
        return;
    curl_multi_remove_handle(ev->multi, ev->easy);
    ev->in_flight = false;
}

/* Options are set per request, never while the handle is in the multi, so
 * a reload can change the URL or timeout between two batches. The
 * connection cache belongs to the multi handle, so the TCP connection is
 * kept alive across requests. */
static void start_send(events_t *ev)
{
    CURL *e = ev->easy;
    curl_easy_setopt(e, CURLOPT_URL, ev->cfg.url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, ev->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, ev->user_agent);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)ev->cur.len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, ev->cur.data);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)ev->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ev->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_response_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, ev);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, ev->curl_err);
    ev->curl_err[0] = '\0';
    ev->resp_len = 0;
    ev->resp[0] = '\0';
    CURLMcode mc = curl_multi_add_handle(ev->multi, e);
    if (mc != CURLM_OK) {
        /* Cannot even start: treat as a connection error on the next turn. */
        snprintf(ev->curl_err, sizeof ev->curl_err, "%s", curl_multi_strerror(mc));
        ev->down = true;
        ev->retry_at_ms = now_ms() + (uint64_t)ev->cfg.retry_max_ms;
        return;
    }
    ev->in_flight = true;
}

/* A batch is off our hands (delivered or dead-lettered). */
static void batch_done(events_t *ev)
{
    bool from_spool = ev->cur.source == FROM_SPOOL;
    if (from_spool)
        ev->replay_off = ev->cur.spool_end;
    else
        set_depth(ev, -(int64_t)ev->cur.count, -(int64_t)ev->cur.len);
    batch_clear(ev);
    if (from_spool && ev->replay_off == ev->replay_len) {
        /* Remove a delivered segment at once, so a stop right now does not
         * replay it again at the next start. (Bad lines after the last
         * batch are left for next_replay_batch to dead-letter.) */
        spool_remove(ev->spool, ev->replay_seq);
        replay_reset(ev);
        publish_spool_gauges(ev);
    }
}

static void endpoint_up(events_t *ev)
{
    if (ev->down)
        log_info("event endpoint reachable again", "url=%s", ev->cfg.url);
    ev->down = false;
    ev->backoff_ms = 0;
    ev->retry_at_ms = 0;
    atomic_store(&ev->endpoint, ENDPOINT_UP);
}

static void on_complete(events_t *ev, CURLcode res, long status)
{
    if (res == CURLE_OK && status >= 200 && status < 300) {
        count(ev, EVC_SENT, ev->cur.count);
        endpoint_up(ev);
        batch_done(ev);
        return;
    }
    bool retry = res != CURLE_OK || status >= 500 || status == 408 || status == 429;
    if (!retry) {
        log_limited(&ev->rl_reject, LOG_ERROR,
                    "event endpoint rejected a batch; written to the dead-letter file",
                    "url=%s status=%ld events=%zu file=\"%s/%s\" response=\"%s\"", ev->cfg.url,
                    status, ev->cur.count, ev->spool_path, SPOOL_DEAD_LETTER_NAME, ev->resp);
        endpoint_up(ev);
        dead_letter(ev, ev->cur.data, ev->cur.len, ev->cur.count);
        batch_done(ev);
        return;
    }
    count(ev, EVC_RETRIED, ev->cur.count);
    ev->down = true;
    atomic_store(&ev->endpoint, ENDPOINT_DOWN);
    int b = ev->backoff_ms ? ev->backoff_ms * 2 : ev->cfg.retry_min_ms;
    ev->backoff_ms = b > ev->cfg.retry_max_ms ? ev->cfg.retry_max_ms : b;
    uint64_t jitter = rng_next_u64(&ev->jitter) % (uint64_t)(ev->backoff_ms / 4 + 1);
    ev->retry_at_ms = now_ms() + (uint64_t)ev->backoff_ms + jitter;
    if (res != CURLE_OK)
        log_limited(&ev->rl_fail, LOG_WARN, "event delivery failed; will retry",
                    "url=%s error=\"%s\" events=%zu retry_in_ms=%d", ev->cfg.url,
                    ev->curl_err[0] ? ev->curl_err : curl_easy_strerror(res), ev->cur.count,
                    ev->backoff_ms);
    else
        log_limited(&ev->rl_fail, LOG_WARN, "event delivery failed; will retry",
                    "url=%s status=%ld events=%zu retry_in_ms=%d response=\"%s\"", ev->cfg.url,
                    status, ev->cur.count, ev->backoff_ms, ev->resp);
    if (ev->stopping)
        ev->stop_direct = false; /* no retries at stop: spool the rest */
}

static void drive_transfer(events_t *ev)
{
    if (!ev->in_flight)
        return;
    int running = 0;
    curl_multi_perform(ev->multi, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(ev->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE || msg->easy_handle != ev->easy)
            continue;
        CURLcode res = msg->data.result;
        long status = 0;
        curl_easy_getinfo(ev->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(ev->multi, ev->easy); /* invalidates msg */
        ev->in_flight = false;
        on_complete(ev, res, status);
    }
}

/* ------------------------------------------------------------------ */
/* The worker's decisions                                             */

static bool batch_ready(const events_t *ev, uint64_t now)
{
    if (ev->pending.count == 0)
        return false;
    return ev->stopping || ev->pending.count >= (size_t)ev->cfg.batch_max ||
           ev->pending.bytes >= batch_bytes_max(&ev->cfg) ||
           now - ev->pending.head->t_ms >= (uint64_t)ev->cfg.flush_ms;
}

/* Why a ready batch goes to disk rather than waiting for the endpoint; see
 * the header comment. */
static bool must_spill(const events_t *ev)
{
    return ev->cfg.url[0] == '\0' || ev->down || spool_pending(ev) ||
           (ev->in_flight && (ev->pending.count >= (size_t)ev->cfg.queue_max / 2 ||
                              ev->pending.bytes >= (size_t)(ev->cfg.queue_max_bytes / 2)));
}

static void spill_ready(events_t *ev, uint64_t now)
{
    while (now >= ev->spill_retry_at_ms && batch_ready(ev, now) && must_spill(ev))
        if (!spill_pending(ev)) {
            ev->spill_retry_at_ms = now + SPILL_RETRY_MS;
            break;
        }
}

static void take_memory_batch(events_t *ev)
{
    size_t len, n;
    char *buf = list_render(&ev->pending, (size_t)ev->cfg.batch_max, batch_bytes_max(&ev->cfg),
                            &len, &n);
    if (buf == NULL)
        return;
    list_pop_free(&ev->pending, n);
    ev->cur = (batch_t){buf, len, n, FROM_MEMORY, true, 0};
    ev->have_cur = true;
}

static void maybe_send(events_t *ev, uint64_t now)
{
    if (ev->in_flight || ev->cfg.url[0] == '\0' || now < ev->retry_at_ms)
        return;
    if (!ev->have_cur && !next_replay_batch(ev) && batch_ready(ev, now))
        take_memory_batch(ev);
    if (ev->have_cur)
        start_send(ev);
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
        abort_in_flight(ev);
        cur_to_spool(ev, false);
        atomic_store(&ev->endpoint, ENDPOINT_DISABLED);
        log_info("events disabled; waiting events are spooled", "%s", "");
    } else {
        atomic_store(&ev->endpoint, ENDPOINT_UNKNOWN);
        get_spool(ev); /* replays a spool left while events were off */
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
                      !spool_pending(ev) && !(ev->have_cur && !ev->in_flight);
    if (!ev->stop_direct)
        abort_in_flight(ev);
    log_info("event sink stopping", "in_memory=%" PRId64 " mode=%s budget_ms=%d",
             atomic_load(&ev->depth), ev->stop_direct ? "flush" : "spool", budget);
}

/* One step of a stop; true when the worker may finish. */
static bool stop_step(events_t *ev, uint64_t now)
{
    if (ev->hurried || now >= ev->stop_deadline_ms || !ev->stop_direct) {
        abort_in_flight(ev);
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
        start_send(ev);
    return !ev->in_flight;
}

/* The worker's last act: whatever is still in memory goes to disk. */
static void finish(events_t *ev)
{
    abort_in_flight(ev);
    pthread_mutex_lock(&ev->mu);
    ev->closed = true;
    list_splice(&ev->pending, &ev->inbox);
    pthread_mutex_unlock(&ev->mu);
    size_t spooled_before = (size_t)atomic_load(&ev->counts[EVC_SPOOLED]);
    cur_to_spool(ev, true);
    while (ev->pending.count > 0) {
        if (!spill_pending(ev)) {
            size_t n = ev->pending.count;
            log_error("events lost at stop: cannot spool them", "events=%zu dir=\"%s\"", n,
                      ev->spool_path);
            size_t bytes = ev->pending.bytes;
            count(ev, EVC_DROPPED, n);
            list_pop_free(&ev->pending, n);
            set_depth(ev, -(int64_t)n, -(int64_t)bytes);
        }
    }
    replay_reset(ev);
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
    if ((ev->have_cur || spool_pending(ev)) && !ev->in_flight && ev->retry_at_ms > now &&
        ev->retry_at_ms - now < t)
        t = ev->retry_at_ms - now;
    return (int)t;
}

static void *worker_main(void *arg)
{
    events_t *ev = arg;
    for (;;) {
        uint64_t now = now_ms();
        sink_settings_t next;
        pthread_mutex_lock(&ev->mu);
        list_splice(&ev->pending, &ev->inbox);
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

        drive_transfer(ev);
        now = now_ms();
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
        list_splice(&ev->pending, &ev->inbox);
        bool more = ev->pending.count != before || ev->next_pending ||
                    ev->stop_requested != stop || ev->hurry != hurry;
        ev->idle = ev->pending.count == 0;
        size_t bm = (size_t)ev->cfg.batch_max;
        ev->wake_count = ev->pending.count < bm ? bm - ev->pending.count : 1;
        size_t bb = batch_bytes_max(&ev->cfg);
        ev->wake_bytes = ev->pending.bytes < bb ? bb - ev->pending.bytes : 1;
        pthread_mutex_unlock(&ev->mu);
        if (more)
            continue;
        curl_multi_poll(ev->multi, NULL, 0, next_timeout(ev, now_ms()), NULL);
    }
    finish(ev);
    uv_async_send(&ev->finished);
    return NULL;
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
    list_pop_free(&ev->inbox, ev->inbox.count);
    list_pop_free(&ev->pending, ev->pending.count);
    batch_clear(ev);
    replay_reset(ev);
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
        ev->instance = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ now_ms();
    rng_seed(&ev->jitter, ev->instance);
    settings_from_config(&ev->cfg, cfg);
    ev->url_set = cfg->events.url[0] != '\0';
    ev->queue_max = cfg->events.queue_max;
    ev->wake_count = (size_t)cfg->events.batch_max;
    ev->wake_bytes = batch_bytes_max(&ev->cfg);
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
        publish_spool_gauges(ev);
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
    if (pthread_create(&ev->thread, NULL, worker_main, ev) != 0) {
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
    count(ev, EVC_DROPPED, 1);
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
        count(ev, EVC_DISABLED, 1);
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
    n->t_ms = now_ms();
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
    set_depth(ev, 1, bytes);
    count(ev, EVC_QUEUED, 1);
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
