/*
 * ops.c - request dispatch: parse a line, authenticate, route by op, and the
 * bookkeeping every reply shares (see ops.h).
 *
 * The op table maps each op name to its handler and whether it needs
 * authentication; it is the one place to look for "what can a client ask".
 */
#include "notifd/ops.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/net/json_arena.h"
#include "notifd/net/json_parse.h"
#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/ops_policy.h"

typedef void (*op_fn)(request_t *req);

/* What each op runs; names are in app.h's NOTIFD_OPS. */
static const op_fn ops_table[OP_COUNT] = {
    [OP_AUTH] = NULL, /* handled before dispatch */
    [OP_HEALTH] = op_health,
    [OP_STATS] = op_stats,
    [OP_DECIDE] = op_decide,
    [OP_FEEDBACK] = op_feedback,
    [OP_PLAN] = op_plan,
    [OP_REPLAN] = op_replan,
    [OP_PLANNER_RUN] = op_planner_run,
    [OP_EXPLAIN] = op_explain,
};

static void request_free(request_t *req)
{
    config_release(req->cfg);
    if (req->scanned) {
        /* What op_decide did not take, and the id made for the reply. */
        decide_request_free(&req->scan.r);
        json_decref(req->id);
    }
    /* A tree wholly in its arena goes with the arena; nothing outside the
     * request holds a value of it (json_arena.h). */
    if (!json_arena_holds_all(req->arena))
        json_decref(req->root);
    json_arena_release(req->arena); /* after the tree: nothing in it is used */
    free(req);
}

static void request_finish(request_t *req, char *line, size_t len, bool ok, proto_error_t code)
{
    app_t *app = req->app;
    metrics_observe_request(app->metrics, req->op, ok, code,
                            (double)(uv_hrtime() - req->start_ns) / 1e9);
    if (line == NULL) {
        /* Out of memory while encoding: a fixed line keeps the order. */
        static const char oom[] = "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"internal\","
                                  "\"message\":\"out of memory\"}}\n";
        line = strdup(oom);
        len = line ? sizeof oom - 1 : 0;
    }
    server_reply(req->slot, line, len);
    request_free(req);
}

void request_reply_ok(request_t *req, json_t *body)
{
    size_t len = 0;
    char *line;
    if (body == NULL || (json_is_object(body) && json_object_get(body, "id") == NULL &&
                         json_object_get(body, "ok") == NULL)) {
        /* Encode the body once behind the id/ok header: merging it into a
         * fresh object first copies every member for nothing
         * (docs/benchmarks.md, "Profile notes"). */
        line = proto_ok_line(req->id, body, &len);
    } else {
        json_t *o = json_object();
        json_object_set(o, "id", req->id && proto_id_valid(req->id) ? req->id : json_null());
        json_object_set_new(o, "ok", json_true());
        json_object_update(o, body);
        line = proto_encode_line(o, &len);
        json_decref(o);
    }
    json_decref(body);
    request_finish(req, line, len, true, PROTO_INTERNAL);
}

void request_reply_ok_text(request_t *req, const char *obj, size_t obj_len, const char *extra)
{
    size_t len = 0;
    char *line = proto_ok_line_text(req->id, obj, obj_len, extra, &len);
    if (line == NULL) {
        request_reply_error(req, PROTO_INTERNAL, "stored reply is not a JSON object");
        return;
    }
    request_finish(req, line, len, true, PROTO_INTERNAL);
}

void request_reply_error(request_t *req, proto_error_t code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len = 0;
    char *line = proto_error_line(req->id, code, msg, &len);
    request_finish(req, line, len, false, code);
}

/* Replies for lines that never became a request (bad JSON, too long). */
static void reply_raw_error(app_t *app, reply_slot_t *slot, proto_error_t code, const char *msg)
{
    size_t len = 0;
    char *line = proto_error_line(NULL, code, msg, &len);
    metrics_observe_request(app->metrics, OP_UNKNOWN, false, code, 0.0);
    if (line == NULL) {
        line = strdup("{\"id\":null,\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n");
        len = line ? strlen(line) : 0;
    }
    server_reply(slot, line, len);
}

