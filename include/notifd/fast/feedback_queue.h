/*
 * feedback_queue.h - feedback that Redis cannot take now (not ready, a
 * dropped connection, an outage error such as OOM) waits here and is
 * applied, in the order it was accepted, when Redis is back: in memory
 * (feedback.queue_max events), spilled to a bounded, fsync'd spool
 * (feedback.spool_dir, the same segment files as the event sink's, spool.h)
 * while Redis stays away, and on SIGTERM. Details: docs/feedback-queue.md.
 *
 * Invariants:
 * - Every queued event has an event_id (the producer's, or a generated
 *   "q:<run>:<n>"), so the feedback script applies it once however many
 *   times a replay sends it (a stop or an outage mid-replay resends).
 * - Order: the spool only ever holds events older than those in memory,
 *   replay takes the spool first, and while anything waits (or is being
 *   replayed) new feedback joins the queue instead of going to Redis.
 * - An event is refused (the `unavailable` answer) only when memory is full
 *   and the spool cannot take it (feedback.spool_max_bytes, or a failing
 *   disk).
 *
 * Everything runs on the loop thread; every function accepts an app whose
 * queue is NULL (not started or stopped).
 */
#ifndef NOTIFD_FEEDBACK_QUEUE_H
#define NOTIFD_FEEDBACK_QUEUE_H

#include <jansson.h>
#include <stdbool.h>

#include "notifd/app.h"
#include "notifd/fast/feedback.h"

/* Opens feedback.spool_dir (creating it; what a previous run left there is
 * replayed once Redis is ready) and starts the replay timer. 0, or -1
 * after logging why. Sets app->feedback_queue. */
int feedback_queue_start(app_t *app);

/* True while events wait or are being replayed: new feedback must then be
 * queued too, to keep the order. */
bool feedback_queue_busy(app_t *app);

/* Queues a copy of `f`. 0, or -1 with the client-facing reason in *why
 * (memory and spool full). */
int feedback_queue_put(app_t *app, const config_t *cfg, const feedback_fields_t *f,
                       const char **why);

/* A fresh generated id ("q:<run>:<n>") into `out` (FEEDBACK_QUEUED_ID_MAX
 * bytes); false when the queue is not running. */
bool feedback_queue_live_id(app_t *app, char *out, size_t cap);

/* SIGTERM, after the store is closed: what is in memory goes to the spool
 * (what cannot is logged with its count), and the queue is freed. */
void feedback_queue_stop(app_t *app);

/* Adds "feedback_queue": {queued, replayed, duplicates, spooled,
 * dead_lettered, refused, queue_depth, spool_bytes, spool_segments,
 * replaying} to a stats body. */
void feedback_queue_stats(app_t *app, json_t *obj);

#endif
