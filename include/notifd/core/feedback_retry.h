/*
 * feedback_retry.h - pure rules of the feedback queue (feedback_queue.c):
 * which failed writes are an outage to wait out, and the event ids queued
 * events get so that applying one twice counts once.
 */
#ifndef NOTIFD_FEEDBACK_RETRY_H
#define NOTIFD_FEEDBACK_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when a Redis error reply says Redis cannot write now (out of memory,
 * a failing disk, loading, busy with a script, a read-only replica, ...):
 * the event is kept and retried. Any other error (a script error on the
 * event's data) would fail again: the event is dead-lettered. `err` is the
 * reply text, which starts with the error code. */
bool feedback_error_is_outage(const char *err, size_t len);

/* The id a queued event without a producer event_id gets:
 * "q:<16 hex digits of the process run>:<sequence>". Unique across runs,
 * so the feedback script's event-id check makes any replay count once. */
#define FEEDBACK_QUEUED_ID_MAX 48
void feedback_queued_event_id(char *out, size_t cap, uint64_t instance, uint64_t seq);

#endif
