/*
 * config_policy.h - the policy half of config loading (config_policy.c):
 * fast.*, slow.*, features.* and experiment arms, parsed into the snapshot's
 * policy_config_t. config.c calls these; nothing else does.
 */
#ifndef NOTIFD_CONFIG_POLICY_H
#define NOTIFD_CONFIG_POLICY_H

#include <jansson.h>

#include "notifd/config/config.h"
#include "notifd/config/config_reader.h"

/* Every field at its default. */
void policy_config_defaults(policy_config_t *pc);
/* Overrides what `root` sets; every problem goes to `errs` with its key path.
 * `cfg` gives the channels (parsed before). */
void policy_config_parse(config_errors_t *errs, json_t *root, const config_t *cfg,
                         policy_config_t *pc);
void policy_config_free(policy_config_t *pc);

#endif
