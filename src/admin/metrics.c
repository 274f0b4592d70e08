/*
 * metrics.c - the metrics registry and its Prometheus text renderer (see
 * metrics.h for the thread rules).
 *
 * The registry is a fixed struct of atomics: every series notifd can emit is
 * known at compile time (ops, error codes, reasons, modes, at most
 * NOTIFD_MAX_CHANNELS channels), so an observation is an array index and an
 * atomic add, with no allocation and no lock. The renderer walks the struct
 * in one fixed order, so two scrapes list the same series in the same order,
 * which keeps diffs of /metrics readable.
 */
#include "notifd/admin/metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifd/ops.h"
#include "notifd/version.h"

#define LATENCY_BUCKETS 15
#define LAST_ERROR_MAX 160

/* Upper bounds in seconds; the last bucket is +Inf. Dense below 1 ms, where
 * the decide latency goal and a local Redis round trip live. */
static const double latency_bounds[LATENCY_BUCKETS - 1] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1.0,
};

/* Bucket counts are per bucket (not cumulative) so an observation touches
 * one cell; the renderer accumulates. There is no separate count cell: the
 * rendered _count is the sum of the buckets read, so +Inf == _count holds in
 * every scrape even while writers run. */
typedef struct histogram {
    _Atomic uint64_t buckets[LATENCY_BUCKETS];
    _Atomic uint64_t sum_ns;
} histogram_t;

static const char *const reason_names[METRICS_REASON_COUNT] = {
#define REASON_NAME(id, name) [METRICS_REASON_##id] = name,
    DECISION_REASONS(REASON_NAME)
#undef REASON_NAME
    [METRICS_REASON_DUPLICATE] = "duplicate",
};

static const char *const mode_names[METRICS_MODE_COUNT] = {"hierarchical", "threshold"};

/* One row per event counter: metric name and HELP text. */
static const struct {
    const char *name;
    const char *help;
} event_families[METRICS_EVENT_COUNT] = {
    [METRICS_EVENT_QUEUED] = {"notifd_events_queued_total",
                              "Decision events accepted into the in-memory queue."},
    [METRICS_EVENT_SENT] = {"notifd_events_sent_total",
                            "Decision events delivered to events.url."},
    [METRICS_EVENT_RETRIED] = {"notifd_events_retried_total",
                               "Event delivery attempts that failed and will be retried."},
    [METRICS_EVENT_SPOOLED] = {"notifd_events_spooled_total",
                               "Decision events written to events.spool_dir."},
    [METRICS_EVENT_DEAD_LETTERED] = {"notifd_events_dead_lettered_total",
                                     "Decision events the endpoint rejected for good."},
    [METRICS_EVENT_DROPPED] = {"notifd_events_dropped_total",
                               "Decision events lost because queue and spool were full."},
};

static const struct {
    const char *name;
    const char *help;
} feedback_families[METRICS_FEEDBACK_COUNT] = {
    [METRICS_FEEDBACK_QUEUED] = {"notifd_feedback_queued_total",
                                 "Feedback events queued because Redis could not take them."},
    [METRICS_FEEDBACK_REPLAYED] = {"notifd_feedback_replayed_total",
                                   "Queued feedback events applied once Redis was back."},
    [METRICS_FEEDBACK_SPOOLED] = {"notifd_feedback_spooled_total",
                                  "Queued feedback events written to feedback.spool_dir."},
    [METRICS_FEEDBACK_DEAD_LETTERED] = {"notifd_feedback_dead_lettered_total",
                                        "Queued feedback events Redis refused for good."},
    [METRICS_FEEDBACK_REFUSED] = {"notifd_feedback_refused_total",
                                  "Feedback answered unavailable: queue and spool full."},
};

struct metrics {
    struct timespec started_mono;
    int64_t started_unix;

    /* requests (ops.c) */
    _Atomic uint64_t requests[OP_COUNT + 1][2];
    _Atomic uint64_t errors[PROTO_ERROR_COUNT];
    histogram_t request_seconds[OP_COUNT + 1];

    /* decisions */
    _Atomic uint64_t decisions[NOTIFD_MAX_CHANNELS][METRICS_MODE_COUNT][METRICS_REASON_COUNT];
    _Atomic uint64_t arm_decisions[2][EXPERIMENT_MAX_ARMS + 1][METRICS_REASON_COUNT];
    char arm_names[2][EXPERIMENT_MAX_ARMS][EXPERIMENT_NAME_MAX]; /* under text_lock */
    int n_arms[2];
    histogram_t decide_seconds[METRICS_MODE_COUNT];
    _Atomic uint64_t stored_answers_corrupt;
    _Atomic uint64_t invalid_observations;
    _Atomic uint64_t degraded[METRICS_DEGRADED_COUNT];

