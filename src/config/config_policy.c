/*
 * config_policy.c - the policy sections of the config: fast.* and features.*
 * here, slow.* in config_slow.c, experiment arms in config_experiments.c
 * (see policy_config.h).
 *
 * Each section parser applies the keys present in a JSON object on top of
 * the values already in its struct, so the same functions read the base
 * config and, later, an experiment arm's overrides. Range checks that belong
 * to a pure module (pacing, ranker, priors, weights, grid) are delegated to
 * that module's *_check function, so the rules live next to the maths.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_policy_internal.h"
#include "notifd/core/decision.h"
#include "notifd/core/stored_fields.h"

static const char *const fast_keys[] = {
    "mode", "pacing", "pacing_profile", "prior_opportunities_per_week",
    "opportunity_ewma_alpha", "quality_quantile", "quality_min_history", "quality_history",
    "cap_factor", "rolling_cap", "rolling_cap_factor", "rolling_cap_min_slack",
    "transactional_respects_optout",
    "quiet_hours", "dedup_days", "idempotency_ttl_s", "on_store_error", "ranker",
    "exploration", "epsilon", "temperature", "threshold", "plan_cache_ms", "member_cache_ms",
    "member_cache_entries", "deadline_ms",
    "unplanned_per_week", "unpaced_channels", NULL,
};
static const char *const ranker_keys[] = {"bias", "score", "open_rate", "features", NULL};
static const char *const threshold_keys[] = {"target_send_rate", "initial", NULL};
static const char *const quiet_keys[] = {"start", "end", NULL};
static const char *const features_keys[] = {"half_life_days", "event_id_ttl_s", NULL};

/* ------------------------------------------------------------------ */
/* Defaults                                                           */

static void fast_defaults(fast_config_t *f)
{
    memset(f, 0, sizeof *f);
    f->mode = FAST_MODE_HIERARCHICAL;
    pacing_params_defaults(&f->pacing);
    /* Quality pacing: the plan's budget spent on the member's best
     * opportunities. In notifd-sim (docs/simulation.md) it beat budget and
     * uniform pacing in every cohort at equal volume: a send's value depends
     * far more on how relevant the message is than on when in the week it
     * goes, and quality is the only strategy that waits for relevance. */
    f->pacing.strategy = PACING_QUALITY;
    /* 1: the plan is the most a member gets in a week. With the rate
     * quantile the week's count varies around the plan; letting good weeks
     * run to 1.5x it bunched sends across week boundaries, and in notifd-sim
     * that raised opt-outs (which follow a member's rolling weekly volume)
     * far more than it added visits (docs/simulation.md). */
    f->cap_factor = 1.0;
    /* The cap holds over any 7 days, not only per calendar week: a plan of
     * one a week must not become two sends a day apart across a week
     * boundary. Opt-outs follow recent volume, not the calendar; in
     * notifd-sim this cut the opt-outs that volume causes by about 60%
     * (docs/fast-policy.md). */
    f->rolling_cap = true;
    /* The 7-day window holds the weekly cap plus the whole part of half
     * the plan (decision_rolling_cap), not the plan itself: a week's sends
     * fall at random moments, so the last 7 days often hold a few more than
     * the plan; a window capped at the plan then pushed each week's sends
     * later, week after week, until they bunched at the end of the week
     * (tests/integration/plan_delivery.py). A plan of 1 still never gets
     * two sends in 7 days. */
    f->rolling_cap_factor = 1.5;
    /* No minimum slack: a plan of one a week never gets two sends in 7
     * days. Its sends then fall exactly 7 days apart in the long run (its
     * moment is forced, not chosen); a slack of 1 gives casual members'
     * visits back in notifd-sim but raises their opt-outs above the
     * baseline's, in the standard world and a casual-heavy one
     * (docs/simulation.md). Opt-outs are forever; the default keeps them
     * down. */
    f->rolling_cap_min_slack = 0;
    f->quiet_hours.enabled = false;
    f->transactional_respects_optout = true;
    f->dedup_days = 7;
    f->idempotency_ttl_s = 2 * 86400;
    f->on_store_error = STORE_ERROR_SKIP;
    f->quality_history = 100;
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++)
        ranker_weights_defaults(&f->ranker[c]);
    ranker_params_defaults(&f->exploration);
    f->threshold_target_send_rate = 0.1;
    f->threshold_initial = 0.5;
    /* With redis.tracking (the default) Redis invalidates a cached plan or
     * member state within milliseconds of any write; these ages only bound
     * what a lost invalidation could cost. */
    f->plan_cache_ms = 60000;
    f->member_cache_ms = 10000;
    f->member_cache_entries = 4096;
    f->deadline_ms = 1500;
    /* A channel no plan covers (in-app by default) gets at most one a day
     * on average, paced and capped like a plan: no channel is unbounded
     * unless fast.unpaced_channels says so. */
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++)
        f->unplanned_per_week[c] = 7.0;
    f->unpaced_mask = 0;
}