void ops_handle_too_long(void *ctx, conn_t *conn, reply_slot_t *slot)
{
    app_t *app = ctx;
    config_t *cfg = app->config;
    char msg[160];
    snprintf(msg, sizeof msg,
             "request line longer than limits.max_line_bytes (%zu bytes); it was discarded",
             cfg->limits.max_line_bytes);
    reply_raw_error(app, slot, PROTO_LINE_TOO_LONG, msg);
}

/* "auth, health, ...": every op, for the unknown_op message. */
static const char *known_ops(void)
{
    static const char list[] =
#define NOTIFD_OP_LISTED(id, name) ", " name
        NOTIFD_OPS(NOTIFD_OP_LISTED)
#undef NOTIFD_OP_LISTED
        ;
    return list + 2;
}

static op_id_t op_lookup(const char *name)
{
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(ops_name((op_id_t)i), name) == 0)
            return (op_id_t)i;
    return OP_UNKNOWN;
}

/* Constant-time comparison: the time taken must not tell an attacker how
 * many leading bytes of a guessed token were right. */
static bool token_equal(const char *given, size_t given_len, const char *expected)
{
    size_t exp_len = strlen(expected);
    unsigned char diff = (unsigned char)(given_len != exp_len);
    for (size_t i = 0; i < exp_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)expected[i]);
    }
    return diff == 0;
}

static void op_auth(request_t *req)
{
    const config_t *cfg = req->cfg;
    json_t *tok = json_object_get(req->root, "token");
    if (cfg->auth_token == NULL) {
        request_reply_ok(req, json_pack("{s:b}", "authenticated", 1));
        return;
    }
    if (!json_is_string(tok) ||
        !token_equal(json_string_value(tok), json_string_length(tok), cfg->auth_token)) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 5);
        log_limited(&rl, LOG_WARN, "authentication failed", "conn=%llu",
                    (unsigned long long)conn_id(req->conn));
        conn_t *conn = req->conn;
        request_reply_error(req, PROTO_UNAUTHORIZED, "wrong or missing token; closing");
        conn_close_after_replies(conn);
        return;
    }
    conn_set_authenticated(req->conn);
    request_reply_ok(req, json_pack("{s:b}", "authenticated", 1));
}

static void log_sampled_request(app_t *app, conn_t *conn, op_id_t op, size_t len)
{
    if (app->config->log_sample_every > 0 &&
        metrics_requests(app->metrics, op, true) % (uint64_t)app->config->log_sample_every == 0)
        log_debug("request", "conn=%llu op=%s bytes=%zu", (unsigned long long)conn_id(conn),
                  ops_name(op), len);
}

/* The request's "id" as the tree would hold it, for the reply. */
static bool scanned_id(const decide_scan_t *scan, json_t **id)
{
    switch (scan->id_kind) {
    case DECIDE_SCAN_ID_STRING:
        *id = json_stringn_nocheck(scan->id_text, scan->id_len);
        break;
    case DECIDE_SCAN_ID_NUMBER:
        *id = scan->id_number.is_real ? json_real(scan->id_number.real)
                                      : json_integer((json_int_t)scan->id_number.integer);
        break;
    default:
        *id = NULL;
        return true;
    }
    return *id != NULL;
}

/* A decide read without a JSON tree (decide_scan.h): true when the line
 * was one and op_decide has it; false leaves the line to the tree path,
 * which answers every other op and every error. An unauthenticated
 * connection goes that way too, to be refused there. */
