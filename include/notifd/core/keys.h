/*
 * keys.h - names of the Redis keys notifd touches.
 *
 * Every key of one member carries the member id in braces, "P<kind>:{M}",
 * so all of a member's keys share one Redis Cluster hash slot and one Lua
 * script may touch them together. Member ids are binary-safe (any bytes but
 * control characters), which is why keys are built as (pointer, length) and
 * always handed to hiredis in argv form, never formatted into a command.
 */
#ifndef NOTIFD_KEYS_H
#define NOTIFD_KEYS_H

#include <stddef.h>

#define KEY_MAX 1024
#define MEMBER_ID_MAX 256

/* P<kind>:{member}<suffix> into buf (KEY_MAX bytes); returns the length.
 * kind is e.g. "plan", "member", "week", "sent", "idem", "scores". */
size_t key_member(char *buf, const char *prefix, const char *kind, const char *member,
                  size_t member_len, const char *suffix, size_t suffix_len);

/* The hash field "<a><b>" (a channel and a suffix: "push_sent") into buf
 * of cap bytes, cut short like snprintf; returns the length written.
 * Fields are built on every decide, and snprintf's cost showed. */
size_t key_field(char *buf, size_t cap, const char *a, const char *b);

/* P<kind>:<n> for fleet-wide keys (planner schedule partitions, leases). */
size_t key_global(char *buf, const char *prefix, const char *kind, long n);

#endif
