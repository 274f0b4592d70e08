/*
 * server.h - the producer-facing TCP server: accept, NDJSON framing,
 * pipelining with in-order replies, back-pressure, idle timeout, drain.
 *
 * Every request line gets a reply slot in arrival order. A handler may fill
 * its slot at once (health) or later from a Redis callback (decide); replies
 * leave strictly in slot order, so a fast request queued behind a slow one
 * waits for it. Replies that become ready in one loop turn go out in one
 * write per connection (flushed from a uv_check handle).
 *
 * Bounds per connection: at most limits.max_pipeline unanswered requests and
 * limits.max_output_bytes of unwritten replies; past either, the connection
 * is not read until the client catches up, so a client that never reads its
 * replies costs bounded memory. A line longer than limits.max_line_bytes is
 * answered with line_too_long and skipped.
 *
 * Slots outlive their connection if it closes while a request waits on
 * Redis: the reply is then dropped and the connection freed with its last
 * slot.
 *
 * End of a connection: once the client's EOF is read (it half-closed, or
 * closed without waiting for its answers), nothing more is read; the
 * requests it sent are answered, and the connection closes as soon as the
 * last reply is written (at once if none is owed). A failed write closes it
 * at once; replies still owed are then dropped as above.
 */
#ifndef NOTIFD_SERVER_H
#define NOTIFD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "notifd/config/config.h"

typedef struct server server_t;
typedef struct conn conn_t;
typedef struct reply_slot reply_slot_t;

/* Called once per complete request line. `line` is valid only during the
 * call. The handler must eventually call server_reply(slot, ...) exactly once. */
typedef void (*server_request_fn)(void *ctx, conn_t *conn, reply_slot_t *slot,
                                  const char *line, size_t len);
/* Called once per over-long line; must reply like a request handler. */
typedef void (*server_too_long_fn)(void *ctx, conn_t *conn, reply_slot_t *slot);

typedef struct server_counters {
    uint64_t accepted;
    uint64_t rejected;          /* over max_connections */
    uint64_t closed_idle;
    uint64_t lines;
    uint64_t lines_too_long;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t read_pauses;       /* back-pressure engaged */
    uint64_t gate_pauses;       /* of those, because the gate was closed (Redis queue full) */
    int64_t connections;        /* open now */
} server_counters_t;

server_t *server_create(uv_loop_t *loop, server_request_fn on_request,
                        server_too_long_fn on_too_long, void *ctx);
/* Binds and listens; returns 0 or a libuv error code. */
int server_listen(server_t *srv, const config_t *cfg);
/* Applies reloadable limits (max line, pipeline, output, idle, connections). */
void server_apply_config(server_t *srv, const config_t *cfg);
/* Stops accepting, stops reading, answers every request already received,
 * flushes, and closes each connection once it is idle. `on_drained` runs
 * when the last connection has closed (maybe at once). */
void server_drain(server_t *srv, void (*on_drained)(void *arg), void *arg);
/* Closes everything now (grace period over) and frees the server once
 * libuv has closed its handles. */
void server_close(server_t *srv);
/* Back-pressure from behind the server: while `closed(arg)` is true no
 * connection's requests are parsed and sockets are not read (the kernel's
 * buffers, then TCP flow control, hold the producers back). Call
 * server_gate_opened() when it turns false. */
void server_set_gate(server_t *srv, bool (*closed)(void *arg), void *arg);
void server_gate_opened(server_t *srv);
const server_counters_t *server_counters(const server_t *srv);

/* Hands a reply (a complete line with its '\n', malloc'd) to the slot; the
 * server owns `data` from now on. */
void server_reply(reply_slot_t *slot, char *data, size_t len);

/* Per-connection state the protocol layer uses. */
bool conn_is_authenticated(const conn_t *conn);
void conn_set_authenticated(conn_t *conn);
/* Closes the connection once the replies queued so far are written. */
void conn_close_after_replies(conn_t *conn);
uint64_t conn_id(const conn_t *conn);

#endif
