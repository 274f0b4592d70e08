/*
 * explain_answer.c - the explain op's answer, built from the view a decide
 * would decide from (explain.c read it; decide_prepare made the input).
 *
 * Each part is computed by the code the decide or the planner runs, never
 * a copy of it: the plan in force and its completion (decide_prepare), the
 * slow policy's utilities (slow_member_utilities, utility_parts), the caps
 * (pacing_weekly_cap, decision_rolling_cap, decision_sends_in_window), quiet
 * hours (calendar_in_quiet_hours) and the decision itself
 * (decision_evaluate, pure, on the same input). README.md, "explain", lists
 * the fields.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explain_internal.h"
#include "notifd/core/calendar.h"
#include "notifd/core/pacing.h"
#include "notifd/core/slow_policy.h"
#include "notifd/ops_policy.h"
#include "notifd/policy.h"

/* Actions of the slow policy's view, best first. */
#define EXPLAIN_TOP_ACTIONS 5

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *clock_of(int minutes)
{
    char buf[8];
    snprintf(buf, sizeof buf, "%02d:%02d", (minutes / 60) % 24, minutes % 60);
    return json_string(buf);
}

/* The plan in force and where it came from; the stored plan, if any. */
static json_t *plan_part(const explain_ctx_t *x, const decide_prep_t *p)
{
    const decide_ctx_t *d = &x->d;
    const config_t *cfg = d->req->cfg;
    json_t *pj = decide_plan_json(cfg, &p->plan);
    if (pj == NULL)
        return NULL;
    json_object_set_new(pj, "in_force", json_string(p->plan_defaulted ? "default" : "stored"));
    json_object_set_new(pj, "action", json_integer(p->plan.action));
    json_object_set_new(pj, "computed_at", json_integer((json_int_t)p->plan.computed_at));
    json_object_set_new(pj, "valid_until", json_integer((json_int_t)p->plan.valid_until));
    json_object_set_new(pj, "arm", json_string(p->plan.arm));
    json_t *stored = json_null();
    if (d->have_plan) {
        json_decref(stored);
        stored = json_pack("{s:I,s:s,s:I,s:I,s:b}", "version", (json_int_t)d->plan.version,
                           "source", d->plan.source, "computed_at",
                           (json_int_t)d->plan.computed_at, "valid_until",
                           (json_int_t)d->plan.valid_until, "in_force",
                           plan_in_force(&d->plan, d->r.ts));
    }
    json_object_set_new(pj, "stored", stored);
    return pj;
}

/* Whether action a ranks before b: greater utility, then (as utility_argmax
 * breaks ties) fewer messages, then the lower index. */
static bool ranks_before(const action_grid_t *g, const double *u, int a, int b)
{
    if (u[a] != u[b])
        return u[a] > u[b];
    if (g->total[a] != g->total[b])
        return g->total[a] < g->total[b];
    return a < b;
}

static json_t *action_json(const config_t *cfg, const slow_config_t *slow,
                           const member_estimate_t *e, int a, double u, int greedy)
{
    const action_grid_t *g = &slow->grid;
    json_t *per_week = json_object();
    for (int k = 0; k < g->n_channels; k++)
        json_object_set_new(per_week, cfg->channels[g->channel[k]],
                            json_real(action_grid_value(g, a, k)));
    utility_parts_t parts;
    utility_parts(&slow->weights, e, g, a, &parts);
    json_t *pj = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "visits", num(parts.visits), "opens",
                           num(parts.opens), "fatigue", num(parts.fatigue), "cross_fatigue",
                           num(parts.cross_fatigue), "optout_risk", num(parts.optout),
                           "message_cost", num(parts.cost));
    return json_pack("{s:i,s:o,s:o,s:o,s:b}", "action", a, "per_week", per_week, "utility",
                     num(u), "parts", pj, "greedy", a == greedy);
}

/* The slow policy's view of the member now: what the planner would plan
 * from the stored features at ts, with the member's slow arm. */