    /* stored values read back out of range (stored_fields.h) */
    _Atomic uint64_t stored_invalid[STORED_FIELD_COUNT];

    /* Redis */
    histogram_t redis_rtt;
    _Atomic int redis_state;
    _Atomic uint64_t redis_commands, redis_replies, redis_errors, redis_timeouts,
        redis_disconnects, redis_reconnects, redis_rejected, redis_queue_full, redis_resent,
        redis_expired, redis_noscript, redis_readonly, redis_probes, redis_congestions;
    _Atomic int64_t redis_pending, redis_in_flight, redis_queued;

    /* server */
    _Atomic int64_t conn_open;
    _Atomic uint64_t conn_accepted, conn_rejected, conn_closed_idle, lines, lines_too_long,
        bytes_in, bytes_out, read_pauses;

    /* config and lifecycle */
    _Atomic uint64_t config_generation, reloads_ok, reloads_failed;
    _Atomic bool stopping;

    /* planner */
    _Atomic uint64_t passes_started, passes_finished, members_planned, members_failed,
        pass_ns_total, last_pass_ns, last_pass_members, last_pass_failed, partitions_failed;
    _Atomic int64_t passes_running, last_pass_end_unix;

    /* events */
    _Atomic uint64_t events[METRICS_EVENT_COUNT];
    _Atomic int64_t events_spool_bytes, events_queue_depth, events_queue_bytes;
    /* feedback queue */
    _Atomic uint64_t feedback[METRICS_FEEDBACK_COUNT];
    _Atomic int64_t feedback_queue_depth, feedback_spool_bytes;

    /* Rarely-changing text, behind a lock the hot path never takes. */
    pthread_mutex_t text_lock;
    int n_channels;
    char channels[NOTIFD_MAX_CHANNELS][NOTIFD_CHANNEL_NAME_MAX];
    char redis_last_error[LAST_ERROR_MAX];
};

#define RELAXED memory_order_relaxed
#define ADD(cell, n) atomic_fetch_add_explicit(&(cell), (n), RELAXED)
#define SET(cell, v) atomic_store_explicit(&(cell), (v), RELAXED)
#define GET(cell) atomic_load_explicit(&(cell), RELAXED)

metrics_t *metrics_create(void)
{
    metrics_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, &m->started_mono);
    m->started_unix = (int64_t)time(NULL);
    pthread_mutex_init(&m->text_lock, NULL);
    return m;
}

void metrics_free(metrics_t *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->text_lock);
    free(m);
}

static uint64_t seconds_to_ns(double seconds)
{
    if (!(seconds > 0.0)) /* also catches NaN */
        return 0;
    if (seconds > 1e9)
        seconds = 1e9;
    return (uint64_t)(seconds * 1e9);
}

static void histogram_observe(histogram_t *h, double seconds)
{
    int b = 0;
    while (b < LATENCY_BUCKETS - 1 && seconds > latency_bounds[b])
        b++;
    ADD(h->buckets[b], 1);
    ADD(h->sum_ns, seconds_to_ns(seconds));
}

/* ---- observations -------------------------------------------------------- */

void metrics_observe_request(metrics_t *m, op_id_t op, bool ok, proto_error_t code, double seconds)
{
    if (m == NULL)
        return;
    if ((int)op < 0 || op > OP_COUNT || (!ok && ((int)code < 0 || code >= PROTO_ERROR_COUNT))) {
        ADD(m->invalid_observations, 1);
        return;
    }
    ADD(m->requests[op][ok ? 0 : 1], 1);
    if (!ok)
        ADD(m->errors[code], 1);
    histogram_observe(&m->request_seconds[op], seconds);
}

uint64_t metrics_requests(const metrics_t *m, op_id_t op, bool ok)
{
    if (m == NULL || (int)op < 0 || op > OP_COUNT)
        return 0;
    return GET(m->requests[op][ok ? 0 : 1]);
}

uint64_t metrics_errors(const metrics_t *m, proto_error_t code)
{
    if (m == NULL || (int)code < 0 || code >= PROTO_ERROR_COUNT)
        return 0;
    return GET(m->errors[code]);
}

const char *metrics_reason_name(metrics_reason_t reason)
{
    return (int)reason >= 0 && reason < METRICS_REASON_COUNT ? reason_names[reason] : "invalid";
}

int metrics_reason_from_name(const char *name)
{
    for (int r = 0; name != NULL && r < METRICS_REASON_COUNT; r++)
        if (strcmp(reason_names[r], name) == 0)
            return r;
    return -1;
}

