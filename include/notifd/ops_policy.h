/*
 * ops_policy.h - the policy ops of the producer protocol: decide (decide.c),
 * feedback and plan (feedback.c), replan and planner_run (planner_ops.c).
 */
#ifndef NOTIFD_OPS_POLICY_H
#define NOTIFD_OPS_POLICY_H

#include "notifd/ops.h"

void op_decide(request_t *req);
void op_feedback(request_t *req);
void op_plan(request_t *req);
void op_replan(request_t *req);
void op_planner_run(request_t *req);

/* Shared request validation: a member id is 1..256 bytes with no control
 * characters; returns NULL when valid, else the message to answer with. */
const char *ops_check_member(const json_t *member);
/* ts from the request (integer or number of unix seconds) or now. Returns
 * false, with *why set, when present but invalid. */
bool ops_get_ts(const json_t *root, int64_t *ts, const char **why);

#endif
