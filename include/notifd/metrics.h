/*
 * metrics.h - the daemon's counters and histograms, in the shape Prometheus
 * scrapes (rendered by metrics_render for the admin endpoint and summarised
 * by the stats op).
 *
 * Writers are the loop thread and the planner thread; the reader is the
 * admin HTTP thread. Every cell is a relaxed atomic, so a scrape never
 * blocks a decision and never sees a torn value (a scrape may see one
 * histogram a few observations ahead of another, which Prometheus accepts).
 * All functions accept a NULL registry and do nothing, so modules can be
 * tested without one.
 */
#ifndef NOTIFD_METRICS_H
#define NOTIFD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/app.h"
#include "notifd/protocol.h"

typedef struct metrics metrics_t;

metrics_t *metrics_create(void);
void metrics_free(metrics_t *m);

void metrics_observe_request(void *m, op_id_t op, bool ok, proto_error_t code, double seconds);

#endif
