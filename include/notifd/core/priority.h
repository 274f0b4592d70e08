/*
 * priority.h - a candidate's priority class, the producer's word on how
 * much the policy may hold a message back.
 *
 *   normal         the default: the pacing coin, the caps, quiet hours.
 *   high           bypasses the pacing coin (sends whenever the guardrails
 *                  and the caps allow) and spends the plan's budget.
 *   transactional  a password reset, a security alert: bypasses the coin,
 *                  the caps and quiet hours, and spends no budget. It
 *                  respects a channel opt-out unless
 *                  fast.transactional_respects_optout is false.
 *
 * Dedup applies to every class: no message goes twice. The decision
 * considers only the highest class among the eligible candidates.
 */
#ifndef NOTIFD_PRIORITY_H
#define NOTIFD_PRIORITY_H

#include <stdbool.h>
#include <stddef.h>

/* Ordered: a higher value is a higher class. */
typedef enum message_priority {
    PRIORITY_NORMAL = 0,
    PRIORITY_HIGH = 1,
    PRIORITY_TRANSACTIONAL = 2,
    PRIORITY_COUNT
} message_priority_t;

/* "normal", "high", "transactional". */
const char *message_priority_name(message_priority_t p);

/* The class named by the len bytes at name; false if none is. */
bool message_priority_parse(const char *name, size_t len, message_priority_t *out);

#endif