void metrics_observe_decision(metrics_t *m, int channel, int mode, int reason, double seconds)
{
    if (m == NULL)
        return;
    if (channel < 0 || channel >= NOTIFD_MAX_CHANNELS || mode < 0 || mode >= METRICS_MODE_COUNT ||
        reason < 0 || reason >= METRICS_REASON_COUNT) {
        ADD(m->invalid_observations, 1);
        return;
    }
    ADD(m->decisions[channel][mode][reason], 1);
    histogram_observe(&m->decide_seconds[mode], seconds);
}

static const char *const degraded_cause_names[METRICS_DEGRADED_COUNT] = {
    [METRICS_DEGRADED_NOT_READY] = "not_ready",
    [METRICS_DEGRADED_QUEUE_FULL] = "queue_full",
    [METRICS_DEGRADED_DEADLINE] = "deadline",
    [METRICS_DEGRADED_ERROR_REPLY] = "error_reply",
    [METRICS_DEGRADED_CONNECTION] = "connection",
    [METRICS_DEGRADED_INTERNAL] = "internal",
};

const char *metrics_degraded_cause_name(int cause)
{
    return cause >= 0 && cause < METRICS_DEGRADED_COUNT ? degraded_cause_names[cause] : "?";
}

void metrics_observe_degraded(metrics_t *m, int cause)
{
    if (m == NULL)
        return;
    if (cause < 0 || cause >= METRICS_DEGRADED_COUNT) {
        ADD(m->invalid_observations, 1);
        return;
    }
    ADD(m->degraded[cause], 1);
}

void metrics_stored_answer_corrupt(metrics_t *m)
{
    if (m != NULL)
        ADD(m->stored_answers_corrupt, 1);
}

void metrics_set_channel_names(metrics_t *m, const char names[][NOTIFD_CHANNEL_NAME_MAX], int n)
{
    if (m == NULL)
        return;
    if (n < 0)
        n = 0;
    if (n > NOTIFD_MAX_CHANNELS)
        n = NOTIFD_MAX_CHANNELS;
    pthread_mutex_lock(&m->text_lock);
    for (int c = 0; c < n; c++)
        snprintf(m->channels[c], sizeof m->channels[c], "%s", names[c]);
    m->n_channels = n;
    pthread_mutex_unlock(&m->text_lock);
}

void metrics_observe_arm_decision(metrics_t *m, int layer, int arm, int reason)
{
    if (m == NULL)
        return;
    if (layer < 0 || layer > 1 || arm < -1 || arm >= EXPERIMENT_MAX_ARMS || reason < 0 ||
        reason >= METRICS_REASON_COUNT) {
        ADD(m->invalid_observations, 1);
        return;
    }
    ADD(m->arm_decisions[layer][arm + 1][reason], 1);
}

void metrics_set_arm_names(metrics_t *m, int layer, const char names[][EXPERIMENT_NAME_MAX], int n)
{
    if (m == NULL || layer < 0 || layer > 1)
        return;
    if (n < 0)
        n = 0;
    if (n > EXPERIMENT_MAX_ARMS)
        n = EXPERIMENT_MAX_ARMS;
    pthread_mutex_lock(&m->text_lock);
    for (int a = 0; a < n; a++)
        snprintf(m->arm_names[layer][a], sizeof m->arm_names[layer][a], "%s", names[a]);
    m->n_arms[layer] = n;
    pthread_mutex_unlock(&m->text_lock);
}

void metrics_observe_redis_rtt(metrics_t *m, double seconds)
{
    if (m != NULL)
        histogram_observe(&m->redis_rtt, seconds);
}

void metrics_planner_pass_started(metrics_t *m)
{
    if (m == NULL)
        return;
    ADD(m->passes_started, 1);
    ADD(m->passes_running, 1);
}

void metrics_observe_stored_invalid(metrics_t *m, const stored_invalid_t *invalid)
{
    if (m == NULL || invalid == NULL)
        return;
    for (int f = 0; f < STORED_FIELD_COUNT; f++)
        if (invalid->n[f] > 0)
            ADD(m->stored_invalid[f], invalid->n[f]);
}

void metrics_planner_member_planned(metrics_t *m, uint64_t count)
{
    if (m != NULL)
        ADD(m->members_planned, count);
}