static json_t *slow_part(const explain_ctx_t *x)
{
    const decide_ctx_t *d = &x->d;
    const config_t *cfg = d->req->cfg;
    const char *arm = "control";
    const slow_config_t *slow = policy_slow_for(&cfg->policy, d->r.member, d->r.member_len,
                                                NULL, &arm);
    const action_grid_t *g = &slow->grid;
    double *u = malloc(ACTION_GRID_MAX_ACTIONS * sizeof *u);
    member_estimate_t e;
    int greedy = u == NULL ? -1
                           : slow_member_utilities(&slow->weights, &slow->priors, g,
                                                   &x->features, d->r.ts,
                                                   cfg->policy.half_life_s, &e, u);
    json_t *out = json_pack("{s:s,s:b}", "arm", arm, "features", x->have_features);
    if (greedy < 0) {
        free(u);
        json_object_set_new(out, "top", json_array());
        return out;
    }
    json_t *chans = json_object();
    for (int k = 0; k < g->n_channels; k++) {
        const channel_estimate_t *ce = &e.ch[g->channel[k]];
        json_object_set_new(chans, cfg->channels[g->channel[k]],
                            json_pack("{s:b,s:o,s:o,s:o,s:o}", "available", ce->available,
                                      "p_open", num(ce->p_open), "fatigue", num(ce->fatigue),
                                      "unsub_hazard", num(ce->unsub_hazard), "data_weight",
                                      num(ce->data_weight)));
    }
    json_object_set_new(out, "estimate",
                        json_pack("{s:o,s:o,s:o}", "lift", num(e.lift), "visit_rate",
                                  num(e.visit_rate), "channels", chans));
    json_object_set_new(out, "greedy_action", json_integer(greedy));
    /* A member without history is planned the default plan, not the best
     * utility (actions.h, new_member_action): say so, or the greedy action
     * would look like a mistake. */
    json_object_set_new(out, "new_member",
                        json_boolean(g->new_member_action >= 0 && greedy == g->new_member_action &&
                                     !features_have_history(&x->features)));
    /* The greedy action first, then the best of the rest; actions on an
     * opted-out channel (utility -infinity) are never shown. */
    json_t *top = json_array();
    bool shown[ACTION_GRID_MAX_ACTIONS] = {false};
    json_array_append_new(top, action_json(cfg, slow, &e, greedy, u[greedy], greedy));
    shown[greedy] = true;
    while (json_array_size(top) < EXPLAIN_TOP_ACTIONS) {
        int best = -1;
        for (int a = 0; a < g->n_actions; a++)
            if (!shown[a] && isfinite(u[a]) && (best < 0 || ranks_before(g, u, a, best)))
                best = a;
        if (best < 0)
            break;
        shown[best] = true;
        json_array_append_new(top, action_json(cfg, slow, &e, best, u[best], greedy));
    }
    json_object_set_new(out, "top", top);
    free(u);
    return out;
}

/* The weekly and rolling caps of the channel, with what remains; null
 * when the channel is not paced (no cap applies). */
static json_t *caps_part(const decide_ctx_t *d, const decide_prep_t *p)
{
    const fast_config_t *fast = d->fast;
    if (p->in.plan == NULL || !plan_has_channel(p->in.plan, d->r.channel))
        return json_null();
    double per_week = p->in.plan->per_week[d->r.channel];
    int64_t cap = (int64_t)pacing_weekly_cap(per_week, fast->cap_factor);
    int64_t sent = (int64_t)d->view.sent_this_week;
    json_t *weekly = json_pack("{s:I,s:I,s:I}", "cap", (json_int_t)cap, "sent", (json_int_t)sent,
                               "remaining", (json_int_t)(cap > sent ? cap - sent : 0));
    json_t *rolling = json_null();
    if (fast->rolling_cap) {
        int64_t rc = decision_rolling_cap(cap, per_week, fast->rolling_cap_factor,
                                          fast->rolling_cap_min_slack);
        int64_t in_window = (int64_t)decision_sends_in_window(d->view.sends, d->view.n_sends,
                                                              d->r.ts);
        json_decref(rolling);
        rolling = json_pack("{s:I,s:I,s:I,s:b,s:i}", "cap", (json_int_t)rc, "sent",
                            (json_int_t)in_window, "remaining",
                            (json_int_t)(rc > in_window ? rc - in_window : 0), "enforced",
                            rc <= DECISION_MAX_RECENT_SENDS, "window_s",
                            DECISION_ROLLING_WINDOW_S);
    }
    return json_pack("{s:o,s:o}", "weekly", weekly, "rolling", rolling);
}