void policy_config_defaults(policy_config_t *pc)
{
    memset(pc, 0, sizeof *pc);
    fast_defaults(&pc->fast);
    /* The slow defaults depend on the channel list; see config_slow_defaults(). */
    pc->half_life_s = 28.0 * 86400.0;
    /* Two days, as decisions' idempotency: a producer's retries of one
     * event come within minutes, a replay of a spool within a day. */
    pc->event_id_ttl_s = 2 * 86400;
}

/* ------------------------------------------------------------------ */
/* fast.*                                                             */

static bool parse_hhmm(const char *s, int *minutes)
{
    int h, m;
    char tail;
    if (sscanf(s, "%d:%d%c", &h, &m, &tail) != 2 || h < 0 || h > 23 || m < 0 || m > 59)
        return false;
    *minutes = h * 60 + m;
    return true;
}

static void parse_quiet_hours(config_errors_t *errs, json_t *fo, const char *path,
                              fast_config_t *f)
{
    json_t *q = json_object_get(fo, "quiet_hours");
    if (q == NULL)
        return;
    char qp[128];
    config_path_join(qp, sizeof qp, path, "quiet_hours");
    if (json_is_null(q)) {
        f->quiet_hours.enabled = false;
        return;
    }
    if (!json_is_object(q)) {
        config_errors_add(errs, qp, "must be {\"start\": \"HH:MM\", \"end\": \"HH:MM\"} or null");
        return;
    }
    config_check_known(errs, q, qp, quiet_keys);
    char start[16] = "", end[16] = "";
    config_get_string(errs, q, qp, "start", start, sizeof start, false, false);
    config_get_string(errs, q, qp, "end", end, sizeof end, false, false);
    int sm, em;
    if (!parse_hhmm(start, &sm) || !parse_hhmm(end, &em)) {
        config_errors_add(errs, qp, "start and end must both be \"HH:MM\" (24-hour, member-local)");
        return;
    }
    f->quiet_hours.enabled = sm != em;
    f->quiet_hours.start_min = sm;
    f->quiet_hours.end_min = em;
}

static void parse_ranker_weights(config_errors_t *errs, json_t *o, const char *path,
                                 ranker_weights_t *w)
{
    config_check_known(errs, o, path, ranker_keys);
    config_get_double(errs, o, path, "bias", -1e6, 1e6, &w->bias);
    config_get_double(errs, o, path, "score", -1e6, 1e6, &w->w_score);
    config_get_double(errs, o, path, "open_rate", -1e6, 1e6, &w->w_open_rate);
    json_t *feats = config_get_object(errs, o, path, "features");
    if (feats == NULL)
        return;
    const char *name;
    json_t *v;
    char fp[192];
    config_path_join(fp, sizeof fp, path, "features");
    json_object_foreach(feats, name, v) {
        char kp[256];
        config_path_join(kp, sizeof kp, fp, name);
        double x;
        if (!config_json_number(v, &x) || !isfinite(x)) {
            config_errors_add(errs, kp, "must be a number (the feature's weight)");
            continue;
        }
        if (ranker_weights_set_feature(w, name, strlen(name), x) != 0)
            config_errors_add(errs, kp, "too many features (at most %d) or the name is longer "
                              "than %d bytes", RANKER_MAX_FEATURES, RANKER_FEATURE_NAME_MAX - 1);
    }
}

