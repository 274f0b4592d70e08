/*
 * config_policy_internal.h - what the policy sections' parsers share:
 * config_policy.c (fast.*, features.*, the entry points), config_slow.c
 * (slow.*) and config_experiments.c (experiment layers and arms, which
 * apply fast.* and slow.* overrides with the same parsers).
 */
#ifndef NOTIFD_CONFIG_POLICY_INTERNAL_H
#define NOTIFD_CONFIG_POLICY_INTERNAL_H

#include <jansson.h>

#include "notifd/config/config.h"
#include "notifd/config/config_policy.h"
#include "notifd/config/config_reader.h"

/* Applies the fast.* keys present in `fo` on top of `f`. */
void config_parse_fast(config_errors_t *errs, json_t *fo, const char *path, const config_t *cfg,
                       fast_config_t *f);
/* slow.*: defaults for the configured channels, then the keys present. */
void config_slow_defaults(slow_config_t *s, const config_t *cfg);
void config_parse_slow(config_errors_t *errs, json_t *so, const char *path, const config_t *cfg,
                       slow_config_t *s);
/* experiments.fast and experiments.slow: layers, arms and their overrides. */
void config_parse_experiments(config_errors_t *errs, json_t *root, const config_t *cfg,
                              policy_config_t *pc);

#endif
