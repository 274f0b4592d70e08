/*
 * utility.h - the slow policy's utility and its argmax over the action grid.
 *
 *   U(member, a) = sum_k w_k * Reward_k(member, a) - Cost(a)
 *
 * with, for action a = (n_c) messages per week on planned channel c and
 * N = sum_c n_c (docs/slow-policy.md has the full derivation):
 *
 *   Reward_visits  = sum_c lift * p_c * A(n_c; phi_c)        incremental visits
 *   Reward_opens   = sum_c p_c * A(n_c; phi_c)                opens (awareness)
 *   Reward_fatigue = -(sum_c phi_c n_c^2 / 2 + x * phibar * N^2 / 2)
 *   Reward_optout  = -sum_c h_c * n_c                         expected opt-outs
 *   Cost           = message_cost * sum_c m_c * n_c
 *   A(n; phi)      = (1 - e^(-phi n)) / (1 - e^(-phi))        (= n at phi = 0)
 *
 * where p_c, phi_c, h_c, lift come from estimate_member(), x is
 * cross_fatigue and phibar the mean phi over planned channels.
 *
 * Invariants, which the unit tests check and docs/slow-policy.md proves:
 * - U is concave in each channel's volume, and U(zero action) = 0 exactly;
 * - engagement (p_c, lift) enters only channel c's own term, with increasing
 *   differences in (engagement, n_c); the cross-channel term depends on
 *   volume and fatigue only. Hence, with two planned channels, raising p_c
 *   never lowers n_c, raising h_c never raises n_c, and raising message_cost
 *   never raises the cost-weighted volume (the total volume when all channel
 *   cost multipliers are equal, as by default);
 * - a channel the member opted out of gets 0: actions that send on it have
 *   U = -INFINITY;
 * - ties (within UTILITY_TIE_EPS of the best) go to fewer total messages,
 *   then to the lower action index.
 * All functions are pure and allocate nothing.
 */
#ifndef NOTIFD_UTILITY_H
#define NOTIFD_UTILITY_H

#include <stdbool.h>
#include <stddef.h>

#include "notifd/core/actions.h"
#include "notifd/core/estimate.h"
#include "notifd/core/types.h"

#define UTILITY_TIE_EPS 1e-12

/* Weights of the rewards and the cost (config key slow.weights). The unit of
 * utility is one incremental visit. */
typedef struct slow_weights {
    double incremental_visit; /* per visit an open causes */
    double open;              /* per open, for awareness beyond the visit */
    double fatigue;           /* per unit of fatigue load (see above) */
    double cross_fatigue;     /* x: how much volume on other channels tires */
    double optout;            /* per expected opt-out: a channel's future */
    double message_cost;      /* the universal cost of every message */
    double channel_cost[NOTIFD_MAX_CHANNELS]; /* m_c, by configured index */
} slow_weights_t;

void slow_weights_defaults(slow_weights_t *w);

/* Returns 0 if every weight is finite and >= 0, else -1 with the reason. */
int slow_weights_check(const slow_weights_t *w, char *err, size_t errlen);

/* U(member, action); -INFINITY if the action sends on an opted-out channel. */
double utility_evaluate(const slow_weights_t *w, const member_estimate_t *e,
                        const action_grid_t *g, int action);

/* U(member, action) split into its terms, for the explain op: each term
 * with its sign (rewards >= 0, the rest <= 0), summed over the planned
 * channels. visits + opens + fatigue + cross_fatigue + optout + cost equals
 * total up to rounding; total itself is utility_evaluate()'s value to the
 * last bit (utility_evaluate() is this function's total). On an opted-out
 * channel with n > 0 the total is -INFINITY and the terms are those of the
 * other channels (optout_blocked is set). */
typedef struct utility_parts {
    double total;
    double visits;        /* w_inc * lift * p_c * A(n_c)        incremental visits */
    double opens;         /* w_open * p_c * A(n_c)              awareness */
    double fatigue;       /* -w_fatigue * sum_c phi_c n_c^2 / 2  own-channel fatigue */
    double cross_fatigue; /* -w_fatigue * x * phibar * N^2 / 2   volume across channels */
    double optout;        /* -w_optout * sum_c h_c n_c           expected opt-outs */
    double cost;          /* -message_cost * sum_c m_c n_c       message cost */
    bool optout_blocked;  /* sends on a channel the member opted out of */
} utility_parts_t;

void utility_parts(const slow_weights_t *w, const member_estimate_t *e, const action_grid_t *g,
                   int action, utility_parts_t *out);

/*
 * The action with the greatest utility, ties to fewer total messages then
 * the lower index. If utilities_out is not NULL it receives U of every action
 * (g->n_actions values), identical to utility_evaluate(). Cost: one exp()
 * per planned (channel, value) pair, then a table walk over the grid.
 */
int utility_argmax(const slow_weights_t *w, const member_estimate_t *e,
                   const action_grid_t *g, double *utilities_out);

#endif
