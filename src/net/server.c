/*
 * server.c - the producer-facing TCP server (see server.h for the contract).
 *
 * A connection moves bytes through three stages:
 *   socket -> framer (framing.c) -> request slots (in order) -> out buffer -> socket
 * Reading pauses whenever a connection is over its pipeline or output bound
 * and resumes, with the lines still buffered, when it is back under half of
 * both (hysteresis avoids a pause/resume per request).
 *
 * Lifetime: a connection is freed only when its handle is closed AND no slot
 * refers to it AND no write is in flight. Closing while requests wait on
 * Redis is normal (a client that hangs up); their replies are dropped.
 *
 * This file holds the running server: writing, reading, a connection's
 * lifetime, the listener, limits. The stop path (drain, linger, close) is
 * in server_drain.c; server_internal.h holds the structs both share.
 */
#include "notifd/net/server.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "notifd/net/framing.h"
#include "notifd/log.h"
#include "server_internal.h"

typedef struct write_req {
    uv_write_t req;
    conn_t *conn;
    char *data;
    size_t len;
} write_req_t;

static const char too_many_conns_reply[] =
    "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"unavailable\","
    "\"message\":\"too many connections (limits.max_connections); retry later or use fewer\"}}\n";

/* ------------------------------------------------------------------ */
/* Writing                                                            */

static void on_write(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    conn_t *c = w->conn;
    c->bytes_in_flight -= w->len;
    c->writes_in_flight--;
    free(w->data);
    free(w);
    if (status < 0 && !c->closing) {
        log_debug("write failed", "conn=%llu error=%s", (unsigned long long)c->id,
                  uv_strerror(status));
        server_conn_close(c);
    }
    if (c->closing) {
        server_conn_maybe_free(c);
        return;
    }
    if (c->paused)
        server_conn_process(c);
    server_conn_close_if_finished(c);
}

/* Writes out the replies gathered in c->out: uv_try_write first (no
 * request allocation when the socket can take it all), uv_write for the
 * rest. Called once per loop turn per connection, from the check handle. */
static void conn_flush(conn_t *c)
{
    if (c->closing)
        return;
    if (c->out_len == 0) {
        server_conn_close_if_finished(c); /* the last reply may have been written already */
        return;
    }
    size_t offset = 0;
    if (c->writes_in_flight == 0) {
        uv_buf_t b = uv_buf_init(c->out, (unsigned)c->out_len);
        int n = uv_try_write((uv_stream_t *)&c->handle, &b, 1);
        if (n > 0) {
            c->srv->counters.bytes_out += (uint64_t)n;
            offset = (size_t)n;
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            server_conn_close(c);
            return;
        }
    }
    if (offset == c->out_len) {
        c->out_len = 0;
    } else {
        write_req_t *w = malloc(sizeof *w);
        if (w == NULL) {
            server_conn_close(c);
            return;
        }
        size_t rest = c->out_len - offset;
        if (offset > 0)
            memmove(c->out, c->out + offset, rest);
        w->conn = c;
        w->data = c->out;
        w->len = rest;
        c->out = NULL;
        c->out_len = c->out_cap = 0;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)rest);
        int rc = uv_write(&w->req, (uv_stream_t *)&c->handle, &b, 1, on_write);
        if (rc < 0) {
            free(w->data);
            free(w);
            server_conn_close(c);
            return;
        }
        c->srv->counters.bytes_out += rest;
        c->bytes_in_flight += rest;
        c->writes_in_flight++;
    }
    /* Keep the buffer for the next turn unless a burst made it large. */
    if (c->out_len == 0 && c->out_cap > 65536) {
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    server_conn_close_if_finished(c);
}

static void on_check(uv_check_t *h)
{
    server_t *srv = h->data;
    while (srv->flush_list != NULL) {
        conn_t *c = srv->flush_list;
        srv->flush_list = c->flush_next;
        c->flush_next = NULL;
        c->flush_queued = false;
        conn_flush(c);
        if (!c->closing && c->paused)
            server_conn_process(c);
    }
}

