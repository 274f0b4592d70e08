/*
 * decide_answer.c - the decide op's answers: the reply text, the decision event,
 * and the counters every new decision moves; the plans it answers with.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decide_internal.h"
#include "notifd/events/events.h"
#include "notifd/admin/metrics.h"
#include "notifd/ops_policy.h"
#include "notifd/policy.h"

json_t *decide_plan_json(const config_t *cfg, const plan_t *plan)
{
    json_t *per_week = json_object();
    json_t *defaulted = plan->defaulted_mask ? json_array() : NULL;
    for (int c = 0; c < cfg->n_channels; c++) {
        if (plan_has_channel(plan, c))
            json_object_set_new(per_week, cfg->channels[c], json_real(plan->per_week[c]));
        if (defaulted != NULL && (plan->defaulted_mask & (1u << c)))
            json_array_append_new(defaulted, json_string(cfg->channels[c]));
    }
    json_t *greedy = NULL;
    if (plan->explore_neighbours > 0) {
        greedy = json_object();
        for (int c = 0; c < cfg->n_channels; c++)
            if (plan_has_channel(plan, c) && !(plan->defaulted_mask & (1u << c)))
                json_object_set_new(greedy, cfg->channels[c],
                                    json_real(plan_greedy_per_week(plan, c)));
    }
    json_t *pj = json_pack("{s:I,s:s,s:o,s:f,s:o*}", "version", (json_int_t)plan->version,
                           "source", plan->source, "per_week", per_week, "propensity",
                           plan_action_propensity(plan), "defaulted", defaulted);
    if (pj != NULL && greedy != NULL) {
        json_object_set_new(pj, "neighbours", json_integer(plan->explore_neighbours));
        json_object_set_new(pj, "greedy", greedy);
        if (plan->n_gaps > 0) {
            json_t *gaps = json_array();
            for (int j = 0; j < plan->n_gaps; j++)
                json_array_append_new(gaps, json_real(plan->utility_gap[j]));
            json_object_set_new(pj, "gaps", gaps);
        }
    } else {
        json_decref(greedy);
    }
    return pj;
}

char *decide_answer_text(decide_ctx_t *d, const decision_t *dec, decision_reason_t reason,
                       bool send, const plan_t *plan, bool degraded, size_t *len)
{
    bool chosen = send && dec->chosen >= 0;
    decide_body_t b = {
        .cfg = d->req->cfg, .dec = dec, .reason = reason, .send = send,
        .message = chosen ? d->r.candidates[dec->chosen].id : NULL,
        .message_len = chosen ? d->r.candidates[dec->chosen].id_len : 0,
        .plan = plan, .slow_arm = d->slow_arm_name, .fast_arm = d->fast_arm_name,
        .threshold_mode = d->fast->mode == FAST_MODE_THRESHOLD, .degraded = degraded,
    };
    return decide_body_text(&b, len);
}

char *decide_limited_text(decide_ctx_t *d, const decision_t *dec, const plan_t *plan, size_t *len)
{
    decide_body_t b = {
        .cfg = d->req->cfg, .dec = dec, .reason = REASON_RATE_LIMITED, .send = false,
        .plan = plan, .slow_arm = d->slow_arm_name, .fast_arm = d->fast_arm_name,
        .threshold_mode = d->fast->mode == FAST_MODE_THRESHOLD, .retry_at_open = true,
    };
    return decide_body_text(&b, len);
}

/* The decision event: the answer plus what an offline evaluation needs to
 * replay it (every candidate's score, utility and selection probability). */