/* The pacing coin's probability now, past the guardrails that do not
 * depend on the budget (opt-out, quiet hours, holdout): for the best of the
 * given candidates, else for a message without a score (the quality bar
 * left out, as with too little score history: the budget's own chance).
 * The caps still apply: a capped week's coin is 0. Candidates' utilities
 * and selection probabilities come from the same ranking. */
static json_t *budget_part(decide_ctx_t *d, const decide_prep_t *p, json_t *cands)
{
    const decide_request_t *r = &d->r;
    const fast_config_t *fast = d->fast;
    fast_config_t *open = malloc(sizeof *open);
    if (open == NULL)
        return NULL;
    *open = *fast;
    open->quiet_hours.enabled = false;
    decision_input_t in = p->in;
    in.fast = open;
    in.unsubscribed = false;
    in.holdout = false;
    decision_t coin;
    decision_evaluate(&in, &coin);
    const char *basis = "best_candidate";
    json_t *best = json_null();
    for (size_t i = 0; i < r->n; i++) {
        json_t *c = json_array_get(cands, i);
        bool ranked = coin.have_best && r->candidates[i].eligible;
        json_object_set_new(c, "utility", ranked ? num(r->utility[i]) : json_null());
        json_object_set_new(c, "select_prob", ranked ? num(r->select_prob[i]) : json_null());
    }
    if (r->n == 0 || coin.reason == REASON_ALL_FILTERED) {
        ranker_candidate_t one = {.id = "", .id_len = 0, .score = 0.0, .eligible = true};
        double u1, s1;
        in.candidates = &one;
        in.n_candidates = 1;
        in.last_sent_ts = NULL;
        in.utility = &u1;
        in.select_prob = &s1;
        in.recent_best = NULL;
        in.n_recent = 0;
        decision_evaluate(&in, &coin);
        basis = "no_score";
    } else if (coin.have_best) {
        /* The candidate whose utility the coin weighed (the best eligible
         * one), whether or not the coin then said send. */
        int at = -1;
        for (size_t i = 0; i < r->n; i++)
            if (r->candidates[i].eligible && (at < 0 || r->utility[i] > r->utility[at]))
                at = (int)i;
        if (at >= 0) {
            json_decref(best);
            best = json_stringn(r->candidates[at].id, r->candidates[at].id_len);
        }
    }
    free(open);
    /* The coin was flipped (reached_coin is set before the caps are). */
    bool flipped = coin.reason == REASON_SEND || coin.reason == REASON_PACED_SKIP;
    bool paced = p->in.plan != NULL && plan_has_channel(p->in.plan, r->channel);
    double expected = p->fold.expected > 0 ? p->fold.expected
                                           : fast->pacing.prior_opportunities_per_week;
    json_t *b = json_pack(
        "{s:b,s:o,s:I,s:o,s:o,s:s,s:s,s:o,s:s,s:o,s:b}", "paced", paced, "per_week",
        paced ? num(p->in.plan->per_week[r->channel]) : json_null(), "sent_this_week",
        (json_int_t)d->view.sent_this_week, "opportunities_this_week",
        num(d->view.history.counts[2]), "expected_opportunities", num(expected),
        "expected_from", p->fold.expected > 0 ? "history" : "prior", "strategy",
        pacing_strategy_name(fast->pacing.strategy), "p_send", num(coin.p_send), "p_send_for",
        basis, "best_candidate", best, "coin_reached", flipped);
    if (b != NULL && !flipped)
        json_object_set_new(b, "stopped_by", json_string(decision_reason_name(coin.reason)));
    return b;
}

/* Each candidate's dedup state: when it was last sent to the member (any
 * channel) and whether the dedup window lets it go now. */
static json_t *candidates_part(const decide_ctx_t *d)
{
    const decide_request_t *r = &d->r;
    int days = d->fast->dedup_days;
    double after = (double)r->ts - (double)days * 86400.0;
    json_t *arr = json_array();
    for (size_t i = 0; i < r->n; i++) {
        double last = r->last_sent[i];
        bool recent = days > 0 && last >= 0 && last > after;
        json_t *c = json_pack("{s:s%,s:o,s:b,s:o}", "id", r->candidates[i].id,
                              r->candidates[i].id_len, "last_sent",
                              last >= 0 ? json_integer((json_int_t)last) : json_null(),
                              "eligible", !recent, "eligible_at",
                              recent ? json_integer((json_int_t)(last + days * 86400.0))
                                     : json_null());
        json_object_set_new(c, "priority",
                            json_string(message_priority_name(r->candidates[i].priority)));
        json_array_append_new(arr, c);
    }
    return arr;
}