static void conn_queue_flush(conn_t *c)
{
    if (c->flush_queued || c->closing)
        return;
    c->flush_queued = true;
    c->flush_next = c->srv->flush_list;
    c->srv->flush_list = c;
}

/* A connection's reply buffer starts at 1 KiB: most hold a reply or two
 * per loop turn (a decide's is ~350 bytes), and with 1,000 connections
 * starting at 4 KiB cost 2.5 MiB of RSS (docs/benchmarks.md). */
static bool out_append(conn_t *c, const char *data, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + len)
            cap *= 2;
        char *nb = realloc(c->out, cap);
        if (nb == NULL)
            return false;
        c->out = nb;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return true;
}

/* Moves every completed slot at the head of the queue into the out buffer:
 * this is where request order is restored. */
static void conn_collect_replies(conn_t *c)
{
    bool any = false;
    while (c->head != NULL && c->head->done) {
        reply_slot_t *s = c->head;
        c->head = s->next;
        if (c->head == NULL)
            c->tail = NULL;
        if (!c->closing && s->data != NULL) {
            if (!out_append(c, s->data, s->len))
                server_conn_close(c);
            any = true;
        }
        free(s->data);
        free(s);
        c->slots--;
    }
    if (any)
        conn_queue_flush(c);
}

void server_reply(reply_slot_t *slot, char *data, size_t len)
{
    conn_t *c = slot->conn;
    slot->data = data;
    slot->len = len;
    slot->done = true;
    c->pending--;
    if (c->closing) {
        /* The client is gone: drop this and any completed replies behind it. */
        conn_collect_replies(c);
        server_conn_maybe_free(c);
        return;
    }
    if (slot == c->head)
        conn_collect_replies(c);
    /* Re-evaluate bounds after this turn's flush; a client that has sent
     * its EOF (or a stop) waits for this turn's flush to end the connection. */
    if (c->paused || c->draining || c->eof)
        conn_queue_flush(c);
}

/* ------------------------------------------------------------------ */
/* Reading                                                            */

bool server_conn_over_bounds(const conn_t *c)
{
    const server_t *srv = c->srv;
    return c->pending >= srv->max_pipeline ||
           c->out_len + c->bytes_in_flight >= srv->max_output_bytes;
}

static bool conn_under_resume_mark(const conn_t *c)
{
    const server_t *srv = c->srv;
    return c->pending <= srv->max_pipeline / 2 &&
           c->out_len + c->bytes_in_flight <= srv->max_output_bytes / 2;
}

static reply_slot_t *slot_new(conn_t *c)
{
    reply_slot_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->conn = c;
    if (c->tail)
        c->tail->next = s;
    else
        c->head = s;
    c->tail = s;
    c->pending++;
    c->slots++;
    return s;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    size_t avail = 0;
    char *space = framer_write_space(&c->framer, &avail);
    *buf = uv_buf_init(space, space ? (unsigned)avail : 0);
}

static void conn_pause(conn_t *c)
{
    if (!c->paused) {
        c->paused = true;
        c->srv->counters.read_pauses++;
    }
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->handle);
        c->reading = false;
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static bool gate_closed(const server_t *srv)
{
    return srv->gate_closed != NULL && srv->gate_closed(srv->gate_arg);
}

/* Parses and dispatches buffered lines while the connection is within its
 * bounds and the gate is open; pauses reading when not, resumes when it is
 * back under the resume mark (or the gate opens: server_gate_opened). */
