/*
 * actions.h - the slow policy's action grid (config key slow.actions).
 *
 * An action is a weekly plan: a number of messages per week for every
 * *planned* channel (push and email by default; in_app is not planned). Each
 * planned channel has a sorted list of allowed per-week values, and the grid
 * is their cartesian product: push in {0,0.5,1,2,3,4,5,7,10,14} x email in
 * {0,0.5,1,2,3,4,5,7} = 80 actions by default.
 *
 * Action indices are mixed-radix numbers with the first planned channel most
 * significant: action = i_0 * n_1 * n_2 ... + i_1 * n_2 ... + i_last, where i_k
 * is the index of the value on planned channel k. Index 0 is the zero action.
 * Plans in Redis store this index; they also store the per-week values, and
 * action_grid_find() maps those back, so a grid change is detected.
 *
 * Invariants of a built grid (action_grid_build() refuses anything else):
 * - 1 <= n_channels <= ACTION_GRID_MAX_CHANNELS distinct configured channel
 *   indices, each < NOTIFD_MAX_CHANNELS;
 * - every channel's values are finite, start at 0 (a member must be able to
 *   get nothing: opted out, or messages cost more than they bring), are
 *   strictly increasing and at most ACTION_GRID_MAX_PER_WEEK;
 * - the product of the value counts is <= ACTION_GRID_MAX_ACTIONS.
 * A built grid is immutable plain data: share it read-only between threads.
 */
#ifndef NOTIFD_ACTIONS_H
#define NOTIFD_ACTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "notifd/core/types.h"

#define ACTION_GRID_MAX_ACTIONS 1024
#define ACTION_GRID_MAX_CHANNELS 4
#define ACTION_GRID_MAX_VALUES 32
#define ACTION_GRID_MAX_PER_WEEK 1000.0

/* One planned channel as the config describes it. */
typedef struct action_channel_spec {
    int channel;          /* configured channel index */
    const char *name;     /* for error messages and logs; may be NULL */
    const double *values; /* allowed messages per week */
    int n_values;
} action_channel_spec_t;

typedef struct action_grid {
    int n_channels; /* planned channels */
    int n_actions;
    uint32_t planned_mask; /* bit c set: configured channel c is planned */
    int channel[ACTION_GRID_MAX_CHANNELS]; /* configured index of planned k */
    char name[ACTION_GRID_MAX_CHANNELS][NOTIFD_CHANNEL_NAME_MAX];
    int n_values[ACTION_GRID_MAX_CHANNELS];
    double values[ACTION_GRID_MAX_CHANNELS][ACTION_GRID_MAX_VALUES];
    /* Precomputed per action so evaluating the grid is a table walk. */
    uint8_t value_index[ACTION_GRID_MAX_ACTIONS][ACTION_GRID_MAX_CHANNELS];
    double total[ACTION_GRID_MAX_ACTIONS]; /* messages per week, all channels */
    /* The action a member without history (features_have_history) is
     * planned: slow.default_plan when the grid holds it, set by the config
     * (-1, as action_grid_build() leaves it: the argmax, like anyone). The
     * priors alone say little, and at a message cost above their first
     * message's worth they would plan a new member nothing until the
     * member's scores reach the planner, a week later. */
    int new_member_action;
} action_grid_t;

/*
 * Builds `g` from one spec per planned channel, in the order given (that order
 * defines the action index). Returns 0, or -1 with a one-line reason in
 * err[errlen] (e.g. "email: values must be strictly increasing (5 after 7)")
 * for the config loader to prefix with its key; `g` is then unusable.
 */
int action_grid_build(action_grid_t *g, const action_channel_spec_t *specs,
                      int n_specs, char *err, size_t errlen);

/* The default per-week values of a channel by name ("push", "email"), or
 * NULL for channels that are not planned by default; *n_values is set. */
const double *action_grid_default_values(const char *channel_name, int *n_values);

/* The default 80-action grid: push x email, push at configured index
 * push_channel and email at email_channel. Returns 0, or -1 if the indices
 * are invalid or equal. */
int action_grid_defaults(action_grid_t *g, int push_channel, int email_channel);

/* Messages per week of `action` on each planned channel: out[k] for planned
 * channel k (out must hold g->n_channels values). */
void action_grid_vector(const action_grid_t *g, int action, double *out);

/* Messages per week of `action` on planned channel k. */
double action_grid_value(const action_grid_t *g, int action, int k);

/* Total messages per week of `action` over all planned channels. */
double action_grid_total(const action_grid_t *g, int action);

/* The action whose per-week values equal per_week[k] for every planned
 * channel k (within 1e-9), or -1 if the grid has none. */
int action_grid_find(const action_grid_t *g, const double *per_week);

/* Sets plan->action, planned_mask and per_week[] (indexed by configured
 * channel; unplanned entries 0) from `action`. Leaves version, source, arm
 * and the times to the caller. */
void action_grid_fill_plan(const action_grid_t *g, int action, plan_t *plan);

#endif
