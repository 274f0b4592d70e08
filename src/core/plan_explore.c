/*
 * plan_explore.c - neighbouring actions and the exploring choice (see
 * plan_explore.h).
 */
#include "notifd/core/plan_explore.h"

#include <math.h>
#include <string.h>

#include "notifd/lib/hash.h"
#include "notifd/lib/rng.h"

/* Action index of `action` with planned channel k's value index moved to
 * `vi`: the mixed-radix digits of the others stay. */
static int with_value_index(const action_grid_t *g, int action, int k, int vi)
{
    int index = 0;
    for (int j = 0; j < g->n_channels; j++) {
        int digit = j == k ? vi : g->value_index[action][j];
        index = index * g->n_values[j] + digit;
    }
    return index;
}

int plan_explore_neighbours(const action_grid_t *g, int action, const double *utilities,
                            int *out)
{
    if (action < 0 || action >= g->n_actions)
        return 0;
    int n = 0;
    for (int k = 0; k < g->n_channels; k++) {
        int vi = g->value_index[action][k];
        for (int step = -1; step <= 1; step += 2) {
            int to = vi + step;
            if (to < 0 || to >= g->n_values[k])
                continue;
            int a = with_value_index(g, action, k, to);
            if (utilities != NULL && !(utilities[a] > -INFINITY))
                continue; /* sends on an opted-out channel, or not a number */
            out[n++] = a;
        }
    }
    return n;
}

void plan_explore_choose(const action_grid_t *g, int greedy, const double *utilities,
                         double explore_prob, double u_explore, double u_pick,
                         plan_choice_t *out)
{
    int nb[PLAN_EXPLORE_MAX_NEIGHBOURS];
    int k = plan_explore_neighbours(g, greedy, utilities, nb);
    *out = (plan_choice_t){.action = greedy, .greedy = greedy, .propensity = 1.0,
                           .neighbours = k};
    if (!(explore_prob > 0.0) || k == 0)
        return;
    if (u_explore < explore_prob) {
        int j = (int)(u_pick * k);
        if (j >= k)
            j = k - 1; /* u_pick rounding up to 1 */
        if (j < 0)
            j = 0;
        out->action = nb[j];
        out->propensity = explore_prob / k;
    } else {
        out->propensity = 1.0 - explore_prob;
    }
}

void plan_explore_draws(uint64_t seed, const char *member, size_t member_len, int64_t as_of,
                        double *u_explore, double *u_pick)
{
    /* A stream apart from the fast policy's (rng_seed_decision): the same
     * seed must not tie a member's plan draw to its decisions' coins. */
    uint64_t h = hash_bytes(seed ^ 0x706c616e2d657870ull /* "plan-exp" */, member, member_len);
    uint64_t t = (uint64_t)as_of;
    h = hash_bytes(h, &t, sizeof t);
    rng_t rng;
    rng_seed(&rng, h);
    *u_explore = rng_next_unit(&rng);
    *u_pick = rng_next_unit(&rng);
}
