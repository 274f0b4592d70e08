/*
 * policy.h - wiring of the fast policy (decide path state) and the slow
 * policy (planner worker) into the daemon's lifecycle.
 */
#ifndef NOTIFD_POLICY_H
#define NOTIFD_POLICY_H

#include "notifd/app.h"

/* Creates policy state and starts the planner worker; 0 or -1. */
int policy_start(app_t *app);
/* A new config snapshot is about to be installed. */
void policy_apply_config(app_t *app, const config_t *next);
/* Stops the planner worker and frees policy state (loop thread, at stop). */
void policy_stop(app_t *app);

#endif
