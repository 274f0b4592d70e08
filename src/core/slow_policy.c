/*
 * slow_policy.c - features to plan for one member (see slow_policy.h).
 *
 * The raw features are copied before decaying so the caller's read buffer
 * stays as Redis returned it; the copy is a few hundred bytes on the stack.
 */
#include "notifd/core/slow_policy.h"

#include <string.h>

int slow_member_utilities(const slow_weights_t *w, const slow_priors_t *p,
                          const action_grid_t *g, const member_features_t *raw, int64_t now,
                          double half_life_s, member_estimate_t *estimate_out,
                          double *utilities_out)
{
    if (g->n_actions < 1)
        return -1;
    member_features_t f = *raw;
    features_decay_to(&f, now, half_life_s);
    estimate_member(estimate_out, &f, p, now, half_life_s);
    int best = utility_argmax(w, estimate_out, g, utilities_out);
    if (g->new_member_action >= 0 && g->new_member_action < g->n_actions &&
        !features_have_history(&f))
        return g->new_member_action;
    return best;
}

int slow_plan_member_ex(const slow_weights_t *w, const slow_priors_t *p,
                        const action_grid_t *g, const member_features_t *raw,
                        int64_t now, double half_life_s, plan_t *out,
                        member_estimate_t *estimate_out)
{
    member_estimate_t local;
    member_estimate_t *e = estimate_out != NULL ? estimate_out : &local;
    int action = slow_member_utilities(w, p, g, raw, now, half_life_s, e, NULL);
    if (action < 0)
        return -1;
    action_grid_fill_plan(g, action, out);
    return action;
}

int slow_plan_member(const slow_weights_t *w, const slow_priors_t *p,
                     const action_grid_t *g, const member_features_t *raw,
                     int64_t now, double half_life_s, plan_t *out)
{
    return slow_plan_member_ex(w, p, g, raw, now, half_life_s, out, NULL);
}

int slow_plan_member_explore(const slow_weights_t *w, const slow_priors_t *p,
                             const action_grid_t *g, const member_features_t *raw,
                             int64_t now, double half_life_s, double explore_prob,
                             double u_explore, double u_pick, plan_t *out,
                             member_estimate_t *estimate_out, plan_choice_t *choice_out)
{
    if (!(explore_prob > 0.0)) {
        int a = slow_plan_member_ex(w, p, g, raw, now, half_life_s, out, estimate_out);
        if (choice_out != NULL)
            *choice_out = (plan_choice_t){.action = a, .greedy = a, .propensity = 1.0};
        return a;
    }
    member_estimate_t local;
    member_estimate_t *e = estimate_out != NULL ? estimate_out : &local;
    /* The utilities tell which neighbours are allowed (an opted-out
     * channel's are -INFINITY). 8 KiB on the stack at the largest grid. */
    double u[ACTION_GRID_MAX_ACTIONS];
    int greedy = slow_member_utilities(w, p, g, raw, now, half_life_s, e, u);
    if (greedy < 0)
        return -1;
    plan_choice_t choice;
    plan_explore_choose(g, greedy, u, explore_prob, u_explore, u_pick, &choice);

    plan_t greedy_plan;
    memset(&greedy_plan, 0, sizeof greedy_plan);
    action_grid_fill_plan(g, greedy, &greedy_plan);
    action_grid_fill_plan(g, choice.action, out);
    /* K = 0 (every neighbour opted out, or a one-action grid): the greedy
     * plan was certain, which is what a plan without K says (propensity 1). */
    out->explore_neighbours = choice.neighbours;
    out->propensity = choice.propensity;
    memcpy(out->greedy_per_week, greedy_plan.per_week, sizeof out->greedy_per_week);
    int nb[PLAN_EXPLORE_MAX_NEIGHBOURS];
    out->n_gaps = plan_explore_neighbours(g, greedy, u, nb);
    for (int j = 0; j < out->n_gaps; j++)
        out->utility_gap[j] = u[greedy] - u[nb[j]];
    if (choice_out != NULL)
        *choice_out = choice;
    return choice.action;
}