void server_conn_process(conn_t *c)
{
    server_t *srv = c->srv;
    if (c->closing || c->lingering)
        return;
    if (c->paused && (!conn_under_resume_mark(c) || gate_closed(srv)))
        return;
    c->paused = false;
    while (!c->closing && !c->close_after_replies) {
        if (server_conn_over_bounds(c)) {
            conn_pause(c);
            return;
        }
        if (gate_closed(srv)) {
            srv->counters.gate_pauses++;
            conn_pause(c);
            return;
        }
        const char *line;
        size_t len;
        framer_result_t r = framer_next(&c->framer, &line, &len);
        if (r == FRAMER_NEED_MORE)
            break;
        reply_slot_t *slot = slot_new(c);
        if (slot == NULL) {
            server_conn_close(c);
            return;
        }
        srv->counters.lines++;
        if (r == FRAMER_TOO_LONG) {
            srv->counters.lines_too_long++;
            srv->on_too_long(srv->ctx, c, slot);
        } else {
            srv->on_request(srv->ctx, c, slot, line, len);
        }
    }
    if (c->closing || c->close_after_replies)
        return;
    if (c->eof || c->draining) {
        if (!c->final_read && c->pending == 0 && c->out_len == 0 && c->writes_in_flight == 0)
            server_conn_idle_close(c);
        return;
    }
    if (!c->reading) {
        if (uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read) == 0)
            c->reading = true;
        else
            server_conn_close(c);
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = stream->data;
    if (nread == 0)
        return; /* EAGAIN */
    if (nread < 0) {
        if (c->reading) {
            uv_read_stop(stream);
            c->reading = false;
        }
        if (nread != UV_EOF) {
            server_conn_close(c);
            return;
        }
        /* EOF: the client sent its last request (a final line without '\n'
         * is incomplete and ignored). It may have half-closed and still read,
         * or closed outright (its own timeout): either way answer what it
         * sent, and close as soon as the last reply is written, at once when
         * nothing is pending (server_conn_close_if_finished), instead of holding the
         * connection, and a max_connections place, until the idle timeout. */
        c->eof = true;
        server_conn_close_if_finished(c);
        return;
    }
    framer_commit(&c->framer, (size_t)nread);
    c->srv->counters.bytes_in += (uint64_t)nread;
    c->last_active_ms = uv_now(c->srv->loop);
    server_conn_process(c);
}

/* ------------------------------------------------------------------ */
/* Connection lifetime                                                */

void server_conn_maybe_free(conn_t *c)
{
    if (!c->handle_closed || c->slots > 0 || c->writes_in_flight > 0 || c->shutdown_pending)
        return;
    framer_free(&c->framer);
    free(c->out);
    free(c);
}

static void on_conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    server_t *srv = c->srv;
    c->handle_closed = true;
    srv->handles_open--;
    /* Drop completed-but-unflushed slots; pending ones free themselves in
     * server_reply. */
    reply_slot_t **pp = &c->head;
    while (*pp != NULL) {
        reply_slot_t *s = *pp;
        if (s->done) {
            *pp = s->next;
            free(s->data);
            free(s);
            c->slots--;
        } else {
            pp = &s->next;
        }
    }
    c->tail = NULL;
    for (reply_slot_t *s = c->head; s != NULL; s = s->next)
        c->tail = s;
    server_conn_maybe_free(c);
    if (srv->draining && srv->conns == NULL && srv->on_drained != NULL) {
        void (*cb)(void *) = srv->on_drained;
        srv->on_drained = NULL;
        cb(srv->drained_arg);
    }
    if (srv->closing && srv->handles_open == 0)
        free(srv);
}

void server_conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (c->flush_queued) {
        conn_t **pp = &srv->flush_list;
        while (*pp != NULL && *pp != c)
            pp = &(*pp)->flush_next;
        if (*pp == c)
            *pp = c->flush_next;
        c->flush_queued = false;
    }
    srv->counters.connections--;
    uv_close((uv_handle_t *)&c->handle, on_conn_closed);
}

static void on_connection(uv_stream_t *listener, int status)
{
    server_t *srv = listener->data;
    if (status < 0) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 5);
        log_limited(&rl, LOG_WARN, "accept failed", "error=%s", uv_strerror(status));
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->handle);
    c->handle.data = c;
    srv->handles_open++;
    if (uv_accept(listener, (uv_stream_t *)&c->handle) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->handle, on_conn_closed);
        return;
    }
    c->id = ++srv->next_id;
    c->last_active_ms = uv_now(srv->loop);
    framer_init(&c->framer, srv->max_line_bytes);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->counters.connections++;
    if (srv->counters.connections > srv->max_connections || srv->draining) {
        srv->counters.rejected++;
        uv_buf_t b = uv_buf_init((char *)too_many_conns_reply, sizeof too_many_conns_reply - 1);
        (void)uv_try_write((uv_stream_t *)&c->handle, &b, 1);
        server_conn_close(c);
        return;
    }
    srv->counters.accepted++;
    uv_tcp_nodelay(&c->handle, 1);
    if (uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read) == 0)
        c->reading = true;
    else
        server_conn_close(c);
}

