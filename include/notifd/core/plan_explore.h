/*
 * plan_explore.h - plan-level exploration: with a small probability the
 * slow policy plans a neighbour of its best action instead of the best.
 *
 * Greedy plans never show what one message more or fewer a week would have
 * done, so nothing can learn the dose-response from them. Exploration logs
 * a known propensity with every plan, which makes the plans an experiment:
 * off-policy estimators (tools/notifd-ope) weight each member-week by
 * target probability / logged propensity.
 *
 * A neighbour of action a moves exactly one planned channel by one step on
 * its grid (up or down), the other channels unchanged: "one more or one
 * fewer per channel" on the grid the planner searches. Neighbours of
 * utility -INFINITY (a channel the member opted out of) are never drawn.
 *
 * With K valid neighbours and explore probability e (slow.explore_prob):
 *   P(greedy)      = 1 - e      (1 when K = 0: there is nothing to try)
 *   P(neighbour j) = e / K
 * The propensities of the greedy action and its neighbours sum to 1.
 * All functions are pure.
 */
#ifndef NOTIFD_PLAN_EXPLORE_H
#define NOTIFD_PLAN_EXPLORE_H

#include <stdint.h>

#include "notifd/core/actions.h"

/* At most one step down and one up per planned channel. */
#define PLAN_EXPLORE_MAX_NEIGHBOURS (2 * ACTION_GRID_MAX_CHANNELS)
_Static_assert(PLAN_EXPLORE_MAX_NEIGHBOURS == NOTIFD_PLAN_MAX_NEIGHBOURS,
               "plan_t holds one utility gap per neighbour");

/* The highest slow.explore_prob the config accepts: above it the plans
 * stop being the policy's and become mostly experiment. */
#define PLAN_EXPLORE_MAX_PROB 0.5

typedef struct plan_choice {
    int action;       /* the action planned */
    int greedy;       /* the argmax it was drawn around */
    double propensity; /* P(action | member) under the exploring policy */
    int neighbours;   /* K: valid neighbours of greedy */
} plan_choice_t;

/* The valid neighbours of `action`, in a fixed order (planned channel k
 * ascending, down before up), into out[] (PLAN_EXPLORE_MAX_NEIGHBOURS).
 * `utilities` (g->n_actions values, as utility_argmax fills them) may be
 * NULL: then every grid neighbour is valid. Returns K. */
int plan_explore_neighbours(const action_grid_t *g, int action, const double *utilities,
                            int *out);

/* Chooses the action to plan. u_explore and u_pick are independent uniform
 * draws in [0, 1): explore iff u_explore < explore_prob, then neighbour
 * floor(u_pick * K). explore_prob <= 0 always gives the greedy action with
 * propensity 1. */
void plan_explore_choose(const action_grid_t *g, int greedy, const double *utilities,
                         double explore_prob, double u_explore, double u_pick,
                         plan_choice_t *out);

/* The two uniform draws for one member's plan at `as_of`: a pure function
 * of (seed, member, as_of), so a replan at the same time redraws the same
 * choice and any instance draws alike. */
void plan_explore_draws(uint64_t seed, const char *member, size_t member_len, int64_t as_of,
                        double *u_explore, double *u_pick);

#endif
