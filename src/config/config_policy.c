/*
 * config_policy.c - the policy sections of the config: fast.*, slow.* and
 * features.* (see policy_config.h).
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

#include "notifd/config/config.h"
#include "notifd/config/config_policy.h"
#include "notifd/config/config_reader.h"
#include "notifd/core/stored_fields.h"


static const char *const fast_keys[] = {
    "mode", "pacing", "pacing_profile", "prior_opportunities_per_week",
    "opportunity_ewma_alpha", "quality_quantile", "quality_min_history", "quality_history",
    "cap_factor", "rolling_cap", "rolling_cap_factor",
    "quiet_hours", "dedup_days", "idempotency_ttl_s", "on_store_error", "ranker",
    "exploration", "epsilon", "temperature", "threshold", "plan_cache_ms", "deadline_ms",
    "unplanned_per_week", "unpaced_channels", NULL,
};
static const char *const slow_keys[] = {
    "default_plan", "actions", "message_cost", "weights", "priors", "max_per_week", NULL,
};
static const char *const weights_keys[] = {
    "incremental_visit", "open", "fatigue", "cross_fatigue", "optout", "channel_cost", NULL,
};
static const char *const priors_keys[] = {
    "fatigue_from_dismiss", "responsiveness_strength", "visit_rate", "visit_rate_strength", "visits_per_open",
    "visits_per_open_strength", "attribution_window_s", "channels", NULL,
};
static const char *const channel_prior_keys[] = {
    "open_rate", "dismiss_rate", "unsub_rate", "fatigue", "open_strength",
    "dismiss_strength", "unsub_strength", NULL,
};
static const char *const ranker_keys[] = {"bias", "score", "open_rate", "features", NULL};
static const char *const threshold_keys[] = {"target_send_rate", "initial", NULL};
static const char *const quiet_keys[] = {"start", "end", NULL};
static const char *const features_keys[] = {"half_life_days", "event_id_ttl_s", NULL};
static const char *const experiments_keys[] = {"slow", "fast", NULL};
static const char *const layer_keys[] = {"salt", "arms", NULL};
static const char *const arm_keys[] = {"name", "share", "set", NULL};

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
    f->quiet_hours.enabled = false;
    f->dedup_days = 7;
    f->idempotency_ttl_s = 2 * 86400;
    f->on_store_error = STORE_ERROR_SKIP;
    f->quality_history = 100;
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++)
        ranker_weights_defaults(&f->ranker[c]);
    ranker_params_defaults(&f->exploration);
    f->threshold_target_send_rate = 0.1;
    f->threshold_initial = 0.5;
    f->plan_cache_ms = 0;
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
    /* The slow defaults depend on the channel list; see slow_defaults(). */
    pc->half_life_s = 28.0 * 86400.0;
    /* Two days, as decisions' idempotency: a producer's retries of one
     * event come within minutes, a replay of a spool within a day. */
    pc->event_id_ttl_s = 2 * 86400;
}

