/*
 * decide_body.c - see decide_body.h.
 */
#include "notifd/fast/decide_body.h"

#include "notifd/lib/json_writer.h"

/* The body has one shape, so its keys and punctuation are written as
 * fixed text and only the values go through the writer, at its top level
 * where it adds no separators of its own: a key through jw_key costs an
 * escape scan and the writer's bookkeeping, and a body has fifteen. */
#define RAW(w, text) jw_raw((w), (text), sizeof(text) - 1)

static void write_plan(json_writer_t *w, const config_t *cfg, const plan_t *plan)
{
    RAW(w, "{\"version\":");
    jw_int(w, plan->version);
    RAW(w, ",\"source\":");
    jw_cstring(w, plan->source);
    RAW(w, ",\"per_week\":{");
    bool first = true;
    for (int c = 0; c < cfg->n_channels; c++) {
        if (plan_has_channel(plan, c)) {
            if (!first)
                RAW(w, ",");
            first = false;
            jw_cstring(w, cfg->channels[c]);
            RAW(w, ":");
            jw_real(w, plan->per_week[c]);
        }
    }
    RAW(w, "}");
    /* The probability the planner chose this plan with (1 unless it was
     * drawn with slow.explore_prob), and for a drawn plan the greedy plan
     * it was drawn around and K, what off-policy evaluation needs. */
    RAW(w, ",\"propensity\":");
    jw_real(w, plan_action_propensity(plan));
    if (plan->explore_neighbours > 0) {
        RAW(w, ",\"neighbours\":");
        jw_int(w, plan->explore_neighbours);
        RAW(w, ",\"greedy\":{");
        first = true;
        for (int c = 0; c < cfg->n_channels; c++) {
            if (plan_has_channel(plan, c) && !(plan->defaulted_mask & (1u << c))) {
                if (!first)
                    RAW(w, ",");
                first = false;
                jw_cstring(w, cfg->channels[c]);
                RAW(w, ":");
                jw_real(w, plan_greedy_per_week(plan, c));
            }
        }
        RAW(w, "}");
        if (plan->n_gaps > 0) {
            RAW(w, ",\"gaps\":[");
            for (int j = 0; j < plan->n_gaps; j++) {
                if (j > 0)
                    RAW(w, ",");
                jw_real(w, plan->utility_gap[j]);
            }
            RAW(w, "]");
        }
    }
    if (plan->defaulted_mask != 0) {
        /* Channels the plan left out, paced by the default plan or
         * fast.unplanned_per_week. */
        RAW(w, ",\"defaulted\":[");
        first = true;
        for (int c = 0; c < cfg->n_channels; c++) {
            if (plan->defaulted_mask & (1u << c)) {
                if (!first)
                    RAW(w, ",");
                first = false;
                jw_cstring(w, cfg->channels[c]);
            }
        }
        RAW(w, "]");
    }
    RAW(w, "}");
}

char *decide_body_text(const decide_body_t *b, size_t *len)
{
    const decision_t *dec = b->dec;
    json_writer_t w;
    jw_init(&w);
    RAW(&w, "{\"send\":");
    jw_bool(&w, b->send);
    RAW(&w, ",\"message\":");
    if (b->send && b->message != NULL)
        jw_string(&w, b->message, b->message_len);
    else
        jw_null(&w);
    RAW(&w, ",\"reason\":");
    jw_cstring(&w, decision_reason_name(b->reason));
    RAW(&w, ",\"p_send\":");
    jw_real(&w, b->reason == REASON_CAP_REACHED || b->reason == REASON_RATE_LIMITED ? 0.0
                                                                                   : dec->p_send);
    /* The probability of this exact outcome: of the send (coin and pick),
     * of the coin's "no" for a paced skip, else 1 (nothing was drawn). */
    RAW(&w, ",\"propensity\":");
    jw_real(&w, b->send || b->reason == REASON_PACED_SKIP ? dec->propensity : 1.0);
    RAW(&w, ",\"plan\":");
    if (b->plan != NULL)
        write_plan(&w, b->cfg, b->plan);
    else
        jw_null(&w);
    RAW(&w, ",\"arm\":{\"slow\":");
    jw_cstring(&w, b->slow_arm);
    RAW(&w, ",\"fast\":");
    jw_cstring(&w, b->fast_arm);
    RAW(&w, "},\"mode\":");
    jw_cstring(&w, b->threshold_mode ? "threshold" : "hierarchical");
    /* The class considered, when a producer marked one above normal
     * (priority.h); absent means normal. */
    if (dec->priority != PRIORITY_NORMAL) {
        RAW(&w, ",\"priority\":");
        jw_cstring(&w, message_priority_name(dec->priority));
    }
    if (b->reason == REASON_QUIET_HOURS) {
        RAW(&w, ",\"retry_at\":");
        jw_int(&w, dec->retry_at);
    }
    if (b->reason == REASON_RATE_LIMITED) {
        /* When the limiter allows a send again: the record script knows
         * (Redis's clock), so the text stops here and it writes the rest. */
        RAW(&w, ",\"retry_at\":");
        if (b->retry_at_open)
            return jw_take(&w, len);
        jw_int(&w, dec->retry_at);
    }
    if (b->degraded)
        RAW(&w, ",\"degraded\":true");
    RAW(&w, "}");
    return jw_take(&w, len);
}