/* fast.ranker: {"default": {...}, "<channel>": {...}}. "default" applies to
 * every channel first; a channel's own object then overrides it. */
static void parse_ranker(config_errors_t *errs, json_t *fo, const char *path,
                         const config_t *cfg, fast_config_t *f)
{
    char rp[128];
    config_path_join(rp, sizeof rp, path, "ranker");
    json_t *r = config_get_object(errs, fo, path, "ranker");
    if (r == NULL)
        return;
    const char *key;
    json_t *v;
    json_object_foreach(r, key, v) {
        if (strcmp(key, "default") != 0 && config_channel_index(cfg, key, strlen(key)) < 0) {
            char kp[192];
            config_errors_add(errs, config_path_join(kp, sizeof kp, rp, key),
                              "is neither \"default\" nor a configured channel");
        }
    }
    json_t *def = config_get_object(errs, r, rp, "default");
    if (def != NULL) {
        char dp[160];
        config_path_join(dp, sizeof dp, rp, "default");
        for (int c = 0; c < cfg->n_channels; c++) {
            config_errors_t scratch; /* report default's problems once, not per channel */
            config_errors_init(&scratch);
            parse_ranker_weights(c == 0 ? errs : &scratch, def, dp, &f->ranker[c]);
            config_errors_free(&scratch);
        }
    }
    for (int c = 0; c < cfg->n_channels; c++) {
        json_t *o = config_get_object(errs, r, rp, cfg->channels[c]);
        if (o != NULL) {
            char cp[160];
            parse_ranker_weights(errs, o, config_path_join(cp, sizeof cp, rp, cfg->channels[c]),
                                 &f->ranker[c]);
        }
    }
}

/* fast.unplanned_per_week {channel: n} and fast.unpaced_channels [channel]. */
static void parse_unplanned(config_errors_t *errs, json_t *fo, const char *path,
                            const config_t *cfg, fast_config_t *f)
{
    char kp[160], ck[224];
    json_t *o = config_get_object(errs, fo, path, "unplanned_per_week");
    if (o != NULL) {
        config_path_join(kp, sizeof kp, path, "unplanned_per_week");
        const char *name;
        json_t *v;
        json_object_foreach(o, name, v) {
            config_path_join(ck, sizeof ck, kp, name);
            int c = config_channel_index(cfg, name, strlen(name));
            double x;
            if (c < 0)
                config_errors_add(errs, ck, "is not a configured channel");
            else if (!config_json_number(v, &x) || !(x >= 0) || x > ACTION_GRID_MAX_PER_WEEK)
                config_errors_add(errs, ck, "must be a number of messages per week in [0, %g]",
                                  ACTION_GRID_MAX_PER_WEEK);
            else
                f->unplanned_per_week[c] = x;
        }
    }
    json_t *list = json_object_get(fo, "unpaced_channels");
    if (list == NULL)
        return;
    config_path_join(kp, sizeof kp, path, "unpaced_channels");
    if (!json_is_array(list)) {
        config_errors_add(errs, kp, "must be a list of channel names");
        return;
    }
    f->unpaced_mask = 0;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        int c = json_is_string(v) ? config_channel_index(cfg, json_string_value(v),
                                                         json_string_length(v))
                                  : -1;
        if (c < 0)
            config_errors_add(errs, kp, "item %zu is not a configured channel", i);
        else
            f->unpaced_mask |= 1u << c;
    }
}

