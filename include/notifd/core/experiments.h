/*
 * experiments.h - assigning members to experiment arms, one layer at a time.
 *
 * There are two independent layers, slow (the planner's parameters) and
 * fast (the decide path's), each with its own salt and arms. A member's arm
 * in a layer is a pure function of (salt, member): stable across restarts,
 * reloads and instances, and, because the salts differ, independent of the
 * member's arm in the other layer. Members outside every arm's share are in
 * "control" and get the base config.
 */
#ifndef NOTIFD_EXPERIMENTS_H
#define NOTIFD_EXPERIMENTS_H

#include <stdbool.h>
#include <stddef.h>

#define EXPERIMENT_MAX_ARMS 16
#define EXPERIMENT_NAME_MAX 32
#define EXPERIMENT_SALT_MAX 64

/* The member's position in [0, 1) for a layer's salt. */
double experiments_position(const char *salt, const char *member, size_t member_len);

/* Index of the arm whose cumulative share interval holds the position, or
 * -1 for control. shares[] sum to at most 1. */
int experiments_assign(const char *salt, const double *shares, int n_arms, const char *member,
                       size_t member_len);

/* Whether the member is in the permanent holdout (experiments.holdout_share
 * under experiments.holdout_salt): position < share. Its own salt keeps it
 * independent of both layers' arms; raising the share only adds members,
 * and a reload with the same salt and share keeps every member where it was. */
bool experiments_in_holdout(const char *salt, double share, const char *member,
                            size_t member_len);

#endif