void metrics_planner_pass_finished(metrics_t *m, double seconds, uint64_t planned, uint64_t failed)
{
    if (m == NULL)
        return;
    uint64_t ns = seconds_to_ns(seconds);
    ADD(m->passes_finished, 1);
    /* Never below zero, even if a caller finishes a pass it did not start. */
    int64_t running = GET(m->passes_running);
    while (running > 0 &&
           !atomic_compare_exchange_weak_explicit(&m->passes_running, &running, running - 1,
                                                  RELAXED, RELAXED))
        ;
    ADD(m->members_failed, failed);
    ADD(m->pass_ns_total, ns);
    SET(m->last_pass_ns, ns);
    SET(m->last_pass_members, planned);
    SET(m->last_pass_failed, failed);
    SET(m->last_pass_end_unix, (int64_t)time(NULL));
}

void metrics_planner_partition_failed(metrics_t *m)
{
    if (m != NULL)
        ADD(m->partitions_failed, 1);
}

void metrics_events_add(metrics_t *m, metrics_event_t kind, uint64_t n)
{
    if (m == NULL)
        return;
    if ((int)kind < 0 || kind >= METRICS_EVENT_COUNT) {
        ADD(m->invalid_observations, 1);
        return;
    }
    ADD(m->events[kind], n);
}

void metrics_feedback_add(metrics_t *m, metrics_feedback_t kind, uint64_t n)
{
    if (m == NULL)
        return;
    if ((int)kind < 0 || kind >= METRICS_FEEDBACK_COUNT) {
        ADD(m->invalid_observations, 1);
        return;
    }
    ADD(m->feedback[kind], n);
}

void metrics_feedback_set_queue_depth(metrics_t *m, int64_t depth)
{
    if (m != NULL)
        SET(m->feedback_queue_depth, depth);
}

void metrics_feedback_set_spool_bytes(metrics_t *m, int64_t bytes)
{
    if (m != NULL)
        SET(m->feedback_spool_bytes, bytes);
}

void metrics_events_set_spool_bytes(metrics_t *m, int64_t bytes)
{
    if (m != NULL)
        SET(m->events_spool_bytes, bytes);
}

void metrics_events_set_queue_depth(metrics_t *m, int64_t depth)
{
    if (m != NULL)
        SET(m->events_queue_depth, depth);
}

void metrics_events_set_queue_bytes(metrics_t *m, int64_t bytes)
{
    if (m != NULL)
        SET(m->events_queue_bytes, bytes);
}

/* ---- published loop state ------------------------------------------------ */

void metrics_publish_store(metrics_t *m, store_state_t state, const char *last_error,
                           const store_counters_t *c)
{
    if (m == NULL)
        return;
    SET(m->redis_state, (int)state);
    SET(m->redis_commands, c->commands);
    SET(m->redis_replies, c->replies);
    SET(m->redis_errors, c->errors);
    SET(m->redis_timeouts, c->timeouts);
    SET(m->redis_disconnects, c->disconnects);
    SET(m->redis_reconnects, c->reconnects);
    SET(m->redis_rejected, c->rejected);
    SET(m->redis_pending, c->pending);
    SET(m->redis_in_flight, c->in_flight);
    SET(m->redis_queued, c->queued);
    SET(m->redis_queue_full, c->queue_full);
    SET(m->redis_resent, c->resent);
    SET(m->redis_expired, c->expired);
    SET(m->redis_noscript, c->noscript);
    SET(m->redis_readonly, c->readonly);
    SET(m->redis_probes, c->probes);
    SET(m->redis_congestions, c->congestions);
    pthread_mutex_lock(&m->text_lock);
    snprintf(m->redis_last_error, sizeof m->redis_last_error, "%s",
             last_error != NULL ? last_error : "");
    pthread_mutex_unlock(&m->text_lock);
}

void metrics_publish_server(metrics_t *m, const server_counters_t *c)
{
    if (m == NULL)
        return;
    SET(m->conn_open, c->connections);
    SET(m->conn_accepted, c->accepted);
    SET(m->conn_rejected, c->rejected);
    SET(m->conn_closed_idle, c->closed_idle);
    SET(m->lines, c->lines);
    SET(m->lines_too_long, c->lines_too_long);
    SET(m->bytes_in, c->bytes_in);
    SET(m->bytes_out, c->bytes_out);
    SET(m->read_pauses, c->read_pauses);
}

void metrics_publish_config(metrics_t *m, uint64_t generation, uint64_t reloads_ok,
                            uint64_t reloads_failed)
{
    if (m == NULL)
        return;
    SET(m->config_generation, generation);
    SET(m->reloads_ok, reloads_ok);
    SET(m->reloads_failed, reloads_failed);
}

void metrics_publish_stopping(metrics_t *m, bool stopping)
{
    if (m != NULL)
        SET(m->stopping, stopping);
}

