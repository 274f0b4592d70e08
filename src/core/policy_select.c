/*
 * policy_select.c - which layer parameters apply to a member: the base
 * config, or the member's experiment arm (see policy_config.h).
 */
#include "notifd/core/policy_config.h"

static int assign(const experiment_layer_t *layer, const char *member, size_t member_len,
                  int *arm_index, const char **arm_name)
{
    int arm = layer->n_arms > 0 ? experiments_assign(layer->salt, layer->shares, layer->n_arms,
                                                     member, member_len)
                                : -1;
    if (arm_index)
        *arm_index = arm;
    if (arm_name)
        *arm_name = arm >= 0 ? layer->names[arm] : "control";
    return arm;
}

const fast_config_t *policy_fast_for(const policy_config_t *pc, const char *member,
                                     size_t member_len, int *arm_index, const char **arm_name)
{
    int arm = assign(&pc->fast_layer, member, member_len, arm_index, arm_name);
    return arm >= 0 ? &pc->fast_arms[arm] : &pc->fast;
}

const slow_config_t *policy_slow_for(const policy_config_t *pc, const char *member,
                                     size_t member_len, int *arm_index, const char **arm_name)
{
    int arm = assign(&pc->slow_layer, member, member_len, arm_index, arm_name);
    return arm >= 0 ? &pc->slow_arms[arm] : &pc->slow;
}

bool policy_in_holdout(const policy_config_t *pc, const char *member, size_t member_len)
{
    return experiments_in_holdout(pc->holdout_salt, pc->holdout_share, member, member_len);
}