void config_parse_fast(config_errors_t *errs, json_t *fo, const char *path, const config_t *cfg,
                       fast_config_t *f)
{
    config_check_known(errs, fo, path, fast_keys);
    parse_unplanned(errs, fo, path, cfg, f);
    char kp[160];
    char s[32];
    if (config_get_string(errs, fo, path, "mode", s, sizeof s, false, false)) {
        if (strcmp(s, "hierarchical") == 0)
            f->mode = FAST_MODE_HIERARCHICAL;
        else if (strcmp(s, "threshold") == 0)
            f->mode = FAST_MODE_THRESHOLD;
        else
            config_errors_add(errs, config_path_join(kp, sizeof kp, path, "mode"),
                              "must be \"hierarchical\" or \"threshold\"");
    }
    if (config_get_string(errs, fo, path, "pacing", s, sizeof s, false, false)) {
        int st = pacing_strategy_parse(s);
        if (st < 0)
            config_errors_add(errs, config_path_join(kp, sizeof kp, path, "pacing"),
                              "must be \"uniform\", \"budget\" or \"quality\"");
        else
            f->pacing.strategy = (pacing_strategy_t)st;
    }
    json_t *prof = json_object_get(fo, "pacing_profile");
    if (prof != NULL) {
        config_path_join(kp, sizeof kp, path, "pacing_profile");
        if (json_is_null(prof)) {
            f->pacing.has_profile = false;
        } else if (!json_is_array(prof) || json_array_size(prof) != 7) {
            config_errors_add(errs, kp, "must be 7 non-negative weights, Monday first, or null");
        } else {
            bool ok = true;
            double sum = 0;
            for (size_t i = 0; i < 7; i++) {
                double x;
                if (!config_json_number(json_array_get(prof, i), &x) || !(x >= 0) || !isfinite(x))
                    ok = false;
                else
                    f->pacing.profile[i] = x, sum += x;
            }
            if (!ok || sum <= 0)
                config_errors_add(errs, kp, "must be 7 non-negative weights with a positive sum");
            else
                f->pacing.has_profile = true;
        }
    }
    config_get_double(errs, fo, path, "prior_opportunities_per_week", 0.01, 1e6,
                      &f->pacing.prior_opportunities_per_week);
    config_get_double(errs, fo, path, "opportunity_ewma_alpha", 0.0, 1.0, &f->pacing.ewma_alpha);
    if (config_get_string(errs, fo, path, "quality_quantile", s, sizeof s, false, false)) {
        int q = pacing_quantile_parse(s);
        if (q < 0)
            config_errors_add(errs, config_path_join(kp, sizeof kp, path, "quality_quantile"),
                              "must be \"rate\" or \"budget\"");
        else
            f->pacing.quality_quantile = (pacing_quantile_t)q;
    }
    long long x;
    if (config_get_int(errs, fo, path, "quality_min_history", 1, PACING_MAX_RECENT, &x))
        f->pacing.quality_min_history = (unsigned)x;
    if (config_get_int(errs, fo, path, "quality_history", 1, PACING_MAX_RECENT, &x))
        f->quality_history = (int)x;
    config_get_double(errs, fo, path, "cap_factor", 1.0, 100.0, &f->cap_factor);
    config_get_bool(errs, fo, path, "rolling_cap", &f->rolling_cap);
    config_get_double(errs, fo, path, "rolling_cap_factor", 1.0, 100.0, &f->rolling_cap_factor);
    if (config_get_int(errs, fo, path, "rolling_cap_min_slack", 0, DECISION_MAX_RECENT_SENDS, &x))
        f->rolling_cap_min_slack = (int)x;
    parse_quiet_hours(errs, fo, path, f);
    config_get_bool(errs, fo, path, "transactional_respects_optout",
                    &f->transactional_respects_optout);
    if (config_get_int(errs, fo, path, "dedup_days", 0, 365, &x))
        f->dedup_days = (int)x;
    if (config_get_int(errs, fo, path, "idempotency_ttl_s", 1, 366LL * 86400, &x))
        f->idempotency_ttl_s = x;
    if (config_get_string(errs, fo, path, "on_store_error", s, sizeof s, false, false)) {
        if (strcmp(s, "skip") == 0)
            f->on_store_error = STORE_ERROR_SKIP;
        else if (strcmp(s, "default_plan") == 0)
            f->on_store_error = STORE_ERROR_DEFAULT_PLAN;
        else
            config_errors_add(errs, config_path_join(kp, sizeof kp, path, "on_store_error"),
                              "must be \"skip\" or \"default_plan\"");
    }
    parse_ranker(errs, fo, path, cfg, f);
    if (config_get_string(errs, fo, path, "exploration", s, sizeof s, false, false)) {
        int e = ranker_exploration_parse(s);
        if (e < 0)
            config_errors_add(errs, config_path_join(kp, sizeof kp, path, "exploration"),
                              "must be \"none\", \"epsilon\" or \"softmax\"");
        else
            f->exploration.exploration = (ranker_exploration_t)e;
    }
    config_get_double(errs, fo, path, "epsilon", 0.0, 1.0, &f->exploration.epsilon);
    config_get_double(errs, fo, path, "temperature", 1e-6, 1e6, &f->exploration.temperature);
    json_t *th = config_get_object(errs, fo, path, "threshold");
    if (th != NULL) {
        char tp[160];
        config_path_join(tp, sizeof tp, path, "threshold");
        config_check_known(errs, th, tp, threshold_keys);
        config_get_double(errs, th, tp, "target_send_rate", 0.0, 1.0,
                          &f->threshold_target_send_rate);
        config_get_double(errs, th, tp, "initial", -1e6, 1e6, &f->threshold_initial);
    }
    if (config_get_int(errs, fo, path, "plan_cache_ms", 0, 3600000, &x))
        f->plan_cache_ms = (int)x;
    if (config_get_int(errs, fo, path, "member_cache_ms", 0, 3600000, &x))
        f->member_cache_ms = (int)x;
    if (config_get_int(errs, fo, path, "member_cache_entries", 0, 16777216, &x))
        f->member_cache_entries = (int)x;
    if (config_get_int(errs, fo, path, "deadline_ms", 0, 600000, &x))
        f->deadline_ms = (int)x;

    const char *why = pacing_params_check(&f->pacing);
    if (why != NULL)
        config_errors_add(errs, path, "pacing: %s", why);
    why = ranker_params_check(&f->exploration);
    if (why != NULL)
        config_errors_add(errs, path, "exploration: %s", why);
}