static void slow_defaults(slow_config_t *s, const config_t *cfg)
{
    const char *names[NOTIFD_MAX_CHANNELS];
    for (int c = 0; c < cfg->n_channels; c++)
        names[c] = cfg->channels[c];
    slow_priors_defaults(&s->priors, names, cfg->n_channels);
    slow_weights_defaults(&s->weights);
    s->max_per_week = STORED_PER_WEEK_DEFAULT;
    /* Default grid: push x email when both channels exist. */
    action_channel_spec_t specs[2];
    int n = 0;
    static const char *const planned[] = {"push", "email"};
    for (int i = 0; i < 2; i++) {
        int idx = config_channel_index(cfg, planned[i], strlen(planned[i]));
        if (idx < 0)
            continue;
        specs[n].channel = idx;
        specs[n].name = planned[i];
        specs[n].values = action_grid_default_values(planned[i], &specs[n].n_values);
        n++;
    }
    char err[160];
    if (n > 0)
        action_grid_build(&s->grid, specs, n, err, sizeof err);
    /* The plan a member has before the planner first runs: what the planner
     * gives a member with no history under the default priors and weights
     * (one push a week; a unit test keeps the two in step). */
    s->default_mask = 0;
    for (int k = 0; k < s->grid.n_channels; k++) {
        int c = s->grid.channel[k];
        s->default_mask |= 1u << c;
        s->default_per_week[c] = strcmp(cfg->channels[c], "push") == 0 ? 1.0 : 0.0;
    }
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

static void parse_fast(config_errors_t *errs, json_t *fo, const char *path, const config_t *cfg,
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
    parse_quiet_hours(errs, fo, path, f);
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

static void parse_actions(config_errors_t *errs, json_t *so, const char *path,
                          const config_t *cfg, slow_config_t *s)
{
    char ap[128];
    config_path_join(ap, sizeof ap, path, "actions");
    json_t *a = config_get_object(errs, so, path, "actions");
    if (a == NULL)
        return;
    action_channel_spec_t specs[ACTION_GRID_MAX_CHANNELS];
    double values[ACTION_GRID_MAX_CHANNELS][ACTION_GRID_MAX_VALUES];
    int n = 0;
    const char *name;
    json_t *list;
    bool ok = true;
    json_object_foreach(a, name, list) {
        char kp[192];
        config_path_join(kp, sizeof kp, ap, name);
        int c = config_channel_index(cfg, name, strlen(name));
        if (c < 0) {
            config_errors_add(errs, kp, "is not a configured channel");
            ok = false;
            continue;
        }
        if (n == ACTION_GRID_MAX_CHANNELS) {
            config_errors_add(errs, kp, "at most %d channels can be planned", ACTION_GRID_MAX_CHANNELS);
            ok = false;
            continue;
        }
        if (!json_is_array(list) || json_array_size(list) == 0 ||
            json_array_size(list) > ACTION_GRID_MAX_VALUES) {
            config_errors_add(errs, kp, "must be an array of 1..%d messages-per-week values",
                              ACTION_GRID_MAX_VALUES);
            ok = false;
            continue;
        }
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
            if (!config_json_number(v, &values[n][i])) {
                config_errors_add(errs, kp, "element %zu is not a number", i);
                ok = false;
            }
        }
        specs[n].channel = c;
        specs[n].name = cfg->channels[c];
        specs[n].values = values[n];
        specs[n].n_values = (int)json_array_size(list);
        n++;
    }
    if (!ok)
        return;
    if (n == 0) {
        config_errors_add(errs, ap, "must plan at least one channel");
        return;
    }
    char err[200];
    action_grid_t grid;
    if (action_grid_build(&grid, specs, n, err, sizeof err) != 0) {
        config_errors_add(errs, ap, "%s", err);
        return;
    }
    s->grid = grid;
    /* A channel that is no longer planned has no default. */
    s->default_mask &= grid.planned_mask;
    for (int k = 0; k < grid.n_channels; k++)
        if (!(s->default_mask & (1u << grid.channel[k]))) {
            s->default_mask |= 1u << grid.channel[k];
            s->default_per_week[grid.channel[k]] = 1.0;
        }
}

static void parse_default_plan(config_errors_t *errs, json_t *so, const char *path,
                               const config_t *cfg, slow_config_t *s)
{
    char dp[128];
    config_path_join(dp, sizeof dp, path, "default_plan");
    json_t *d = config_get_object(errs, so, path, "default_plan");
    if (d == NULL)
        return;
    const char *name;
    json_t *v;
    json_object_foreach(d, name, v) {
        char kp[192];
        config_path_join(kp, sizeof kp, dp, name);
        int c = config_channel_index(cfg, name, strlen(name));
        double x;
        if (c < 0 || !(s->grid.planned_mask & (1u << c))) {
            config_errors_add(errs, kp, "is not a planned channel (see slow.actions)");
            continue;
        }
        if (!config_json_number(v, &x) || !(x >= 0) || x > ACTION_GRID_MAX_PER_WEEK) {
            config_errors_add(errs, kp, "must be a number of messages per week in [0, %g]",
                              ACTION_GRID_MAX_PER_WEEK);
            continue;
        }
        s->default_per_week[c] = x;
    }
}

static void parse_weights(config_errors_t *errs, json_t *so, const char *path,
                          const config_t *cfg, slow_config_t *s)
{
    config_get_double(errs, so, path, "message_cost", 0.0, 1e6, &s->weights.message_cost);
    char wp[128];
    config_path_join(wp, sizeof wp, path, "weights");
    json_t *w = config_get_object(errs, so, path, "weights");
    if (w == NULL)
        return;
    config_check_known(errs, w, wp, weights_keys);
    config_get_double(errs, w, wp, "incremental_visit", 0.0, 1e6, &s->weights.incremental_visit);
    config_get_double(errs, w, wp, "open", 0.0, 1e6, &s->weights.open);
    config_get_double(errs, w, wp, "fatigue", 0.0, 1e6, &s->weights.fatigue);
    config_get_double(errs, w, wp, "cross_fatigue", 0.0, 1e6, &s->weights.cross_fatigue);
    config_get_double(errs, w, wp, "optout", 0.0, 1e6, &s->weights.optout);
    json_t *cc = config_get_object(errs, w, wp, "channel_cost");
    if (cc != NULL) {
        char cp[160];
        config_path_join(cp, sizeof cp, wp, "channel_cost");
        const char *name;
        json_t *v;
        json_object_foreach(cc, name, v) {
            char kp[200];
            config_path_join(kp, sizeof kp, cp, name);
            int c = config_channel_index(cfg, name, strlen(name));
            double x;
            if (c < 0)
                config_errors_add(errs, kp, "is not a configured channel");
            else if (!config_json_number(v, &x) || !(x >= 0) || !isfinite(x))
                config_errors_add(errs, kp, "must be a number >= 0 (a multiplier of message_cost)");
            else
                s->weights.channel_cost[c] = x;
        }
    }
}

static void parse_priors(config_errors_t *errs, json_t *so, const char *path,
                         const config_t *cfg, slow_config_t *s)
{
    char pp[128];
    config_path_join(pp, sizeof pp, path, "priors");
    json_t *p = config_get_object(errs, so, path, "priors");
    if (p == NULL)
        return;
    config_check_known(errs, p, pp, priors_keys);
    slow_priors_t *pr = &s->priors;
    config_get_double(errs, p, pp, "fatigue_from_dismiss", 0.0, 1.0, &pr->fatigue_from_dismiss);
    config_get_double(errs, p, pp, "responsiveness_strength", 1e-6, 1e6,
                      &pr->responsiveness_strength);
    config_get_double(errs, p, pp, "visit_rate", 0.0, 1e3, &pr->visit_rate);
    config_get_double(errs, p, pp, "visit_rate_strength", 1e-6, 1e6, &pr->visit_rate_strength);
    config_get_double(errs, p, pp, "visits_per_open", 0.0, 1e3, &pr->visits_per_open);
    config_get_double(errs, p, pp, "visits_per_open_strength", 1e-6, 1e6,
                      &pr->visits_per_open_strength);
    config_get_double(errs, p, pp, "attribution_window_s", 1.0, 30.0 * 86400,
                      &pr->attribution_window_s);
    char cp[160];
    config_path_join(cp, sizeof cp, pp, "channels");
    json_t *chans = config_get_object(errs, p, pp, "channels");
    if (chans == NULL)
        return;
    const char *name;
    json_t *o;
    json_object_foreach(chans, name, o) {
        char kp[200];
        config_path_join(kp, sizeof kp, cp, name);
        int c = config_channel_index(cfg, name, strlen(name));
        if (c < 0) {
            config_errors_add(errs, kp, "is not a configured channel");
            continue;
        }
        if (!json_is_object(o)) {
            config_errors_add(errs, kp, "must be an object");
            continue;
        }
        config_check_known(errs, o, kp, channel_prior_keys);
        slow_channel_prior_t *cpr = &pr->channel[c];
        config_get_double(errs, o, kp, "open_rate", 0.0, 1.0, &cpr->open_rate);
        config_get_double(errs, o, kp, "dismiss_rate", 0.0, 1.0, &cpr->dismiss_rate);
        config_get_double(errs, o, kp, "unsub_rate", 0.0, 1.0, &cpr->unsub_rate);
        config_get_double(errs, o, kp, "fatigue", 0.0, 100.0, &cpr->fatigue);
        config_get_double(errs, o, kp, "open_strength", 1e-6, 1e9, &cpr->open_strength);
        config_get_double(errs, o, kp, "dismiss_strength", 1e-6, 1e9, &cpr->dismiss_strength);
        config_get_double(errs, o, kp, "unsub_strength", 1e-6, 1e9, &cpr->unsub_strength);
    }
}

/* Every action and default per-week value within slow.max_per_week. */
static void check_max_per_week(config_errors_t *errs, const char *path, const config_t *cfg,
                               const slow_config_t *s)
{
    char kp[192];
    for (int k = 0; k < s->grid.n_channels; k++) {
        int c = s->grid.channel[k];
        double top = s->grid.values[k][s->grid.n_values[k] - 1]; /* sorted */
        if (top > s->max_per_week) {
            config_path_join(kp, sizeof kp, path, "actions");
            config_errors_add(errs, kp, "%s: %g messages per week is above slow.max_per_week (%g)",
                              cfg->channels[c], top, s->max_per_week);
        }
        if ((s->default_mask & (1u << c)) && s->default_per_week[c] > s->max_per_week) {
            char dp[160];
            config_path_join(dp, sizeof dp, path, "default_plan");
            config_path_join(kp, sizeof kp, dp, cfg->channels[c]);
            config_errors_add(errs, kp, "%g messages per week is above slow.max_per_week (%g)",
                              s->default_per_week[c], s->max_per_week);
        }
    }
}

static void parse_slow(config_errors_t *errs, json_t *so, const char *path, const config_t *cfg,
                       slow_config_t *s)
{
    config_check_known(errs, so, path, slow_keys);
    if (json_object_get(so, "max_per_week") != NULL) {
        if (strcmp(path, "slow") != 0) {
            char kp[192];
            config_path_join(kp, sizeof kp, path, "max_per_week");
            config_errors_add(errs, kp, "can only be set in the base slow section: stored "
                                        "plans of every arm are read against it");
        } else {
            config_get_double(errs, so, path, "max_per_week", 1.0, STORED_PER_WEEK_LIMIT,
                              &s->max_per_week);
        }
    }
    parse_actions(errs, so, path, cfg, s);
    parse_default_plan(errs, so, path, cfg, s);
    parse_weights(errs, so, path, cfg, s);
    parse_priors(errs, so, path, cfg, s);
    char err[200];
    if (slow_weights_check(&s->weights, err, sizeof err) != 0)
        config_errors_add(errs, path, "weights: %s", err);
    if (slow_priors_check(&s->priors, cfg->n_channels, err, sizeof err) != 0)
        config_errors_add(errs, path, "priors: %s", err);
    check_max_per_week(errs, path, cfg, s);
}

/* ------------------------------------------------------------------ */
/* experiments.*                                                      */

/* Turns an arm's {"fast.ranker.push.score": 2, ...} into the nested object
 * {"ranker": {"push": {"score": 2}}} that the section parser reads, so an
 * override is validated exactly like the same key in the base config. */
static json_t *nest_overrides(config_errors_t *errs, json_t *set, const char *path,
                              const char *layer)
{
    json_t *nested = json_object();
    size_t ll = strlen(layer);
    const char *key;
    json_t *value;
    json_object_foreach(set, key, value) {
        char kp[256];
        config_path_join(kp, sizeof kp, path, key);
        if (strncmp(key, layer, ll) != 0 || key[ll] != '.' || key[ll + 1] == '\0') {
            config_errors_add(errs, kp, "a %s arm may only set %s.* keys", layer, layer);
            continue;
        }
        json_t *node = nested;
        char part[128];
        const char *p = key + ll + 1;
        for (;;) {
            const char *dot = strchr(p, '.');
            size_t n = dot ? (size_t)(dot - p) : strlen(p);
            if (n == 0 || n >= sizeof part) {
                config_errors_add(errs, kp, "is not a valid key path");
                break;
            }
            memcpy(part, p, n);
            part[n] = '\0';
            if (dot == NULL) {
                json_object_set(node, part, value);
                break;
            }
            json_t *child = json_object_get(node, part);
            if (!json_is_object(child)) {
                child = json_object();
                json_object_set_new(node, part, child);
            }
            node = child;
            p = dot + 1;
        }
    }
    return nested;
}

/* Reads one layer's salt and arms; returns the arms' "set" objects (nested)
 * in `sets`, or 0 arms on error. */
static int parse_layer(config_errors_t *errs, json_t *lo, const char *path, const char *layer,
                       experiment_layer_t *out, json_t **sets)
{
    config_check_known(errs, lo, path, layer_keys);
    if (!config_get_string(errs, lo, path, "salt", out->salt, sizeof out->salt, false, false)) {
        if (json_object_get(lo, "salt") == NULL) {
            char kp[160];
            config_errors_add(errs, config_path_join(kp, sizeof kp, path, "salt"),
                              "is required: it makes the layer's assignment independent");
        }
        return 0;
    }
    char ap[160];
    config_path_join(ap, sizeof ap, path, "arms");
    json_t *arms = json_object_get(lo, "arms");
    if (arms == NULL)
        return 0;
    if (!json_is_array(arms) || json_array_size(arms) > EXPERIMENT_MAX_ARMS) {
        config_errors_add(errs, ap, "must be an array of at most %d arms", EXPERIMENT_MAX_ARMS);
        return 0;
    }
    double total = 0.0;
    int n = 0;
    size_t i;
    json_t *arm;
    bool ok = true;
    json_array_foreach(arms, i, arm) {
        char kp[192];
        snprintf(kp, sizeof kp, "%s[%zu]", ap, i);
        if (!json_is_object(arm)) {
            config_errors_add(errs, kp, "must be {\"name\", \"share\", \"set\"}");
            ok = false;
            continue;
        }
        config_check_known(errs, arm, kp, arm_keys);
        char name[EXPERIMENT_NAME_MAX] = "";
        double share = -1;
        if (!config_get_string(errs, arm, kp, "name", name, sizeof name, false, false) ||
            strcmp(name, "control") == 0) {
            char np[220];
            config_errors_add(errs, config_path_join(np, sizeof np, kp, "name"),
                              "is required, and \"control\" is reserved");
            ok = false;
        }
        for (int k = 0; k < n; k++)
            if (strcmp(out->names[k], name) == 0) {
                config_errors_add(errs, kp, "arm name \"%s\" is used twice", name);
                ok = false;
            }
        if (!config_get_double(errs, arm, kp, "share", 0.0, 1.0, &share) || share <= 0) {
            char sp[220];
            config_errors_add(errs, config_path_join(sp, sizeof sp, kp, "share"),
                              "must be a number in (0, 1]");
            ok = false;
        }
        json_t *set = json_object_get(arm, "set");
        char sp[220];
        config_path_join(sp, sizeof sp, kp, "set");
        if (set != NULL && !json_is_object(set)) {
            config_errors_add(errs, sp, "must be an object of \"%s.*\" keys", layer);
            ok = false;
            continue;
        }
        if (!ok)
            continue;
        snprintf(out->names[n], sizeof out->names[n], "%s", name);
        out->shares[n] = share;
        total += share;
        sets[n] = set ? nest_overrides(errs, set, sp, layer) : json_object();
        n++;
    }
    if (total > 1.0 + 1e-9) {
        config_errors_add(errs, ap, "shares sum to %g; they must sum to at most 1", total);
        ok = false;
    }
    if (!ok) {
        for (int k = 0; k < n; k++)
            json_decref(sets[k]);
        return 0;
    }
    out->n_arms = n;
    return n;
}

/* A channel the base plans but an arm's grid leaves out would be unplanned
 * for the arm's members, and an unplanned channel is not paced at all: its
 * plans would say {email: 0} and push would go at every opportunity. */
static void check_arm_channels(config_errors_t *errs, const char *path, const config_t *cfg,
                               const slow_config_t *base, const slow_config_t *arm)
{
    uint32_t left_out = base->grid.planned_mask & ~arm->grid.planned_mask;
    if (left_out == 0)
        return;
    char kp[192];
    config_path_join(kp, sizeof kp, path, "actions");
    for (int c = 0; c < cfg->n_channels; c++)
        if (left_out & (1u << c))
            config_errors_add(errs, kp, "leaves out %s, which slow.actions plans: the arm's "
                                        "members would get it unpaced (give it a list, e.g. [0])",
                              cfg->channels[c]);
}

static void parse_experiments(config_errors_t *errs, json_t *root, const config_t *cfg,
                              policy_config_t *pc)
{
    json_t *ex = config_get_object(errs, root, "", "experiments");
    if (ex == NULL)
        return;
    config_check_known(errs, ex, "experiments", experiments_keys);
    json_t *sets[EXPERIMENT_MAX_ARMS];
    json_t *lo = config_get_object(errs, ex, "experiments", "fast");
    int n = lo ? parse_layer(errs, lo, "experiments.fast", "fast", &pc->fast_layer, sets) : 0;
    if (n > 0) {
        pc->fast_arms = calloc((size_t)n, sizeof *pc->fast_arms);
        for (int i = 0; i < n; i++) {
            char kp[220];
            snprintf(kp, sizeof kp, "experiments.fast.arms[%d].set.fast", i);
            if (pc->fast_arms != NULL) {
                pc->fast_arms[i] = pc->fast;
                parse_fast(errs, sets[i], kp, cfg, &pc->fast_arms[i]);
            }
            json_decref(sets[i]);
        }
        if (pc->fast_arms == NULL)
            config_errors_add(errs, "experiments.fast", "out of memory");
    }
    lo = config_get_object(errs, ex, "experiments", "slow");
    n = lo ? parse_layer(errs, lo, "experiments.slow", "slow", &pc->slow_layer, sets) : 0;
    if (n > 0) {
        pc->slow_arms = calloc((size_t)n, sizeof *pc->slow_arms);
        for (int i = 0; i < n; i++) {
            char kp[220];
            snprintf(kp, sizeof kp, "experiments.slow.arms[%d].set.slow", i);
            if (pc->slow_arms != NULL) {
                pc->slow_arms[i] = pc->slow;
                parse_slow(errs, sets[i], kp, cfg, &pc->slow_arms[i]);
                check_arm_channels(errs, kp, cfg, &pc->slow, &pc->slow_arms[i]);
            }
            json_decref(sets[i]);
        }
        if (pc->slow_arms == NULL)
            config_errors_add(errs, "experiments.slow", "out of memory");
    }
    if (pc->fast_layer.salt[0] != '\0' && strcmp(pc->fast_layer.salt, pc->slow_layer.salt) == 0)
        config_errors_add(errs, "experiments", "the slow and fast layers need different salts, "
                          "or a member's arm in one layer would predict its arm in the other");
}

/* ------------------------------------------------------------------ */

void policy_config_parse(config_errors_t *errs, json_t *root, const config_t *cfg,
                         policy_config_t *pc)
{
    slow_defaults(&pc->slow, cfg);
    json_t *fo = config_get_object(errs, root, "", "fast");
    if (fo != NULL)
        parse_fast(errs, fo, "fast", cfg, &pc->fast);
    json_t *so = config_get_object(errs, root, "", "slow");
    if (so != NULL)
        parse_slow(errs, so, "slow", cfg, &pc->slow);
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
    parse_experiments(errs, root, cfg, pc);
}

void policy_config_free(policy_config_t *pc)
{
    free(pc->fast_arms);
    free(pc->slow_arms);
    pc->fast_arms = NULL;
    pc->slow_arms = NULL;
}
