/*
 * events.h - the decision-event sink: every decision and feedback, as one
 * JSON object, delivered at least once to events.url in NDJSON batches, and
 * kept in events.spool_dir while the endpoint cannot take them.
 *
 * The decide and feedback paths call events_publish() and never wait: the
 * event is serialised, stamped and appended to an in-memory queue; a
 * dedicated thread (events.c) batches, POSTs, retries, spools and replays.
 * The schema, transport and failure behaviour are in docs/events.md.
 *
 * Invariants:
 * - events_publish() never blocks on the network or the disk; it only takes
 *   a mutex that the worker holds for pointer swaps.
 * - Every event carries an "event_id" that is unique and the same on every
 *   redelivery (it is assigned once, at publish), so receivers deduplicate.
 * - An event is lost only when both the in-memory queue (events.queue_max
 *   events, events.queue_max_bytes bytes) and the spool
 *   (events.spool_max_bytes, or a failing disk) are full, or when it alone
 *   is larger than events.queue_max_bytes; it is then counted (dropped) and
 *   logged.
 * - Memory holds at most events.queue_max_bytes of events, plus one batch
 *   being rendered (an eighth of that, or one larger event) and one spool
 *   segment being replayed (at most 4 MiB + events.queue_max_bytes; a
 *   larger one is quarantined unread).
 *
 * All functions run on the loop thread and accept an app whose sink is NULL
 * (not started, or already stopped): publish then just frees the event.
 */
#ifndef NOTIFD_EVENTS_H
#define NOTIFD_EVENTS_H

#include <jansson.h>

#include "notifd/app.h"

/* Starts the sink from app->config: opens the spool (and so replays any
 * spool left by a previous run) when events.url is set, and starts the
 * worker thread. 0, or -1 after logging why (e.g. the spool directory
 * cannot be created). Sets app->events. */
int events_start(app_t *app);

/* A new config snapshot is about to be installed: url, batch_max, flush_ms,
 * timeout_ms, queue_max, queue_max_bytes, spool_max_bytes, fsync and the
 * retry backoff take
 * effect at once; a changed spool_dir at the next restart. */
void events_apply_config(app_t *app, const config_t *next);

/* Queues one event. Steals the reference to `event`. Adds "event_id" (32
 * hex digits) if absent and "version" (the notifd version) if absent. When
 * events.url is null or "", the event is dropped and counted as disabled. */
void events_publish(app_t *app, json_t *event);

/* Stops the sink (SIGTERM). When the endpoint is up and nothing is waiting
 * on disk, the queue is POSTed within min(events.timeout_ms, half the
 * shutdown grace); whatever is not delivered by then is spooled. `done(arg)`
 * runs on the loop thread when the worker has finished and app->events is
 * freed (NULL).
 *
 * `done == NULL` means the caller cannot wait (the grace period is over):
 * the queue is spooled without trying the endpoint, and an in-flight
 * request is abandoned (its batch spooled too). A second call never calls
 * `done` twice; a NULL call after a non-NULL one only hurries the first. */
void events_stop(app_t *app, void (*done)(void *arg), void *arg);

/* Adds "events": {queued, sent, retried, spooled, dead_lettered, dropped,
 * disabled, queue_depth, queue_bytes, spool_bytes, spool_segments,
 * spool_full, endpoint} to a stats
 * body. The same counters go to the metrics registry as they happen. */
void events_stats(app_t *app, json_t *obj);

#endif