static void publish_event(decide_ctx_t *d, const char *body, size_t len)
{
    const config_t *cfg = d->req->cfg;
    if (cfg->events.url[0] == '\0')
        return;
    const decide_request_t *r = &d->r;
    json_t *ev = json_pack("{s:s,s:I,s:s%,s:s,s:s%}", "type", "decision", "ts",
                           (json_int_t)r->ts, "member", r->member, r->member_len, "channel",
                           cfg->channels[r->channel], "opportunity", r->opportunity,
                           r->opportunity_len);
    json_t *answer = json_loadb(body, len, 0, NULL);
    if (ev == NULL || answer == NULL) {
        json_decref(ev);
        json_decref(answer);
        return;
    }
    json_object_update(ev, answer);
    json_decref(answer);
    json_t *cands = json_array();
    for (size_t i = 0; i < r->n; i++) {
        json_t *c = json_pack("{s:s%,s:f}", "id", r->candidates[i].id, r->candidates[i].id_len,
                              "score", r->candidates[i].score);
        if (r->candidates[i].priority != PRIORITY_NORMAL)
            json_object_set_new(c, "priority",
                                json_string(message_priority_name(r->candidates[i].priority)));
        json_object_set_new(c, "utility", d->ranked ? json_real(r->utility[i]) : json_null());
        json_object_set_new(c, "select_prob",
                            d->ranked ? json_real(r->select_prob[i]) : json_null());
        json_array_append_new(cands, c);
    }
    json_object_set_new(ev, "candidates", cands);
    /* The three draws behind this outcome, each with its probability: the
     * plan the planner drew, the pacing coin's side, the ranker's pick.
     * Their product over the levels is what an off-policy estimator divides
     * by; `propensity` (above) is the coin's times the ranker's. */
    json_t *plan = json_object_get(ev, "plan");
    json_t *p_send = json_object_get(ev, "p_send");
    const char *reason = json_string_value(json_object_get(ev, "reason"));
    bool sent = json_is_true(json_object_get(ev, "send"));
    double ps = json_is_number(p_send) ? json_number_value(p_send) : 0.0;
    double coin = sent ? ps : (reason != NULL && strcmp(reason, "paced_skip") == 0 ? 1.0 - ps : 1.0);
    json_t *plan_p = json_is_object(plan) ? json_object_get(plan, "propensity") : NULL;
    /* The ranker's pick is the sent message (the answer names it). */
    json_t *ranker = json_null();
    const char *msg = json_string_value(json_object_get(ev, "message"));
    if (sent && msg != NULL && d->ranked) {
        size_t ml = json_string_length(json_object_get(ev, "message"));
        for (size_t i = 0; i < r->n; i++)
            if (r->candidates[i].id_len == ml && memcmp(r->candidates[i].id, msg, ml) == 0) {
                json_decref(ranker);
                ranker = json_real(r->select_prob[i]);
                break;
            }
    }
    json_object_set_new(ev, "propensities",
                        json_pack("{s:o,s:f,s:o}", "plan",
                                  plan_p != NULL ? json_incref(plan_p) : json_null(), "coin", coin,
                                  "ranker", ranker));
    if (d->holdout)
        json_object_set_new(ev, "holdout", json_true());
    events_publish(d->req->app, ev);
}

/* Bookkeeping every new decision shares: its event, arm stats, metrics. */
void decide_account(decide_ctx_t *d, const char *body, size_t len, decision_reason_t reason)
{
    publish_event(d, body, len);
    policy_state_t *ps = policy_state(d->app);
    ps->fast_arm_decisions[d->fast_arm + 1][reason]++;
    ps->slow_arm_decisions[d->slow_arm + 1][reason]++;
    metrics_t *m = d->app->metrics;
    metrics_observe_arm_decision(m, 0, d->fast_arm, (int)reason);
    metrics_observe_arm_decision(m, 1, d->slow_arm, (int)reason);
    metrics_observe_decision(m, d->r.channel, decide_threshold_mode(d) ? 1 : 0, (int)reason,
                             (double)(uv_hrtime() - d->req->start_ns) / 1e9);
    if (d->priority != PRIORITY_NORMAL)
        metrics_observe_priority_decision(m, d->r.channel, (int)d->priority, (int)reason);
}

void decide_default_plan(const config_t *cfg, plan_t *plan)
{
    plan_make_default(plan, cfg->policy.slow.default_mask, cfg->policy.slow.default_per_week);
}

/* No channel goes unpaced by accident: what the plan leaves out is paced
 * by the default plan, or fast.unplanned_per_week (plan_complete). */
void decide_complete_plan(const config_t *cfg, const fast_config_t *fast, plan_t *plan)
{
    plan_complete(plan, (1u << cfg->n_channels) - 1u, cfg->policy.slow.default_mask,
                  cfg->policy.slow.default_per_week, fast->unplanned_per_week,
                  fast->unpaced_mask);
}
