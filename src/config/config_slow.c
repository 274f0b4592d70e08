/*
 * config_slow.c - slow.*: the action grid, the default plan, the utility's
 * weights and priors, and the per-week ceiling every planned value must
 * respect (see policy_config.h and docs/slow-policy.md).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_policy_internal.h"
#include "notifd/config/config_reader.h"
#include "notifd/core/plan_explore.h"
#include "notifd/core/score_prior.h"
#include "notifd/core/stored_fields.h"

static const char *const slow_keys[] = {
    "default_plan", "actions", "message_cost", "weights", "priors", "max_per_week",
    "explore_prob", NULL,
};

static const char *const weights_keys[] = {
    "incremental_visit", "open", "fatigue", "cross_fatigue", "optout", "channel_cost", NULL,
};

static const char *const priors_keys[] = {
    "fatigue_from_dismiss", "responsiveness_strength", "visit_rate", "visit_rate_strength", "visits_per_open",
    "visits_per_open_strength", "attribution_window_s", "score_strength", "score_calibration",
    "channels", NULL,
};

static const char *const channel_prior_keys[] = {
    "open_rate", "dismiss_rate", "unsub_rate", "fatigue", "open_strength",
    "dismiss_strength", "unsub_strength", NULL,
};

/* The grid's action for a member without history: the default plan, when
 * the grid holds it (actions.h). */
static void settle_new_member_action(slow_config_t *s)
{
    double v[ACTION_GRID_MAX_CHANNELS];
    for (int k = 0; k < s->grid.n_channels; k++) {
        int c = s->grid.channel[k];
        v[k] = (s->default_mask & (1u << c)) ? s->default_per_week[c] : 0.0;
    }
    s->grid.new_member_action = s->grid.n_channels > 0 ? action_grid_find(&s->grid, v) : -1;
}

void config_slow_defaults(slow_config_t *s, const config_t *cfg)
{
    const char *names[NOTIFD_MAX_CHANNELS];
    for (int c = 0; c < cfg->n_channels; c++)
        names[c] = cfg->channels[c];
    slow_priors_defaults(&s->priors, names, cfg->n_channels);
    slow_weights_defaults(&s->weights);
    s->max_per_week = STORED_PER_WEEK_DEFAULT;
    s->explore_prob = 0.0; /* greedy plans unless an operator asks to learn */
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
    /* The plan a member has before the planner first runs, and the one the
     * planner gives a member without history (settle_new_member_action):
     * half a push a week. */
    s->default_mask = 0;
    for (int k = 0; k < s->grid.n_channels; k++) {
        int c = s->grid.channel[k];
        s->default_mask |= 1u << c;
        s->default_per_week[c] = strcmp(cfg->channels[c], "push") == 0 ? 0.5 : 0.0;
    }
    settle_new_member_action(s);
}

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
    /* 0 turns the score prior off (and the planner's read of the scores). */
    config_get_double(errs, p, pp, "score_strength", 0.0, 1e6, &pr->score_strength);
    char mode[16];
    if (config_get_string(errs, p, pp, "score_calibration", mode, sizeof mode, false, false)) {
        int m = score_calibration_mode_parse(mode);
        char kp[160];
        if (m < 0)
            config_errors_add(errs, config_path_join(kp, sizeof kp, pp, "score_calibration"),
                              "must be \"opens\" or \"prior\"");
        else
            pr->score_calibration = m;
    }
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
static void config_check_max_per_week(config_errors_t *errs, const char *path, const config_t *cfg,
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

void config_parse_slow(config_errors_t *errs, json_t *so, const char *path, const config_t *cfg,
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
    /* Above PLAN_EXPLORE_MAX_PROB the plans would be mostly experiment. */
    config_get_double(errs, so, path, "explore_prob", 0.0, PLAN_EXPLORE_MAX_PROB,
                      &s->explore_prob);
    parse_actions(errs, so, path, cfg, s);
    parse_default_plan(errs, so, path, cfg, s);
    parse_weights(errs, so, path, cfg, s);
    parse_priors(errs, so, path, cfg, s);
    char err[200];
    if (slow_weights_check(&s->weights, err, sizeof err) != 0)
        config_errors_add(errs, path, "weights: %s", err);
    if (slow_priors_check(&s->priors, cfg->n_channels, err, sizeof err) != 0)
        config_errors_add(errs, path, "priors: %s", err);
    config_check_max_per_week(errs, path, cfg, s);
    settle_new_member_action(s);
}
