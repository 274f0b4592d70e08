/*
 * planner_scores.c - the score prior's part of a pass (slow.priors.
 * score_strength, docs/slow-policy.md "Score prior"): which week-hash
 * fields a member's read asks for, what the reply puts into the member's
 * features, and the pooled calibration carried from pass to pass.
 * The maths is src/core/score_prior.c; this file only reads and wires.
 * The calibration lives in the planner (worker thread only): a pass plans
 * with what the passes before gathered, so that no member's rate depends
 * on the order the pass reads members in.
 *
 * Off (score_strength 0 everywhere) a pass sends exactly the commands it
 * did before: the planner's Redis cost does not grow unless asked to.
 */
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "notifd/core/features.h"
#include "notifd/core/pacing.h"
#include "notifd/core/policy_config.h"
#include "notifd/core/score_prior.h"
#include "notifd/log.h"
#include "planner_internal.h"

static bool any_score_strength(const config_t *cfg)
{
    const policy_config_t *pc = &cfg->policy;
    if (pc->slow.priors.score_strength > 0.0)
        return true;
    for (int i = 0; pc->slow_arms != NULL && i < pc->slow_layer.n_arms; i++)
        if (pc->slow_arms[i].priors.score_strength > 0.0)
            return true;
    return false;
}

void planner_scores_fields(part_ctx_t *p)
{
    const config_t *cfg = p->cfg;
    p->read_scores = any_score_strength(cfg);
    if (!p->read_scores)
        return;
    for (int c = 0; c < cfg->n_channels; c++) {
        size_t cap = sizeof p->score_fields[0];
        int a = snprintf(p->score_fields[2 * c], cap, "%s:scores", cfg->channels[c]);
        int b = snprintf(p->score_fields[2 * c + 1], cap, "%s:ewma", cfg->channels[c]);
        p->score_field_lens[2 * c] = (size_t)a;
        p->score_field_lens[2 * c + 1] = (size_t)b;
    }
}

void planner_scores_new_pass(planner_t *pl, const config_t *cfg)
{
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++) {
        score_calibration_merge(&pl->score_cal[c], &pl->score_pass[c]);
        pl->score_pass[c] = (score_calibration_t){0};
    }
    if (!any_score_strength(cfg))
        return;
    for (int c = 0; c < cfg->n_channels; c++) {
        const score_calibration_t *k = &pl->score_cal[c];
        if (k->members > 0.0)
            log_info("planner: score calibration",
                     "channel=%s members=%.0f level=%.4f opens=%.1f expected=%.1f factor=%.4f",
                     cfg->channels[c], k->members, score_calibration_level(k), k->opens,
                     k->expected, score_calibration_factor(k));
    }
}

/* One channel's "<ch>:scores" and "<ch>:ewma" values (either may be
 * missing) into mf->ch[c].score_open, and its sends into the calibration. */
static void score_channel(part_ctx_t *p, const fast_config_t *fast, const slow_config_t *slow,
                          int c, const redisReply *scores, const redisReply *ewma,
                          member_features_t *mf, double decay)
{
    if (scores == NULL || scores->type != REDIS_REPLY_STRING)
        return;
    double list[PACING_MAX_RECENT];
    size_t n = score_prior_parse_list(scores->str, scores->len, list, PACING_MAX_RECENT,
                                      &mf->invalid);
    /* Without the member's own count of opportunities a week, the
     * producer's expected count (fast.prior_opportunities_per_week). */
    double opp = fast->pacing.prior_opportunities_per_week;
    double x;
    if (ewma != NULL && ewma->type == REDIS_REPLY_STRING &&
        stored_parse_real(STORED_EWMA, ewma->str, ewma->len, &x, &mf->invalid) && x > 0.0)
        opp = x;
    double top;
    if (!score_prior_channel_top_mean(list, n, opp, &fast->ranker[c], &top))
        return;
    const channel_features_t *d = &mf->ch[c];
    double sends = decay * (d->sent > d->delivered ? d->sent : d->delivered);
    double opens = decay * (d->open > d->click ? d->open : d->click);
    /* The member joins this pass's sums; its rate comes from the passes
     * before (none yet: no level, and the "opens" factor is 1). */
    score_calibration_add(&p->pl->score_pass[c], opens, sends, top);
    const score_calibration_t *k = &p->pl->score_cal[c];
    double q;
    bool ok = slow->priors.score_calibration == SCORE_CALIBRATION_PRIOR
                  ? score_prior_relative_rate(top, score_calibration_level(k),
                                              slow->priors.channel[c].open_rate, &q)
                  : score_prior_open_rate(top, score_calibration_factor(k), &q);
    if (ok) {
        mf->ch[c].score_open = q;
        mf->ch[c].has |= FEATURES_HAS_SCORE_OPEN;
    }
}

void planner_scores_apply(part_ctx_t *p, const char *member, size_t member_len,
                          const redisReply *week, member_features_t *mf)
{
    const config_t *cfg = p->cfg;
    if (week == NULL || week->type != REDIS_REPLY_ARRAY ||
        week->elements != (size_t)(2 * cfg->n_channels))
        return;
    /* The member's ranker is its fast arm's: the list holds its utilities. */
    const fast_config_t *fast = policy_fast_for(&cfg->policy, member, member_len, NULL, NULL);
    const slow_config_t *slow = policy_slow_for(&cfg->policy, member, member_len, NULL, NULL);
    /* Sends and opens on the scale the estimate sees them (decayed to the
     * pass's time, as features_decay_to would: one factor for every
     * count), so that members updated long ago weigh as little in the
     * calibration as in their own estimate. */
    double decay = 1.0;
    if ((mf->has & FEATURES_HAS_UPDATED_AT) && p->as_of > mf->updated_at &&
        cfg->policy.half_life_s > 0)
        decay = exp2(-(double)(p->as_of - mf->updated_at) / cfg->policy.half_life_s);
    for (int c = 0; c < cfg->n_channels; c++)
        score_channel(p, fast, slow, c, week->element[2 * c], week->element[2 * c + 1], mf,
                      decay);
}
