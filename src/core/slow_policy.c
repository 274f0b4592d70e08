/*
 * slow_policy.c - features to plan for one member (see slow_policy.h).
 *
 * The raw features are copied before decaying so the caller's read buffer
 * stays as Redis returned it; the copy is a few hundred bytes on the stack.
 */
#include "notifd/core/slow_policy.h"

int slow_plan_member_ex(const slow_weights_t *w, const slow_priors_t *p,
                        const action_grid_t *g, const member_features_t *raw,
                        int64_t now, double half_life_s, plan_t *out,
                        member_estimate_t *estimate_out)
{
    if (g->n_actions < 1)
        return -1;
    member_features_t f = *raw;
    features_decay_to(&f, now, half_life_s);

    member_estimate_t local;
    member_estimate_t *e = estimate_out != NULL ? estimate_out : &local;
    estimate_member(e, &f, p, now, half_life_s);

    int action = utility_argmax(w, e, g, NULL);
    action_grid_fill_plan(g, action, out);
    return action;
}

int slow_plan_member(const slow_weights_t *w, const slow_priors_t *p,
                     const action_grid_t *g, const member_features_t *raw,
                     int64_t now, double half_life_s, plan_t *out)
{
    return slow_plan_member_ex(w, p, g, raw, now, half_life_s, out, NULL);
}
