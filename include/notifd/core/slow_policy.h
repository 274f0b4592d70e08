/*
 * slow_policy.h - the slow policy ("System 2") for one member, end to end.
 *
 * Features as read from `P member:{M}` go in; the member's weekly plan comes
 * out: decay the counts to `now` (features.h), estimate response parameters
 * shrunk toward the priors (estimate.h), and pick the action of greatest
 * utility on the grid (utility.h). This is what the planner worker calls per
 * member; it is pure, allocates nothing and is safe to call from any thread
 * with shared read-only weights, priors and grid.
 */
#ifndef NOTIFD_SLOW_POLICY_H
#define NOTIFD_SLOW_POLICY_H

#include <stdint.h>

#include "notifd/core/actions.h"
#include "notifd/core/estimate.h"
#include "notifd/core/features.h"
#include "notifd/core/plan_explore.h"
#include "notifd/core/types.h"
#include "notifd/core/utility.h"

/*
 * What every plan of one member starts from, and what the explain op shows:
 * decay the features to `now`, estimate (into *estimate_out), and evaluate
 * every action of the grid (into utilities_out, g->n_actions values, if not
 * NULL; utility_parts() takes any of them apart). Returns the greedy action
 * (utility_argmax; for a member without history, features_have_history(),
 * the grid's new_member_action when it has one), or -1 if the grid is empty.
 */
int slow_member_utilities(const slow_weights_t *w, const slow_priors_t *p,
                          const action_grid_t *g, const member_features_t *raw, int64_t now,
                          double half_life_s, member_estimate_t *estimate_out,
                          double *utilities_out);

/*
 * Plans one member as of `now`. Fills out->action, out->planned_mask and
 * out->per_week[] (configured channel index; unplanned channels 0) and leaves
 * version, computed_at, valid_until, source and arm to the caller. If
 * estimate_out is not NULL it receives the member's estimate (for logs and
 * the replan response). Returns the action index (>= 0), or -1 if the grid
 * is empty.
 */
int slow_plan_member_ex(const slow_weights_t *w, const slow_priors_t *p,
                        const action_grid_t *g, const member_features_t *raw,
                        int64_t now, double half_life_s, plan_t *out,
                        member_estimate_t *estimate_out);

/*
 * slow_plan_member_ex() with plan-level exploration (plan_explore.h): with
 * probability explore_prob the plan is a neighbour of the argmax. u_explore
 * and u_pick are the draws (plan_explore_draws()). When explore_prob > 0
 * the plan carries its propensity, K, the greedy plan and the utility gaps
 * from the greedy plan to each neighbour (types.h), so the
 * writer stores them; with explore_prob 0 the result is exactly
 * slow_plan_member_ex()'s. choice_out may be NULL.
 */
int slow_plan_member_explore(const slow_weights_t *w, const slow_priors_t *p,
                             const action_grid_t *g, const member_features_t *raw,
                             int64_t now, double half_life_s, double explore_prob,
                             double u_explore, double u_pick, plan_t *out,
                             member_estimate_t *estimate_out, plan_choice_t *choice_out);

/* slow_plan_member_ex() without the estimate. */
int slow_plan_member(const slow_weights_t *w, const slow_priors_t *p,
                     const action_grid_t *g, const member_features_t *raw,
                     int64_t now, double half_life_s, plan_t *out);

#endif
