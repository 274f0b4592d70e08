/*
 * policy.c - lifecycle of the policy layers (see policy.h).
 */
#include "notifd/policy.h"

int policy_start(app_t *app)
{
    (void)app;
    return 0;
}

void policy_apply_config(app_t *app, const config_t *next)
{
    (void)app;
    (void)next;
}

void policy_stop(app_t *app) { (void)app; }
