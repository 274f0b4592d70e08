/*
 * ops_policy.h - the policy ops of the producer protocol: decide (decide.c),
 * feedback and plan (feedback.c), replan and planner_run (planner_ops.c),
 * explain (explain.c: what a decide would consider, recording nothing).
 */
#ifndef NOTIFD_OPS_POLICY_H
#define NOTIFD_OPS_POLICY_H

#include "notifd/ops.h"
#include "notifd/core/plan.h"
#include "notifd/fast/request_check.h"

void op_decide(request_t *req);
void op_feedback(request_t *req);
void op_plan(request_t *req);
void op_replan(request_t *req);
void op_planner_run(request_t *req);
void op_explain(request_t *req);

/* ts from the request or the wall clock (see ops_get_ts_at in request.h). */
bool ops_get_ts(const json_t *root, const config_t *cfg, int64_t *ts, const char **why);

/* A plan as answers show it: version, source, per_week of every channel it
 * holds, and `defaulted` when channels came from the default plan
 * (decide_answer.c; decide, plan and replan answer with it). */
json_t *decide_plan_json(const config_t *cfg, const plan_t *plan);

#endif
