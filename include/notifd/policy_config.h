/*
 * policy_config.h - the policy part of the configuration (fast.*, slow.*,
 * features.*), parsed by config_policy.c into the parameter structs of the
 * pure policy modules. Filled in by the fast- and slow-policy work.
 */
#ifndef NOTIFD_POLICY_CONFIG_H
#define NOTIFD_POLICY_CONFIG_H

typedef struct policy_config {
    int reserved;
} policy_config_t;

#endif
