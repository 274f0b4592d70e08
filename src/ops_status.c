/*
 * ops_status.c - the health and stats ops: what an operator or a load
 * balancer asks a running notifd.
 */
#include <stdio.h>
#include <time.h>

#include "notifd/events/events.h"
#include "notifd/fast/feedback_queue.h"
#include "notifd/admin/metrics.h"
#include "notifd/ops.h"
#include "notifd/policy.h"
#include "notifd/version.h"

static json_t *redis_status(const app_t *app)
{
    const store_counters_t *sc = store_counters(app->store);
    store_state_t state = store_state(app->store);
    json_t *o = json_pack("{s:s,s:b}", "state", store_state_name(state), "ready",
                          state == STORE_READY);
    const char *err = store_last_error(app->store);
    if (err[0] != '\0')
        json_object_set_new(o, "last_error", json_string(err));
    json_object_set_new(o, "pending", json_integer(sc->pending));
    return o;
}

void op_health(request_t *req)
{
    app_t *app = req->app;
    bool ready = store_state(app->store) == STORE_READY;
    json_t *body = json_object();
    json_object_set_new(body, "status", json_string(app->stopping ? "stopping"
                                                    : ready       ? "ok"
                                                                  : "degraded"));
    json_object_set_new(body, "version", json_string(NOTIFD_VERSION));
    json_object_set_new(body, "uptime_s",
                        json_integer((json_int_t)((uv_now(app->loop) - app->started_ms) / 1000)));
    json_object_set_new(body, "config_generation", json_integer((json_int_t)req->cfg->generation));
    json_object_set_new(body, "redis", redis_status(app));
    request_reply_ok(req, body);
}

/* Decisions by reason for each arm of one layer, under the arm names of the
 * current config ("control" first). */
static json_t *layer_stats(const experiment_layer_t *layer,
                           const uint64_t (*counts)[REASON_COUNT])
{
    json_t *o = json_object();
    for (int a = -1; a < layer->n_arms; a++) {
        json_t *reasons = json_object();
        uint64_t total = 0;
        for (int r = 0; r < REASON_COUNT; r++) {
            total += counts[a + 1][r];
            if (counts[a + 1][r] > 0)
                json_object_set_new(reasons, decision_reason_name((decision_reason_t)r),
                                    json_integer((json_int_t)counts[a + 1][r]));
        }
        json_object_set_new(o, a < 0 ? "control" : layer->names[a],
                            json_pack("{s:I,s:o}", "decisions", (json_int_t)total, "reasons",
                                      reasons));
    }
    return o;
}

static json_t *experiment_stats(app_t *app, const config_t *cfg)
{
    policy_state_t *ps = policy_state(app);
    return json_pack("{s:o,s:o}", "fast",
                     layer_stats(&cfg->policy.fast_layer,
                                 (const uint64_t(*)[REASON_COUNT])ps->fast_arm_decisions),
                     "slow",
                     layer_stats(&cfg->policy.slow_layer,
                                 (const uint64_t(*)[REASON_COUNT])ps->slow_arm_decisions));
}

void op_stats(request_t *req)
{
    app_t *app = req->app;
    const server_counters_t *sv = server_counters(app->server);
    const store_counters_t *sc = store_counters(app->store);

    json_t *requests = json_object();
    for (int op = 0; op <= OP_COUNT; op++) {
        uint64_t ok = metrics_requests(app->metrics, (op_id_t)op, true);
        uint64_t err = metrics_requests(app->metrics, (op_id_t)op, false);
        if (ok + err == 0)
            continue;
        json_object_set_new(requests, ops_name((op_id_t)op),
                            json_pack("{s:I,s:I}", "ok", (json_int_t)ok, "error", (json_int_t)err));
    }
    json_t *errors = json_object();
    for (int e = 0; e < PROTO_ERROR_COUNT; e++)
        json_object_set_new(errors, proto_error_code((proto_error_t)e),
                            json_integer((json_int_t)metrics_errors(app->metrics, (proto_error_t)e)));

    json_t *conns = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                              "open", (json_int_t)sv->connections,
                              "accepted", (json_int_t)sv->accepted,
                              "rejected", (json_int_t)sv->rejected,
                              "closed_idle", (json_int_t)sv->closed_idle,
                              "read_pauses", (json_int_t)sv->read_pauses,
                              "lines_too_long", (json_int_t)sv->lines_too_long,
                              "bytes_in", (json_int_t)sv->bytes_in,
                              "bytes_out", (json_int_t)sv->bytes_out);
    json_t *redis = redis_status(app);
    json_object_update_new(redis, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                                            "commands", (json_int_t)sc->commands,
                                            "replies", (json_int_t)sc->replies,
                                            "errors", (json_int_t)sc->errors,
                                            "timeouts", (json_int_t)sc->timeouts,
                                            "disconnects", (json_int_t)sc->disconnects,
                                            "reconnects", (json_int_t)sc->reconnects,
                                            "rejected", (json_int_t)sc->rejected));
    if (sc->replies > 0)
        json_object_set_new(redis, "mean_rtt_us",
                            json_real((double)sc->rtt_us_sum / (double)sc->replies));

    json_t *body = json_object();
    json_object_set_new(body, "uptime_s",
                        json_integer((json_int_t)((uv_now(app->loop) - app->started_ms) / 1000)));
    json_object_set_new(body, "config_generation", json_integer((json_int_t)req->cfg->generation));
    json_object_set_new(body, "experiments", experiment_stats(app, req->cfg));
    json_object_set_new(body, "reloads", json_pack("{s:I,s:I}", "ok",
                                                   (json_int_t)app->counters.reloads_ok, "failed",
                                                   (json_int_t)app->counters.reloads_failed));
    json_object_set_new(body, "connections", conns);
    json_object_set_new(body, "requests", requests);
    json_object_set_new(body, "errors", errors);
    json_object_set_new(body, "redis", redis);
    events_stats(app, body);
    feedback_queue_stats(app, body);
    request_reply_ok(req, body);
}
