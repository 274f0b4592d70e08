/*
 * policy.c - lifecycle of the policy layers (see policy.h).
 */
#include "notifd/policy.h"
#include "notifd/fast/deadline_list.h"
#include "notifd/fast/decide_cache.h"
#include "notifd/core/member_overlay.h"
#include "notifd/core/member_cache.h"
#include "notifd/core/plan_cache.h"

#include <stdlib.h>

#include "notifd/log.h"
#include "notifd/slow/planner.h"
#include "notifd/store/redis_scripts.h"

int policy_start(app_t *app)
{
    policy_state_t *ps = calloc(1, sizeof *ps);
    if (ps == NULL)
        return -1;
    ps->script_record = store_register_script(app->store, "decide_record",
                                              redis_script_decide_record);
    ps->script_feedback = store_register_script(app->store, "feedback", redis_script_feedback);
    /* The replan op writes plans with the same script as the planner worker. */
    ps->script_plan_write = store_register_script(app->store, "plan_write",
                                                  planner_script_plan_write);
    if (ps->script_record < 0 || ps->script_feedback < 0 || ps->script_plan_write < 0) {
        free(ps);
        return -1;
    }
    app->policy = ps;
    store_set_invalidation_handler(app->store, decide_cache_on_invalidate, app);
    app->planner = planner_start(app);
    if (app->planner == NULL) {
        app->policy = NULL;
        free(ps);
        return -1;
    }
    return 0;
}

void policy_apply_config(app_t *app, const config_t *next)
{
    (void)next;
    /* A reload may change what a plan means (channels, defaults): start over. */
    policy_forget_plans(app);
}

void policy_forget_plan(app_t *app, const char *member, size_t len)
{
    policy_state_t *ps = app->policy;
    if (ps != NULL)
        plan_cache_forget(ps->plan_cache, member, len);
}

void policy_forget_plans(app_t *app)
{
    policy_state_t *ps = app->policy;
    if (ps != NULL) {
        plan_cache_clear(ps->plan_cache);
        member_cache_clear(ps->member_cache);
    }
}

void policy_forget_member(app_t *app, const char *member, size_t len)
{
    policy_state_t *ps = app->policy;
    if (ps != NULL)
        member_cache_invalidate(ps->member_cache, member, len);
}

void policy_stop(app_t *app)
{
    store_set_invalidation_handler(app->store, NULL, NULL);
    /* Joins the worker thread; a running pass stops between two batches. */
    planner_stop(app->planner);
    app->planner = NULL;
    policy_state_t *ps = app->policy;
    if (ps != NULL) {
        overlay_table_free(ps->overlay); /* empty by now: every decision has answered */
        plan_cache_free(ps->plan_cache);
        member_cache_free(ps->member_cache);
        deadline_list_close(ps->deadlines);
    }
    free(app->policy);
    app->policy = NULL;
}