bool metrics_ready(metrics_t *m, char *why, size_t why_size)
{
    if (m == NULL) {
        snprintf(why, why_size, "no metrics registry");
        return false;
    }
    if (GET(m->stopping)) {
        snprintf(why, why_size, "stopping: draining connections before exit");
        return false;
    }
    if (GET(m->config_generation) == 0) {
        snprintf(why, why_size, "no config loaded yet");
        return false;
    }
    store_state_t st = (store_state_t)GET(m->redis_state);
    if (st != STORE_READY) {
        pthread_mutex_lock(&m->text_lock);
        if (m->redis_last_error[0] != '\0')
            snprintf(why, why_size, "redis not ready: state=%s last_error=\"%s\"",
                     store_state_name(st), m->redis_last_error);
        else
            snprintf(why, why_size, "redis not ready: state=%s", store_state_name(st));
        pthread_mutex_unlock(&m->text_lock);
        return false;
    }
    snprintf(why, why_size, "ready");
    return true;
}

/* ---- rendering ----------------------------------------------------------- */

/* An append-only text buffer; after the first allocation failure every
 * append is a no-op and `oom` says the result is unusable. */
typedef struct growbuf {
    char *p;
    size_t len;
    size_t cap;
    bool oom;
} growbuf_t;

static void gb_printf(growbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void gb_printf(growbuf_t *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void metrics_escape_label(const char *value, char *out)
{
    char *o = out;
    for (const char *s = value; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"') {
            *o++ = '\\';
            *o++ = *s;
        } else if (*s == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

static void family(growbuf_t *b, const char *name, const char *type, const char *help)
{
    gb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_u64(growbuf_t *b, const char *name, uint64_t v)
{
    gb_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void sample_i64(growbuf_t *b, const char *name, int64_t v)
{
    gb_printf(b, "%s %" PRId64 "\n", name, v);
}

static void counter(growbuf_t *b, const char *name, const char *help, uint64_t v)
{
    family(b, name, "counter", help);
    sample_u64(b, name, v);
}

static void gauge(growbuf_t *b, const char *name, const char *help, int64_t v)
{
    family(b, name, "gauge", help);
    sample_i64(b, name, v);
}

/* One histogram series; `labels` is "" or `k="v"` pairs without braces. */
static void histogram_render(growbuf_t *b, const char *name, const char *labels,
                             histogram_t *h)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    uint64_t cumulative = 0;
    for (int i = 0; i < LATENCY_BUCKETS; i++) {
        cumulative += GET(h->buckets[i]);
        if (i < LATENCY_BUCKETS - 1)
            gb_printf(b, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
                      latency_bounds[i], cumulative);
        else
            gb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep,
                      cumulative);
    }
    uint64_t sum_ns = GET(h->sum_ns);
    const char *lb = labels[0] != '\0' ? "{" : "";
    const char *rb = labels[0] != '\0' ? "}" : "";
    gb_printf(b, "%s_sum%s%s%s %" PRIu64 ".%09" PRIu64 "\n", name, lb, labels, rb,
              sum_ns / 1000000000u, sum_ns % 1000000000u);
    gb_printf(b, "%s_count%s%s%s %" PRIu64 "\n", name, lb, labels, rb, cumulative);
}

static void render_process(metrics_t *m, growbuf_t *b)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double up = (double)(now.tv_sec - m->started_mono.tv_sec) +
                (double)(now.tv_nsec - m->started_mono.tv_nsec) / 1e9;
    char version[2 * sizeof NOTIFD_VERSION + 1];
    metrics_escape_label(NOTIFD_VERSION, version);

    family(b, "notifd_build_info", "gauge", "Always 1; the version label says which notifd runs.");
    gb_printf(b, "notifd_build_info{version=\"%s\"} 1\n", version);
    family(b, "notifd_start_time_seconds", "gauge", "Unix time the process started.");
    sample_i64(b, "notifd_start_time_seconds", m->started_unix);
    family(b, "notifd_uptime_seconds", "gauge", "Seconds since the process started.");
    gb_printf(b, "notifd_uptime_seconds %.3f\n", up);

    char why[256];
    gauge(b, "notifd_ready", "1 when /readyz answers 200 (Redis ready, config loaded, not stopping).",
          metrics_ready(m, why, sizeof why) ? 1 : 0);
    gauge(b, "notifd_stopping", "1 while the daemon drains connections before exiting.",
          GET(m->stopping) ? 1 : 0);
    gauge(b, "notifd_config_generation",
          "Generation of the config in force: 1 at start, +1 per successful reload.",
          (int64_t)GET(m->config_generation));
    gauge(b, "notifd_config_loaded", "1 when a valid config is in force.",
          GET(m->config_generation) > 0 ? 1 : 0);
    family(b, "notifd_config_reloads_total", "counter", "SIGHUP reloads by result.");
    gb_printf(b, "notifd_config_reloads_total{result=\"ok\"} %" PRIu64 "\n", GET(m->reloads_ok));
    gb_printf(b, "notifd_config_reloads_total{result=\"failed\"} %" PRIu64 "\n",
              GET(m->reloads_failed));
    counter(b, "notifd_metrics_invalid_observations_total",
            "Observations dropped because a caller passed an out-of-range label index.",
            GET(m->invalid_observations));
}

static void render_server(metrics_t *m, growbuf_t *b)
{
    gauge(b, "notifd_connections", "Producer connections open now.", GET(m->conn_open));
    counter(b, "notifd_connections_accepted_total", "Producer connections accepted.",
            GET(m->conn_accepted));
    counter(b, "notifd_connections_rejected_total",
            "Producer connections refused (limits.max_connections or draining).",
            GET(m->conn_rejected));
    counter(b, "notifd_connections_closed_idle_total",
            "Producer connections closed after limits.idle_timeout_s without traffic.",
            GET(m->conn_closed_idle));
    counter(b, "notifd_request_lines_total", "Request lines received.", GET(m->lines));
    counter(b, "notifd_request_lines_too_long_total",
            "Request lines longer than limits.max_line_bytes (answered line_too_long).",
            GET(m->lines_too_long));
    counter(b, "notifd_received_bytes_total", "Bytes read from producer connections.",
            GET(m->bytes_in));
    counter(b, "notifd_sent_bytes_total", "Bytes written to producer connections.",
            GET(m->bytes_out));
    counter(b, "notifd_read_pauses_total",
            "Times a connection stopped being read because its client lagged (back-pressure).",
            GET(m->read_pauses));
}

static void render_requests(metrics_t *m, growbuf_t *b)
{
    family(b, "notifd_requests_total", "counter", "Protocol requests answered, by op and outcome.");
    for (int op = 0; op <= OP_COUNT; op++) {
        gb_printf(b, "notifd_requests_total{op=\"%s\",outcome=\"ok\"} %" PRIu64 "\n",
                  ops_name((op_id_t)op), GET(m->requests[op][0]));
        gb_printf(b, "notifd_requests_total{op=\"%s\",outcome=\"error\"} %" PRIu64 "\n",
                  ops_name((op_id_t)op), GET(m->requests[op][1]));
    }
    family(b, "notifd_errors_total", "counter", "Error replies by protocol error code.");
    for (int e = 0; e < PROTO_ERROR_COUNT; e++)
        gb_printf(b, "notifd_errors_total{code=\"%s\"} %" PRIu64 "\n",
                  proto_error_code((proto_error_t)e), GET(m->errors[e]));
    family(b, "notifd_request_duration_seconds", "histogram",
           "Time from a request line's arrival to its reply, by op.");
    for (int op = 0; op <= OP_COUNT; op++) {
        char labels[64];
        snprintf(labels, sizeof labels, "op=\"%s\"", ops_name((op_id_t)op));
        histogram_render(b, "notifd_request_duration_seconds", labels, &m->request_seconds[op]);
    }
}

static void render_decisions(metrics_t *m, growbuf_t *b)
{
    char names[NOTIFD_MAX_CHANNELS][2 * NOTIFD_CHANNEL_NAME_MAX + 1];
    pthread_mutex_lock(&m->text_lock);
    int n = m->n_channels;
    for (int c = 0; c < n; c++)
        metrics_escape_label(m->channels[c], names[c]);
    pthread_mutex_unlock(&m->text_lock);

    family(b, "notifd_decisions_total", "counter",
           "Decisions by channel, mode (hierarchical or threshold) and reason.");
    for (int c = 0; c < n; c++)
        for (int mode = 0; mode < METRICS_MODE_COUNT; mode++)
            for (int r = 0; r < METRICS_REASON_COUNT; r++)
                gb_printf(b,
                          "notifd_decisions_total{channel=\"%s\",mode=\"%s\",reason=\"%s\"} "
                          "%" PRIu64 "\n",
                          names[c], mode_names[mode], reason_names[r],
                          GET(m->decisions[c][mode][r]));
    static const char *const layer_names[2] = {"fast", "slow"};
    char arms[2][EXPERIMENT_MAX_ARMS + 1][2 * EXPERIMENT_NAME_MAX + 1];
    int n_arms[2];
    pthread_mutex_lock(&m->text_lock);
    for (int l = 0; l < 2; l++) {
        n_arms[l] = m->n_arms[l];
        snprintf(arms[l][0], sizeof arms[l][0], "control");
        for (int a = 0; a < n_arms[l]; a++)
            metrics_escape_label(m->arm_names[l][a], arms[l][a + 1]);
    }
    pthread_mutex_unlock(&m->text_lock);
    family(b, "notifd_experiment_decisions_total", "counter",
           "Decisions by experiment layer (fast or slow), arm and reason.");
    for (int l = 0; l < 2; l++)
        for (int a = 0; a <= n_arms[l]; a++)
            for (int r = 0; r < METRICS_REASON_COUNT; r++)
                gb_printf(b,
                          "notifd_experiment_decisions_total{layer=\"%s\",arm=\"%s\",reason=\"%s\"} "
                          "%" PRIu64 "\n",
                          layer_names[l], arms[l][a], reason_names[r],
                          GET(m->arm_decisions[l][a][r]));
    family(b, "notifd_decide_duration_seconds", "histogram",
           "Decide latency from request arrival to answer, by mode.");
    for (int mode = 0; mode < METRICS_MODE_COUNT; mode++) {
        char labels[48];
        snprintf(labels, sizeof labels, "mode=\"%s\"", mode_names[mode]);
        histogram_render(b, "notifd_decide_duration_seconds", labels, &m->decide_seconds[mode]);
    }
    counter(b, "notifd_stored_answers_corrupt_total",
            "Retried opportunities whose stored answer in Redis was not one JSON object on one "
            "line; answered internal instead of replaying it.",
            GET(m->stored_answers_corrupt));
    family(b, "notifd_decide_degraded_total", "counter",
           "Decisions answered degraded (fast.on_store_error), by cause.");
    for (int c = 0; c < METRICS_DEGRADED_COUNT; c++)
        gb_printf(b, "notifd_decide_degraded_total{cause=\"%s\"} %" PRIu64 "\n",
                  degraded_cause_names[c], GET(m->degraded[c]));
    family(b, "notifd_stored_invalid_total", "counter",
           "Values read from Redis out of their field's range, treated as missing, by field.");
    for (int f = 0; f < STORED_FIELD_COUNT; f++)
        gb_printf(b, "notifd_stored_invalid_total{field=\"%s\"} %" PRIu64 "\n",
                  stored_field_name((stored_field_t)f), GET(m->stored_invalid[f]));
}

static void render_redis(metrics_t *m, growbuf_t *b)
{
    int state = GET(m->redis_state);
    gauge(b, "notifd_redis_ready", "1 when the fast-path Redis connection is ready.",
          state == STORE_READY ? 1 : 0);
    family(b, "notifd_redis_state", "gauge",
           "1 for the current state of the fast-path Redis connection, 0 for the others.");
    for (int s = STORE_DISCONNECTED; s <= STORE_READY; s++)
        gb_printf(b, "notifd_redis_state{state=\"%s\"} %d\n", store_state_name((store_state_t)s),
                  s == state ? 1 : 0);
    counter(b, "notifd_redis_commands_total", "Commands sent to Redis.", GET(m->redis_commands));
    counter(b, "notifd_redis_replies_total", "Replies received from Redis.",
            GET(m->redis_replies));
    counter(b, "notifd_redis_errors_total", "Redis error replies and failed commands.",
            GET(m->redis_errors));
    counter(b, "notifd_redis_timeouts_total",
            "Connections dropped because Redis answered nothing for redis.timeout_ms while "
            "commands were outstanding.",
            GET(m->redis_timeouts));
    counter(b, "notifd_redis_disconnects_total", "Redis connections lost.",
            GET(m->redis_disconnects));
    counter(b, "notifd_redis_reconnects_total", "Successful Redis reconnects after the first.",
            GET(m->redis_reconnects));
    counter(b, "notifd_redis_rejected_total",
            "Commands refused at once because Redis was not ready or the queue was full "
            "(decisions degrade).",
            GET(m->redis_rejected));
    counter(b, "notifd_redis_queue_full_total",
            "Commands refused because redis.max_queued commands already waited.",
            GET(m->redis_queue_full));
    counter(b, "notifd_redis_resent_total",
            "Commands left unanswered by a lost connection and sent again on the next one.",
            GET(m->redis_resent));
    counter(b, "notifd_redis_expired_total",
            "Commands failed unsent because their deadline passed while they waited.",
            GET(m->redis_expired));
    counter(b, "notifd_redis_noscript_total",
            "EVALSHA answered NOSCRIPT (script cache flushed) and resent as EVAL.",
            GET(m->redis_noscript));
    counter(b, "notifd_redis_readonly_total",
            "READONLY replies: a replica answered writes; the connection was rebuilt.",
            GET(m->redis_readonly));
    counter(b, "notifd_redis_probes_total", "PINGs sent on an idle Redis connection.",
            GET(m->redis_probes));
    counter(b, "notifd_redis_congestions_total",
            "Times the command queue passed half of redis.max_queued (producers not read).",
            GET(m->redis_congestions));
    gauge(b, "notifd_redis_pending", "Redis commands accepted and not yet answered.",
          GET(m->redis_pending));
    gauge(b, "notifd_redis_in_flight", "Redis commands written and not yet answered.",
          GET(m->redis_in_flight));
    gauge(b, "notifd_redis_queued", "Redis commands waiting in notifd for the in-flight window.",
          GET(m->redis_queued));
    family(b, "notifd_redis_rtt_seconds", "histogram", "Round-trip time of answered Redis commands.");
    histogram_render(b, "notifd_redis_rtt_seconds", "", &m->redis_rtt);
}

static void render_planner(metrics_t *m, growbuf_t *b)
{
    counter(b, "notifd_planner_passes_started_total", "Planner passes started.",
            GET(m->passes_started));
    counter(b, "notifd_planner_passes_finished_total", "Planner passes finished.",
            GET(m->passes_finished));
    gauge(b, "notifd_planner_passes_running", "Planner passes under way now.",
          GET(m->passes_running));
    counter(b, "notifd_planner_members_planned_total", "Member plans computed and stored.",
            GET(m->members_planned));
    counter(b, "notifd_planner_members_failed_total", "Members the planner could not plan.",
            GET(m->members_failed));
    counter(b, "notifd_planner_partitions_failed_total",
            "Partitions a pass could not walk (in whole or part): a key of theirs is broken.",
            GET(m->partitions_failed));
    uint64_t total_ns = GET(m->pass_ns_total), last_ns = GET(m->last_pass_ns);
    family(b, "notifd_planner_pass_seconds_total", "counter", "Time spent in planner passes.");
    gb_printf(b, "notifd_planner_pass_seconds_total %" PRIu64 ".%09" PRIu64 "\n",
              total_ns / 1000000000u, total_ns % 1000000000u);
    family(b, "notifd_planner_last_pass_seconds", "gauge", "Duration of the last finished pass.");
    gb_printf(b, "notifd_planner_last_pass_seconds %" PRIu64 ".%09" PRIu64 "\n",
              last_ns / 1000000000u, last_ns % 1000000000u);
    gauge(b, "notifd_planner_last_pass_members", "Members planned by the last finished pass.",
          (int64_t)GET(m->last_pass_members));
    gauge(b, "notifd_planner_last_pass_failed", "Members that failed in the last finished pass.",
          (int64_t)GET(m->last_pass_failed));
    gauge(b, "notifd_planner_last_pass_end_timestamp_seconds",
          "Unix time the last pass finished (0: none yet).", GET(m->last_pass_end_unix));
}

static void render_events(metrics_t *m, growbuf_t *b)
{
    for (int k = 0; k < METRICS_EVENT_COUNT; k++)
        counter(b, event_families[k].name, event_families[k].help, GET(m->events[k]));
    gauge(b, "notifd_events_queue_depth", "Decision events waiting in memory.",
          GET(m->events_queue_depth));
    gauge(b, "notifd_events_queue_bytes",
          "Bytes of decision events waiting in memory (bounded by events.queue_max_bytes).",
          GET(m->events_queue_bytes));
    gauge(b, "notifd_events_spool_bytes", "Bytes of decision events in events.spool_dir.",
          GET(m->events_spool_bytes));
}

static void render_feedback(metrics_t *m, growbuf_t *b)
{
    for (int k = 0; k < METRICS_FEEDBACK_COUNT; k++)
        counter(b, feedback_families[k].name, feedback_families[k].help, GET(m->feedback[k]));
    gauge(b, "notifd_feedback_queue_depth", "Queued feedback events waiting in memory.",
          GET(m->feedback_queue_depth));
    gauge(b, "notifd_feedback_spool_bytes", "Bytes of queued feedback in feedback.spool_dir.",
          GET(m->feedback_spool_bytes));
}

size_t metrics_render(metrics_t *m, char **out)
{
    *out = NULL;
    if (m == NULL)
        return 0;
    growbuf_t b = {.p = malloc(16384), .cap = 16384};
    if (b.p == NULL)
        return 0;
    b.p[0] = '\0';
    render_process(m, &b);
    render_server(m, &b);
    render_requests(m, &b);
    render_decisions(m, &b);
    render_redis(m, &b);
    render_planner(m, &b);
    render_events(m, &b);
    render_feedback(m, &b);
    if (b.oom) {
        free(b.p);
        return 0;
    }
    *out = b.p;
    return b.len;
}