/* Closes connections that sent nothing for idle_timeout_s and wait on
 * nothing. Once a second is precise enough and costs one pass. */
static void on_sweep(uv_timer_t *t)
{
    server_t *srv = t->data;
    if (srv->idle_timeout_s <= 0)
        return;
    uint64_t now = uv_now(srv->loop);
    uint64_t limit = (uint64_t)srv->idle_timeout_s * 1000u;
    conn_t *c = srv->conns;
    while (c != NULL) {
        conn_t *next = c->next;
        if (c->pending == 0 && c->writes_in_flight == 0 && now - c->last_active_ms >= limit) {
            srv->counters.closed_idle++;
            server_conn_close(c);
        }
        c = next;
    }
}

/* ------------------------------------------------------------------ */
/* Server                                                             */

server_t *server_create(uv_loop_t *loop, server_request_fn on_request,
                        server_too_long_fn on_too_long, void *ctx)
{
    server_t *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return NULL;
    srv->loop = loop;
    srv->on_request = on_request;
    srv->on_too_long = on_too_long;
    srv->ctx = ctx;
    srv->max_line_bytes = 64 * 1024;
    srv->max_connections = 10000;
    srv->max_output_bytes = 1 << 20;
    srv->max_pipeline = 1024;
    uv_check_init(loop, &srv->flusher);
    srv->flusher.data = srv;
    uv_check_start(&srv->flusher, on_check);
    uv_timer_init(loop, &srv->sweeper);
    srv->sweeper.data = srv;
    uv_timer_start(&srv->sweeper, on_sweep, 1000, 1000);
    uv_unref((uv_handle_t *)&srv->sweeper);
    uv_timer_init(loop, &srv->linger_timer);
    srv->linger_timer.data = srv;
    srv->handles_open = 3;
    return srv;
}

void server_apply_config(server_t *srv, const config_t *cfg)
{
    srv->max_line_bytes = cfg->limits.max_line_bytes;
    srv->max_connections = cfg->limits.max_connections;
    srv->max_output_bytes = cfg->limits.max_output_bytes;
    srv->max_pipeline = cfg->limits.max_pipeline;
    srv->idle_timeout_s = cfg->limits.idle_timeout_s;
    /* Existing connections keep their framer's limit until they reconnect:
     * changing it under a half-received line would misframe it. */
}

int server_listen(server_t *srv, const config_t *cfg)
{
    server_apply_config(srv, cfg);
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(cfg->listen.host, cfg->listen.port, (struct sockaddr_in *)&addr);
    if (rc != 0)
        rc = uv_ip6_addr(cfg->listen.host, cfg->listen.port, (struct sockaddr_in6 *)&addr);
    if (rc != 0)
        return rc;
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listener.data = srv;
    srv->handles_open++;
    srv->listening = true;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection);
    return rc;
}


const server_counters_t *server_counters(const server_t *srv) { return &srv->counters; }

void server_set_gate(server_t *srv, bool (*closed)(void *), void *arg)
{
    srv->gate_closed = closed;
    srv->gate_arg = arg;
}

void server_gate_opened(server_t *srv)
{
    /* A request processed below may close the gate again: the rest stay
     * paused then, and the next opening resumes them. */
    conn_t *c = srv->conns;
    while (c != NULL && !gate_closed(srv)) {
        conn_t *next = c->next;
        if (c->paused)
            server_conn_process(c);
        c = next;
    }
}

bool conn_is_authenticated(const conn_t *conn) { return conn->authenticated; }
void conn_set_authenticated(conn_t *conn) { conn->authenticated = true; }
void conn_close_after_replies(conn_t *conn)
{
    conn->close_after_replies = true;
    if (conn->reading) {
        uv_read_stop((uv_stream_t *)&conn->handle);
        conn->reading = false;
    }
}
uint64_t conn_id(const conn_t *conn) { return conn->id; }