static json_t *quiet_part(const decide_ctx_t *d)
{
    const quiet_hours_t *qh = &d->fast->quiet_hours;
    int64_t retry_at = 0;
    bool now = calendar_in_quiet_hours(qh, d->r.ts, d->tz, &retry_at);
    bool on = qh->enabled && calendar_quiet_hours_valid(qh) && qh->start_min != qh->end_min;
    return json_pack("{s:b,s:o,s:o,s:b,s:o}", "enabled", on, "start",
                     on ? clock_of(qh->start_min) : json_null(), "end",
                     on ? clock_of(qh->end_min) : json_null(), "now", now, "retry_at",
                     now ? json_integer((json_int_t)retry_at) : json_null());
}

/* Every channel's opt-out: the member hash's flag, the durable key's, and
 * whether a decide stops on it (either). */
static json_t *optouts_part(const explain_ctx_t *x)
{
    const config_t *cfg = x->d.req->cfg;
    json_t *o = json_object();
    for (int c = 0; c < cfg->n_channels; c++) {
        bool member = x->features.ch[c].unsub;
        bool durable = x->durable_optout[c];
        bool out = member || durable || (c == x->d.r.channel && x->d.unsubscribed);
        json_object_set_new(o, cfg->channels[c],
                            json_pack("{s:b,s:b,s:b}", "opted_out", out, "member_hash", member,
                                      "durable", durable));
    }
    return o;
}

json_t *explain_answer(explain_ctx_t *x)
{
    decide_ctx_t *d = &x->d;
    const config_t *cfg = d->req->cfg;
    const decide_request_t *r = &d->r;
    bool th_mode = decide_threshold_mode(d);
    /* A copy of the calibrator: the decide's observe must not happen here. */
    threshold_state_t th;
    if (th_mode) {
        const policy_state_t *ps = policy_state(d->app);
        int a = d->fast_arm + 1;
        if (ps->threshold_ready[a][r->channel])
            th = ps->threshold[a][r->channel];
        else
            threshold_init(&th, d->fast->threshold_initial);
    }
    decide_prep_t prep;
    decide_prepare(d, th_mode ? &th : NULL, &prep);

    json_t *cands = candidates_part(d);
    json_t *budget = budget_part(d, &prep, cands);
    /* What the decide would answer: decision_evaluate on the same input. */
    decision_t dec;
    decision_evaluate(&prep.in, &dec);
    json_t *decision = json_pack(
        "{s:s,s:b,s:o,s:o,s:o,s:s%}", "reason", decision_reason_name(dec.reason), "send",
        dec.send, "p_send", num(dec.p_send), "message",
        dec.send && dec.chosen >= 0
            ? json_stringn(r->candidates[dec.chosen].id, r->candidates[dec.chosen].id_len)
            : json_null(),
        "retry_at",
        dec.reason == REASON_QUIET_HOURS ? json_integer((json_int_t)dec.retry_at) : json_null(),
        "opportunity", r->opportunity, r->opportunity_len);
    /* The class the decide would consider (priority.h). */
    if (decision != NULL)
        json_object_set_new(decision, "priority",
                            json_string(message_priority_name(dec.priority)));

    json_t *body = json_pack(
        "{s:s%,s:s,s:b,s:I,s:i,s:I,s:s,s:b,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "member",
        r->member, r->member_len, "channel", cfg->channels[r->channel], "channel_defaulted",
        x->channel_defaulted, "ts", (json_int_t)r->ts, "tz_offset_min", d->tz, "week",
        (json_int_t)d->view.week, "mode", th_mode ? "threshold" : "hierarchical", "recorded",
        0, "decision", decision, "plan", th_mode ? json_null() : plan_part(x, &prep), "slow",
        slow_part(x), "budget", budget, "caps", caps_part(d, &prep), "quiet_hours",
        quiet_part(d), "candidates", cands, "optouts", optouts_part(x), "arms",
        json_pack("{s:s,s:s,s:b}", "fast", d->fast_arm_name ? d->fast_arm_name : "control",
                  "slow", d->slow_arm_name ? d->slow_arm_name : "control", "holdout",
                  d->holdout),
        "dedup_days", json_integer(d->fast->dedup_days));
    return body;
}