static bool start_scanned_decide(app_t *app, conn_t *conn, reply_slot_t *slot, config_t *cfg,
                                 const char *line, size_t len, uint64_t start)
{
    if (cfg->auth_token != NULL && !conn_is_authenticated(conn))
        return false;
    decide_scan_t scan;
    if (!decide_scan_line(line, len, cfg, &scan))
        return false;
    json_t *id;
    request_t *req = scanned_id(&scan, &id) ? calloc(1, sizeof *req) : NULL;
    if (req == NULL) {
        json_decref(id);
        decide_request_free(&scan.r);
        return false;
    }
    req->app = app;
    req->conn = conn;
    req->slot = slot;
    req->cfg = cfg;
    req->id = id;
    req->scanned = true;
    req->scan = scan;
    req->start_ns = start;
    req->op = OP_DECIDE;
    log_sampled_request(app, conn, req->op, len);
    op_decide(req);
    return true;
}

void ops_handle_line(void *ctx, conn_t *conn, reply_slot_t *slot, const char *line, size_t len)
{
    app_t *app = ctx;
    uint64_t start = uv_hrtime();
    size_t blank = 0; /* the line is not NUL-terminated: no str* functions */
    while (blank < len && (line[blank] == ' ' || line[blank] == '\t'))
        blank++;
    if (blank == len) {
        reply_raw_error(app, slot, PROTO_BAD_REQUEST, "empty line; send one JSON object per line");
        return;
    }
    config_t *cfg = config_acquire(app->config);
    if (start_scanned_decide(app, conn, slot, cfg, line, len, start))
        return;
    /* proto_parse_line, not json_loadb: same grammar, a fraction of the
     * cost (see protocol.c). */
    proto_parse_error_t perr;
    json_arena_t *arena = json_arena_begin();
    json_t *root = proto_parse_line(line, len, &perr);
    json_arena_end();
    if (root == NULL) {
        json_arena_release(arena);
        config_release(cfg);
        char msg[300];
        snprintf(msg, sizeof msg, "invalid JSON at column %zu: %s", perr.column, perr.text);
        reply_raw_error(app, slot, PROTO_BAD_REQUEST, msg);
        return;
    }
    request_t *req = calloc(1, sizeof *req);
    if (req == NULL) {
        json_decref(root);
        json_arena_release(arena);
        config_release(cfg);
        reply_raw_error(app, slot, PROTO_INTERNAL, "out of memory");
        return;
    }
    req->app = app;
    req->conn = conn;
    req->slot = slot;
    req->cfg = cfg;
    req->root = root;
    req->arena = arena;
    req->start_ns = start;
    req->op = OP_UNKNOWN;
    if (!json_is_object(root)) {
        request_reply_error(req, PROTO_BAD_REQUEST, "a request must be a JSON object");
        return;
    }
    req->id = json_object_get(root, "id");
    if (req->id != NULL && !proto_id_valid(req->id)) {
        req->id = NULL;
        request_reply_error(req, PROTO_BAD_REQUEST, "\"id\" must be a string or a number");
        return;
    }
    json_t *op = json_object_get(root, "op");
    if (!json_is_string(op)) {
        request_reply_error(req, PROTO_BAD_REQUEST, "missing \"op\" (a string such as \"decide\")");
        return;
    }
    req->op = op_lookup(json_string_value(op));
    if (req->cfg->auth_token != NULL && !conn_is_authenticated(conn) && req->op != OP_AUTH) {
        request_reply_error(req, PROTO_UNAUTHORIZED,
                            "authenticate first: {\"op\":\"auth\",\"token\":\"...\"}; closing");
        conn_close_after_replies(conn);
        return;
    }
    if (req->op == OP_UNKNOWN || (req->op != OP_AUTH && ops_table[req->op] == NULL)) {
        req->op = OP_UNKNOWN;
        request_reply_error(req, PROTO_UNKNOWN_OP, "unknown op \"%.64s\"; known: %s",
                            json_string_value(op), known_ops());
        return;
    }
    log_sampled_request(app, conn, req->op, len);
    if (req->op == OP_AUTH)
        op_auth(req);
    else
        ops_table[req->op](req);
}
