/*
 * decide_body.c - see decide_body.h.
 */
#include "notifd/fast/decide_body.h"

#include "notifd/lib/json_writer.h"

static void write_plan(json_writer_t *w, const config_t *cfg, const plan_t *plan)
{
    jw_object_begin(w);
    jw_key(w, "version");
    jw_int(w, plan->version);
    jw_key(w, "source");
    jw_cstring(w, plan->source);
    jw_key(w, "per_week");
    jw_object_begin(w);
    for (int c = 0; c < cfg->n_channels; c++) {
        if (plan_has_channel(plan, c)) {
            jw_key(w, cfg->channels[c]);
            jw_real(w, plan->per_week[c]);
        }
    }
    jw_object_end(w);
    /* The probability the planner chose this plan with (1 unless it was
     * drawn with slow.explore_prob), and for a drawn plan the greedy plan
     * it was drawn around and K, what off-policy evaluation needs. */
    jw_key(w, "propensity");
    jw_real(w, plan_action_propensity(plan));
    if (plan->explore_neighbours > 0) {
        jw_key(w, "neighbours");
        jw_int(w, plan->explore_neighbours);
        jw_key(w, "greedy");
        jw_object_begin(w);
        for (int c = 0; c < cfg->n_channels; c++) {
            if (plan_has_channel(plan, c) && !(plan->defaulted_mask & (1u << c))) {
                jw_key(w, cfg->channels[c]);
                jw_real(w, plan_greedy_per_week(plan, c));
            }
        }
        jw_object_end(w);
        if (plan->n_gaps > 0) {
            jw_key(w, "gaps");
            jw_array_begin(w);
            for (int j = 0; j < plan->n_gaps; j++)
                jw_real(w, plan->utility_gap[j]);
            jw_array_end(w);
        }
    }
    if (plan->defaulted_mask != 0) {
        /* Channels the plan left out, paced by the default plan or
         * fast.unplanned_per_week. */
        jw_key(w, "defaulted");
        jw_array_begin(w);
        for (int c = 0; c < cfg->n_channels; c++)
            if (plan->defaulted_mask & (1u << c))
                jw_cstring(w, cfg->channels[c]);
        jw_array_end(w);
    }
    jw_object_end(w);
}

char *decide_body_text(const decide_body_t *b, size_t *len)
{
    const decision_t *dec = b->dec;
    json_writer_t w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "send");
    jw_bool(&w, b->send);
    jw_key(&w, "message");
    if (b->send && b->message != NULL)
        jw_string(&w, b->message, b->message_len);
    else
        jw_null(&w);
    jw_key(&w, "reason");
    jw_cstring(&w, decision_reason_name(b->reason));
    jw_key(&w, "p_send");
    jw_real(&w, b->reason == REASON_CAP_REACHED ? 0.0 : dec->p_send);
    /* The probability of this exact outcome: of the send (coin and pick),
     * of the coin's "no" for a paced skip, else 1 (nothing was drawn). */
    jw_key(&w, "propensity");
    jw_real(&w, b->send || b->reason == REASON_PACED_SKIP ? dec->propensity : 1.0);
    jw_key(&w, "plan");
    if (b->plan != NULL)
        write_plan(&w, b->cfg, b->plan);
    else
        jw_null(&w);
    jw_key(&w, "arm");
    jw_object_begin(&w);
    jw_key(&w, "slow");
    jw_cstring(&w, b->slow_arm);
    jw_key(&w, "fast");
    jw_cstring(&w, b->fast_arm);
    jw_object_end(&w);
    jw_key(&w, "mode");
    jw_cstring(&w, b->threshold_mode ? "threshold" : "hierarchical");
    if (b->reason == REASON_QUIET_HOURS) {
        jw_key(&w, "retry_at");
        jw_int(&w, dec->retry_at);
    }
    if (b->degraded) {
        jw_key(&w, "degraded");
        jw_bool(&w, true);
    }
    jw_object_end(&w);
    return jw_take(&w, len);
}
