/*
 * metrics_render.c - the Prometheus text exposition of the metrics registry
 * (GET /metrics): every family with its HELP and TYPE, in one fixed order,
 * histograms made cumulative as they are read. Its own file because
 * exposition is a separate job from recording: it holds every metric name
 * and help text and runs on the admin thread (admin.c), while metrics.c is
 * what the hot paths call. It reads the counters with relaxed loads and
 * takes only text_lock, for the channel and arm names.
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

#include "metrics_internal.h"
#include "notifd/ops.h"
#include "notifd/version.h"

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
                      metrics_latency_bounds[i], cumulative);
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
                          names[c], mode_names[mode], metrics_reason_name((metrics_reason_t)r),
                          GET(m->decisions[c][mode][r]));
    family(b, "notifd_priority_decisions_total", "counter",
           "Decisions that considered candidates of a class above normal, by channel, class "
           "and reason.");
    for (int c = 0; c < n; c++)
        for (int p = PRIORITY_HIGH; p < PRIORITY_COUNT; p++)
            for (int r = 0; r < METRICS_REASON_COUNT; r++)
                gb_printf(b,
                          "notifd_priority_decisions_total{channel=\"%s\",priority=\"%s\","
                          "reason=\"%s\"} %" PRIu64 "\n",
                          names[c], message_priority_name((message_priority_t)p),
                          metrics_reason_name((metrics_reason_t)r),
                          GET(m->priority_decisions[c][p][r]));
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
                          layer_names[l], arms[l][a], metrics_reason_name((metrics_reason_t)r),
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
                  metrics_degraded_cause_name(c), GET(m->degraded[c]));
    /* Global rate limits: tag "" is the channel's own limit. A reload
     * that renames limited tags continues a tag's series under its new
     * name, as channels do. */
    char tags[1 + CONFIG_LIMIT_TAGS_MAX][2 * CONFIG_LIMIT_TAG_MAX + 1];
    pthread_mutex_lock(&m->text_lock);
    int n_tags = m->n_limit_tags;
    tags[0][0] = '\0';
    for (int t = 0; t < n_tags; t++)
        metrics_escape_label(m->limit_tags[t], tags[1 + t]);
    pthread_mutex_unlock(&m->text_lock);
    static const char *const shadow_names[2] = {"false", "true"};
    static const char *const action_names[3] = {"open", "closed", "reset"};
    family(b, "notifd_rate_limited_total", "counter",
           "Sends a global rate limit stopped (shadow=\"true\": would have stopped), by "
           "channel and tag (\"\" for the channel's own limit).");
    for (int c = 0; c < n; c++)
        for (int t = 0; t <= n_tags; t++)
            for (int sh = 0; sh < 2; sh++)
                gb_printf(b,
                          "notifd_rate_limited_total{channel=\"%s\",tag=\"%s\",shadow=\"%s\"} "
                          "%" PRIu64 "\n",
                          names[c], tags[t], shadow_names[sh], GET(m->rate_limited[c][t][sh]));
    family(b, "notifd_rate_limit_errors_total", "counter",
           "Global rate limiters Redis could not read or write (action open or closed, per "
           "limits.on_error) or that held no usable value (reset), by channel and tag.");
    for (int c = 0; c < n; c++)
        for (int t = 0; t <= n_tags; t++)
            for (int a = 0; a < 3; a++)
                gb_printf(b,
                          "notifd_rate_limit_errors_total{channel=\"%s\",tag=\"%s\","
                          "action=\"%s\"} %" PRIu64 "\n",
                          names[c], tags[t], action_names[a], GET(m->rate_limit_errors[c][t][a]));
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
    gauge(b, "notifd_redis_tracking",
          "1 while Redis reports changes to what the decide path caches (redis.tracking).",
          GET(m->redis_tracking));
    counter(b, "notifd_redis_invalidations_total",
            "Keys Redis reported changed by another connection (a flush counts one).",
            GET(m->redis_invalidations));
    counter(b, "notifd_member_cache_hits_total",
            "Decides made on the member cache, without a read round trip.",
            GET(m->member_cache[METRICS_MEMBER_CACHE_HIT]));
    counter(b, "notifd_member_cache_misses_total",
            "Decides that could have used the member cache and read instead.",
            GET(m->member_cache[METRICS_MEMBER_CACHE_MISS]));
    counter(b, "notifd_member_cache_conflicts_total",
            "Records the script refused because the view was stale; the decide chose or read again.",
            GET(m->member_cache[METRICS_MEMBER_CACHE_CONFLICT]));
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
