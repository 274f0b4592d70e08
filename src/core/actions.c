/*
 * actions.c - building and indexing the action grid (see actions.h).
 *
 * The grid is validated once when the config is loaded; after that every
 * lookup is a table read. value_index[] and total[] are filled at build time
 * so utility_argmax() walks the grid without dividing action indices.
 */
#include "notifd/lib/errbuf.h"
#include "notifd/core/actions.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Half a message a week is a plan whose send is a chance each week
 * (pacing.h): the member gets one in about every other week, at their best
 * moments, which is what casual members respond to. */
static const double default_push[] = {0, 0.5, 1, 2, 3, 4, 5, 7, 10, 14};
static const double default_email[] = {0, 0.5, 1, 2, 3, 4, 5, 7};

#define N_DEFAULT_PUSH ((int)(sizeof(default_push) / sizeof(default_push[0])))
#define N_DEFAULT_EMAIL ((int)(sizeof(default_email) / sizeof(default_email[0])))


int action_grid_build(action_grid_t *g, const action_channel_spec_t *specs,
                      int n_specs, char *err, size_t errlen)
{
    memset(g, 0, sizeof(*g));
    g->new_member_action = -1;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (specs == NULL || n_specs < 1)
        return errbuf_fail(err, errlen, "at least one planned channel is required");
    if (n_specs > ACTION_GRID_MAX_CHANNELS)
        return errbuf_fail(err, errlen, "at most %d planned channels are supported, got %d",
                    ACTION_GRID_MAX_CHANNELS, n_specs);

    long product = 1;
    for (int k = 0; k < n_specs; k++) {
        const action_channel_spec_t *s = &specs[k];
        char label[NOTIFD_CHANNEL_NAME_MAX + 16];
        if (s->name != NULL)
            snprintf(label, sizeof(label), "%s", s->name);
        else
            snprintf(label, sizeof(label), "planned channel %d", k);

        if (s->channel < 0 || s->channel >= NOTIFD_MAX_CHANNELS)
            return errbuf_fail(err, errlen, "%s: channel index %d out of range", label,
                        s->channel);
        if (g->planned_mask & (1u << s->channel))
            return errbuf_fail(err, errlen, "%s: channel planned twice", label);
        if (s->values == NULL || s->n_values < 1)
            return errbuf_fail(err, errlen, "%s: needs at least one value", label);
        if (s->n_values > ACTION_GRID_MAX_VALUES)
            return errbuf_fail(err, errlen, "%s: at most %d values, got %d", label,
                        ACTION_GRID_MAX_VALUES, s->n_values);
        for (int i = 0; i < s->n_values; i++) {
            double v = s->values[i];
            if (!isfinite(v) || v < 0.0 || v > ACTION_GRID_MAX_PER_WEEK)
                return errbuf_fail(err, errlen, "%s: value %g must be in [0, %g]", label, v,
                            ACTION_GRID_MAX_PER_WEEK);
            if (i == 0 && v != 0.0)
                return errbuf_fail(err, errlen,
                            "%s: the first value must be 0 (a member must be able "
                            "to get no messages), got %g",
                            label, v);
            if (i > 0 && !(v > s->values[i - 1]))
                return errbuf_fail(err, errlen,
                            "%s: values must be strictly increasing (%g after %g)",
                            label, v, s->values[i - 1]);
        }
        product *= s->n_values;
        if (product > ACTION_GRID_MAX_ACTIONS)
            return errbuf_fail(err, errlen, "the grid has more than %d actions",
                        ACTION_GRID_MAX_ACTIONS);

        g->channel[k] = s->channel;
        g->planned_mask |= 1u << s->channel;
        snprintf(g->name[k], sizeof(g->name[k]), "%s", s->name != NULL ? s->name : "");
        g->n_values[k] = s->n_values;
        memcpy(g->values[k], s->values, (size_t)s->n_values * sizeof(double));
    }
    g->n_channels = n_specs;
    g->n_actions = (int)product;

    /* Decode each index once, last channel fastest (see actions.h). */
    for (int a = 0; a < g->n_actions; a++) {
        int rest = a;
        double total = 0.0;
        for (int k = g->n_channels - 1; k >= 0; k--) {
            int i = rest % g->n_values[k];
            rest /= g->n_values[k];
            g->value_index[a][k] = (uint8_t)i;
            total += g->values[k][i];
        }
        g->total[a] = total;
    }
    return 0;
}

const double *action_grid_default_values(const char *channel_name, int *n_values)
{
    if (channel_name != NULL && strcmp(channel_name, "push") == 0) {
        *n_values = N_DEFAULT_PUSH;
        return default_push;
    }
    if (channel_name != NULL && strcmp(channel_name, "email") == 0) {
        *n_values = N_DEFAULT_EMAIL;
        return default_email;
    }
    *n_values = 0;
    return NULL;
}

int action_grid_defaults(action_grid_t *g, int push_channel, int email_channel)
{
    const action_channel_spec_t specs[2] = {
        {push_channel, "push", default_push, N_DEFAULT_PUSH},
        {email_channel, "email", default_email, N_DEFAULT_EMAIL},
    };
    return action_grid_build(g, specs, 2, NULL, 0);
}

void action_grid_vector(const action_grid_t *g, int action, double *out)
{
    for (int k = 0; k < g->n_channels; k++)
        out[k] = g->values[k][g->value_index[action][k]];
}

double action_grid_value(const action_grid_t *g, int action, int k)
{
    return g->values[k][g->value_index[action][k]];
}

double action_grid_total(const action_grid_t *g, int action)
{
    return g->total[action];
}

int action_grid_find(const action_grid_t *g, const double *per_week)
{
    int action = 0;
    for (int k = 0; k < g->n_channels; k++) {
        int found = -1;
        for (int i = 0; i < g->n_values[k]; i++) {
            if (fabs(g->values[k][i] - per_week[k]) <= 1e-9) {
                found = i;
                break;
            }
        }
        if (found < 0)
            return -1;
        action = action * g->n_values[k] + found;
    }
    return action;
}

void action_grid_fill_plan(const action_grid_t *g, int action, plan_t *plan)
{
    plan->action = action;
    plan->planned_mask = g->planned_mask;
    for (int c = 0; c < NOTIFD_MAX_CHANNELS; c++)
        plan->per_week[c] = 0.0;
    for (int k = 0; k < g->n_channels; k++)
        plan->per_week[g->channel[k]] = action_grid_value(g, action, k);
}
