/*
 * config_policy.c - the policy sections of the config (fast.*, slow.*,
 * features.*, experiments). Each is parsed into the parameter structs of
 * the pure policy modules.
 */
#include <jansson.h>

#include "notifd/config.h"
#include "notifd/config_reader.h"

void policy_config_defaults(policy_config_t *pc);
void policy_config_parse(config_errors_t *errs, json_t *root, const config_t *cfg,
                         policy_config_t *pc);
void policy_config_free(policy_config_t *pc);

static const char *const no_keys[] = {NULL};

void policy_config_defaults(policy_config_t *pc) { pc->reserved = 0; }

void policy_config_parse(config_errors_t *errs, json_t *root, const config_t *cfg,
                         policy_config_t *pc)
{
    static const char *const sections[] = {"fast", "slow", "features", "experiments"};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        json_t *o = config_get_object(errs, root, "", sections[i]);
        if (o != NULL)
            config_check_known(errs, o, sections[i], no_keys);
    }
}

void policy_config_free(policy_config_t *pc) { (void)pc; }