/* ------------------------------------------------------------------ */
/* slow.*                                                             */

/* ------------------------------------------------------------------ */
/* experiments.*                                                      */

/* ------------------------------------------------------------------ */

void policy_config_parse(config_errors_t *errs, json_t *root, const config_t *cfg,
                         policy_config_t *pc)
{
    config_slow_defaults(&pc->slow, cfg);
    json_t *fo = config_get_object(errs, root, "", "fast");
    if (fo != NULL)
        config_parse_fast(errs, fo, "fast", cfg, &pc->fast);
    json_t *so = config_get_object(errs, root, "", "slow");
    if (so != NULL)
        config_parse_slow(errs, so, "slow", cfg, &pc->slow);
    if (pc->slow.grid.n_actions == 0)
        config_errors_add(errs, "slow.actions", "no channel is planned: set slow.actions "
                          "(the default plans push and email, which are not both configured)");
    json_t *feat = config_get_object(errs, root, "", "features");
    if (feat != NULL) {
        config_check_known(errs, feat, "features", features_keys);
        double days = pc->half_life_s / 86400.0;
        if (config_get_double(errs, feat, "features", "half_life_days", 0.01, 3650.0, &days))
            pc->half_life_s = days * 86400.0;
        long long ttl;
        if (config_get_int(errs, feat, "features", "event_id_ttl_s", 60, 30LL * 86400, &ttl))
            pc->event_id_ttl_s = ttl;
    }
    pc->attribution_window_s = pc->slow.priors.attribution_window_s;
    config_parse_experiments(errs, root, cfg, pc);
}

void policy_config_free(policy_config_t *pc)
{
    free(pc->fast_arms);
    free(pc->slow_arms);
    pc->fast_arms = NULL;
    pc->slow_arms = NULL;
}
