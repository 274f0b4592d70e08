/*
 * feedback.h - one feedback event, as the live op (feedback.c) and the
 * feedback queue's replay (feedback_queue.c) both validate, write and
 * follow it up, so a replayed event has exactly the live path's effects.
 */
#ifndef NOTIFD_FEEDBACK_H
#define NOTIFD_FEEDBACK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/app.h"
#include "notifd/store/store.h"

#define FEEDBACK_EVENT_ID_MAX 256

/* A validated event. The strings point into the JSON object it was parsed
 * from, which must outlive it. */
typedef struct feedback_fields {
    const char *member;
    size_t member_len;
    int channel;                    /* configured channel index, -1: none (visit) */
    const char *event;              /* one of the known events */
    int64_t ts;
    char tz[16];                    /* tz_offset_min as text, "": keep the stored one */
    const char *message;            /* NULL: none */
    const char *event_id;           /* NULL: none */
    size_t event_id_len;
    int64_t event_id_ttl_s;         /* how long Redis keeps the id; 0: features.event_id_ttl_s */
} feedback_fields_t;

/* Validates a feedback request (or a queued record: they have the same
 * fields). `ts_window` > 0 bounds ts around `now` (limits.ts_window_s);
 * a replay passes 0, since its ts was checked when it was accepted.
 * Returns false with the client-facing reason in *why. */
bool feedback_parse(const json_t *root, const config_t *cfg, int64_t now, int64_t ts_window,
                    feedback_fields_t *out, const char **why);

/* The feedback script for `f` (store_eval's contract: 0, or -1 when the
 * store is not ready and `fn` will not run). */
int feedback_send(app_t *app, const config_t *cfg, const feedback_fields_t *f,
                  store_reply_fn fn, void *privdata);

/* What an applied event does besides the write, given the script's integer
 * result: a member's first event (1) schedules the member for the planner;
 * any new event (not -1, a repeat of its event_id) publishes a feedback
 * decision event. Returns true when the event was new. */
bool feedback_applied(app_t *app, const config_t *cfg, const feedback_fields_t *f,
                      long long result);

/* The event as a queue record: a feedback request body with the ts
 * resolved and `event_id` set (to `event_id` when `f` has none). */
json_t *feedback_record(const config_t *cfg, const feedback_fields_t *f, const char *event_id);

#endif
