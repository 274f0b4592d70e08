/*
 * ops.h - request dispatch for the producer protocol.
 *
 * ops_handle_line() is the server's request callback: it parses one line,
 * checks authentication, finds the op in the op table and runs it with a
 * request_t. An op answers exactly once, now or later (from a Redis
 * callback), with request_reply_ok() or request_reply_error(); both free the
 * request. Each request holds a reference to one config snapshot for its
 * whole life, so a reload never changes a decision half-way.
 */
#ifndef NOTIFD_OPS_H
#define NOTIFD_OPS_H

#include <jansson.h>
#include <stdint.h>

#include "notifd/app.h"
#include "notifd/fast/decide_scan.h"

typedef struct request {
    app_t *app;
    conn_t *conn;
    reply_slot_t *slot;
    config_t *cfg;       /* this request's snapshot (one reference) */
    json_t *root;        /* the parsed request (in `arena` when it has one); NULL when scanned */
    struct json_arena *arena;
    json_t *id;          /* borrowed from root (owned when scanned), may be NULL */
    bool scanned;        /* a decide read without a tree: `scan` holds it */
    decide_scan_t scan;
    op_id_t op;
    uint64_t start_ns;
} request_t;

void ops_handle_line(void *app, conn_t *conn, reply_slot_t *slot, const char *line, size_t len);
void ops_handle_too_long(void *app, conn_t *conn, reply_slot_t *slot);

/* Adds "id" and "ok":true in front of the fields of `body` (stolen) and
 * replies. */
void request_reply_ok(request_t *req, json_t *body);
/* Replies with an already encoded JSON object text (a decision stored in
 * Redis, say) behind "id" and "ok":true, plus `extra` members if not NULL
 * ("\"duplicate\":true"), without parsing or re-encoding it. The text must
 * be one JSON object without "id" or "ok" members; if it is not {...} the
 * reply is an internal error. Does not take ownership of `obj`. */
void request_reply_ok_text(request_t *req, const char *obj, size_t obj_len, const char *extra);
void request_reply_error(request_t *req, proto_error_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


/* Op implementations live with their subject (decide.c, feedback.c, ...). */
void op_health(request_t *req);
void op_stats(request_t *req);

#endif
