/*
 * config_experiments.c - experiments.fast and experiments.slow: each layer's
 * salt and arms (name, share, the overrides they set), parsed with the same
 * section parsers as the base config, so an arm is checked like the base.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_policy_internal.h"
#include "notifd/config/config_reader.h"
#include "notifd/core/stored_fields.h"

static const char *const experiments_keys[] = {"slow", "fast", "holdout_share", "holdout_salt",
                                                NULL};

static const char *const layer_keys[] = {"salt", "arms", NULL};

static const char *const arm_keys[] = {"name", "share", "set", NULL};

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

/* The permanent holdout: a share of members under a salt of its own. Half
 * the members is the most a holdout may take: beyond that the policy is
 * the experiment's minority. */
static void parse_holdout(config_errors_t *errs, json_t *ex, policy_config_t *pc)
{
    config_get_double(errs, ex, "experiments", "holdout_share", 0.0, 0.5, &pc->holdout_share);
    bool have_salt = config_get_string(errs, ex, "experiments", "holdout_salt", pc->holdout_salt,
                                       sizeof pc->holdout_salt, false, false);
    if (pc->holdout_share > 0.0 && !have_salt && json_object_get(ex, "holdout_salt") == NULL)
        config_errors_add(errs, "experiments.holdout_salt",
                          "is required with holdout_share: it fixes who is held out");
    if (pc->holdout_salt[0] == '\0')
        return;
    if (strcmp(pc->holdout_salt, pc->fast_layer.salt) == 0 ||
        strcmp(pc->holdout_salt, pc->slow_layer.salt) == 0)
        config_errors_add(errs, "experiments.holdout_salt",
                          "must differ from the layers' salts, or the holdout would be a "
                          "slice of an arm instead of a sample of every arm");
}

void config_parse_experiments(config_errors_t *errs, json_t *root, const config_t *cfg,
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
                config_parse_fast(errs, sets[i], kp, cfg, &pc->fast_arms[i]);
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
                config_parse_slow(errs, sets[i], kp, cfg, &pc->slow_arms[i]);
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
    parse_holdout(errs, ex, pc);
}
