/*
 * events_internal.h - what the parts of the decision-event sink share
 * (src/events/events*.c; the design is at the top of events.c):
 *   events.c           the in-memory queue, the loop-thread API (start,
 *                      publish, reload, stop, stats) and the sink's lifecycle;
 *   events_worker.c    the worker thread: its loop and its decisions (batch,
 *                      spill, send), reloads and the stop;
 *   events_spool.c     the sink's side of the disk spool (spool.c is the file
 *                      format): spilling, replaying, dead letters;
 *   events_delivery.c  HTTP delivery of one batch with libcurl and what its
 *                      outcome means (sent, retried, dead-lettered).
 * The events_t struct says which thread owns which field. Nothing outside
 * the event sink includes this header.
 */
#ifndef NOTIFD_EVENTS_INTERNAL_H
#define NOTIFD_EVENTS_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "notifd/admin/metrics.h"
#include "notifd/events/events.h"
#include "notifd/events/spool.h"
#include "notifd/lib/rng.h"
#include "notifd/log.h"

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

enum { ENDPOINT_UNKNOWN = 0, ENDPOINT_UP, ENDPOINT_DOWN, ENDPOINT_DISABLED };

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

/* events.c */
uint64_t ev_now_ms(void);
/* Adds `n` to a local counter (EVC_*) and, for the first six, the registry. */
void ev_count(events_t *ev, int kind, uint64_t n);
/* Events (and their bytes) entering (+) or leaving (-) memory. */
void ev_set_depth(events_t *ev, int64_t delta, int64_t delta_bytes);
/* The most NDJSON bytes in one batch (an eighth of events.queue_max_bytes). */
size_t ev_batch_bytes_max(const sink_settings_t *s);
/* Moves all of `from` to the end of `to`, in O(1). */
void ev_list_splice(ev_list_t *to, ev_list_t *from);
/* Frees the first `n` events of `l`. */
void ev_list_pop_free(ev_list_t *l, size_t n);
/* NDJSON text of the first events of `l` (left in place): at most `max`
 * of them and `max_bytes` of text, but always the first one. */
char *ev_list_render(const ev_list_t *l, size_t max, size_t max_bytes, size_t *len,
                     size_t *n_out);
/* Forgets the current batch (freeing its text when it owns it). */
void ev_batch_clear(events_t *ev);

/* events_worker.c */
/* The worker thread (pthread_create's start routine; `arg` is the events_t). */
void *ev_worker_main(void *arg);

/* events_spool.c (worker thread, except where events.c calls it before the
 * thread starts or after it ended) */
void ev_publish_spool_gauges(events_t *ev);
/* Drops the segment being replayed from memory (it stays on disk). */
void ev_replay_reset(events_t *ev);
/* The spool, opened on first use; NULL (logged) when it cannot be. */
spool_t *ev_get_spool(events_t *ev);
/* True when events wait on disk (or a segment is being replayed). */
bool ev_spool_pending(const events_t *ev);
/* Moves the oldest pending events to disk in one write; false if it failed. */
bool ev_spill_pending(events_t *ev);
/* The current batch goes back to disk; with `last_chance`, lost (counted)
 * if it cannot. */
void ev_cur_to_spool(events_t *ev, bool last_chance);
/* Appends `n` events (NDJSON) to the dead-letter file, or counts them lost. */
void ev_dead_letter(events_t *ev, const char *data, size_t len, size_t n);
/* Makes the spool's next batch the current one; false when the spool is empty. */
bool ev_next_replay_batch(events_t *ev);

/* events_delivery.c (worker thread) */
/* POSTs the current batch. */
void ev_start_send(events_t *ev);
/* Abandons the request in flight, if any (its batch stays current). */
void ev_abort_in_flight(events_t *ev);
/* Lets curl make progress and acts on a finished request. */
void ev_drive_transfer(events_t *ev);

#endif
