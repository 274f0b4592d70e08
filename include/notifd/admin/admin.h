/*
 * admin.h - the admin HTTP endpoint on `admin_listen`: GET /metrics
 * (Prometheus text format 0.0.4), /healthz and /readyz.
 *
 * libmicrohttpd serves it from its own polling thread, so a slow scraper or
 * a hostile client never stalls the event loop. That thread reads only the
 * metrics registry (atomics); a 250 ms loop timer owned by this module copies
 * the loop-thread state it needs (Redis state, server and store counters,
 * config generation, stopping) into the registry.
 *
 * Bounds: at most 32 connections (8 per client address), 16 KiB of memory
 * per connection (request line and headers past that are refused by
 * libmicrohttpd), 10 s idle timeout; only GET and HEAD are served.
 */
#ifndef NOTIFD_ADMIN_H
#define NOTIFD_ADMIN_H

#include "notifd/app.h"

/* Starts the endpoint on app->config->admin_listen (nothing when admin_listen
 * is null). Returns 0, or -1 after logging why (address unusable, port taken).
 * Loop thread; app->metrics must exist. */
int admin_start(app_t *app);

/* Copies the loop-thread state into the registry now (the timer does it every
 * 250 ms); call after a state change that /readyz should see at once. */
void admin_publish(app_t *app);

/* Stops serving (joins the HTTP thread) and closes the timer; the admin state
 * is freed once libuv has closed the timer. Safe to call twice or when
 * admin_start did nothing. Loop thread. */
void admin_stop(app_t *app);

#endif
