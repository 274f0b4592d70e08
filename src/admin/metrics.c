/*
 * metrics.c - the metrics registry: creating it, the observations any
 * thread makes, the state the loop publishes, and readiness (see metrics.h
 * for the thread rules). The Prometheus text is rendered by
 * metrics_render.c; the struct both share is in metrics_internal.h.
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

#include "metrics_internal.h"

/* Upper bounds in seconds; the last bucket is +Inf. Dense below 1 ms, where
 * the decide latency goal and a local Redis round trip live. */
const double metrics_latency_bounds[LATENCY_BUCKETS - 1] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1.0,
};

static const char *const reason_names[METRICS_REASON_COUNT] = {
#define REASON_NAME(id, name) [METRICS_REASON_##id] = name,
    DECISION_REASONS(REASON_NAME)
#undef REASON_NAME
    [METRICS_REASON_DUPLICATE] = "duplicate",
};

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
    while (b < LATENCY_BUCKETS - 1 && seconds > metrics_latency_bounds[b])
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

void metrics_observe_priority_decision(metrics_t *m, int channel, int priority, int reason)
{
    if (m == NULL)
        return;
    if (channel < 0 || channel >= NOTIFD_MAX_CHANNELS || priority <= PRIORITY_NORMAL ||
        priority >= PRIORITY_COUNT || reason < 0 || reason >= METRICS_REASON_COUNT) {
        ADD(m->invalid_observations, 1);
        return;
    }
    ADD(m->priority_decisions[channel][priority][reason], 1);
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

void metrics_observe_member_cache(metrics_t *m, metrics_member_cache_t what)
{
    if (m != NULL && what >= 0 && what < METRICS_MEMBER_CACHE_COUNT)
        ADD(m->member_cache[what], 1);
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

void metrics_observe_rate_limit(metrics_t *m, int channel, int which, char code)
{
    if (m == NULL || code == 'a')
        return;
    if (channel < 0 || channel >= NOTIFD_MAX_CHANNELS || which < 0 ||
        which > CONFIG_LIMIT_TAGS_MAX) {
        ADD(m->invalid_observations, 1);
        return;
    }
    switch (code) {
    case 'l':
        ADD(m->rate_limited[channel][which][0], 1);
        break;
    case 's':
        ADD(m->rate_limited[channel][which][1], 1);
        break;
    case 'o':
        ADD(m->rate_limit_errors[channel][which][0], 1);
        break;
    case 'c':
        ADD(m->rate_limit_errors[channel][which][1], 1);
        break;
    case 'r':
        ADD(m->rate_limit_errors[channel][which][2], 1);
        break;
    default:
        ADD(m->invalid_observations, 1);
        break;
    }
}

void metrics_set_limit_tag_names(metrics_t *m, const char names[][CONFIG_LIMIT_TAG_MAX], int n)
{
    if (m == NULL)
        return;
    if (n < 0)
        n = 0;
    if (n > CONFIG_LIMIT_TAGS_MAX)
        n = CONFIG_LIMIT_TAGS_MAX;
    pthread_mutex_lock(&m->text_lock);
    for (int t = 0; t < n; t++)
        snprintf(m->limit_tags[t], sizeof m->limit_tags[t], "%s", names[t]);
    m->n_limit_tags = n;
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
    SET(m->redis_invalidations, c->invalidations);
    SET(m->redis_tracking, c->tracking ? 1 : 0);
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
