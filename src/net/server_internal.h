/*
 * server_internal.h - what the server's two files share (not an API):
 * server.c (the running server: writing, reading, a connection's lifetime,
 * the listener, limits) and server_drain.c (the stop path: drain, linger,
 * close). The structs behind server.h's opaque types, and the connection
 * steps each file calls in the other. Loop thread only.
 */
#ifndef NOTIFD_SERVER_INTERNAL_H
#define NOTIFD_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "notifd/net/framing.h"
#include "notifd/net/server.h"

struct reply_slot {
    reply_slot_t *next;
    conn_t *conn;
    char *data;
    size_t len;
    bool done;
};

struct conn {
    uv_tcp_t handle;
    server_t *srv;
    conn_t *prev, *next;         /* all connections */
    conn_t *flush_next;          /* connections with replies to write this turn */
    framer_t framer;
    reply_slot_t *head, *tail;   /* unanswered and not-yet-flushed slots, in order */
    int pending;                 /* slots not yet replied */
    int slots;                   /* slots alive (pending or done but unflushed) */
    char *out;                   /* replies ready to write, in order */
    size_t out_len, out_cap;
    size_t bytes_in_flight;      /* handed to uv_write, not completed */
    int writes_in_flight;
    uint64_t id;
    uint64_t last_active_ms;
    bool reading;                /* uv_read_start active */
    bool paused;                 /* over a bound: not reading, not parsing */
    bool flush_queued;
    bool handle_closed;          /* close callback ran */
    bool closing;                /* uv_close called */
    bool draining;               /* close once idle */
    bool close_after_replies;
    bool eof;
    bool final_read;             /* draining: reading what the client sent before the stop */
    bool lingering;              /* stopping: replies sent, FIN sent, discarding until EOF */
    bool shutdown_pending;       /* uv_shutdown callback not yet run */
    uint64_t linger_since_ms;
    uv_shutdown_t shutdown_req;
    bool authenticated;
};

struct server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    bool listening;
    uv_check_t flusher;
    uv_timer_t sweeper;
    uv_timer_t linger_timer;     /* ends lingering connections (server_drain) */
    bool linger_timer_on;
    server_request_fn on_request;
    server_too_long_fn on_too_long;
    void *ctx;
    conn_t *conns;
    conn_t *flush_list;
    uint64_t next_id;
    size_t max_line_bytes;
    int max_connections;
    size_t max_output_bytes;
    int max_pipeline;
    int idle_timeout_s;
    bool draining;
    bool closing;
    int handles_open;
    void (*on_drained)(void *);
    void *drained_arg;
    bool (*gate_closed)(void *);
    void *gate_arg;
    server_counters_t counters;
};

/* server.c */

/* Whether the connection is at its pipeline or output bound. */
bool server_conn_over_bounds(const conn_t *c);
/* Parses and dispatches buffered lines while within bounds (see server.c). */
void server_conn_process(conn_t *c);
/* Frees the connection once its handle is closed and nothing refers to it. */
void server_conn_maybe_free(conn_t *c);
/* Unlinks the connection and closes its handle (idempotent). */
void server_conn_close(conn_t *c);

/* server_drain.c */

/* Ends the connection when it has nothing left to do (EOF, stop, or a
 * close asked for by a reply, and every reply written). */
void server_conn_close_if_finished(conn_t *c);
/* Closes a connection with nothing left to answer; at a stop it lingers
 * first (see conn_linger). */
void server_conn_idle_close(conn_t *c);

#endif
