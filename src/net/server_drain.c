/*
 * server_drain.c - the server's stop path: server_drain (stop accepting,
 * read what clients sent before the stop, answer it), the lingering close
 * after the last reply (FIN, discard until the client closes or
 * LINGER_MS), ending connections that have nothing left to do, and
 * server_close. The running server is in server.c; server_internal.h holds
 * what the two share.
 */
#include <stdlib.h>
#include <sys/socket.h>

#include "notifd/net/framing.h"
#include "server_internal.h"

/* How long a stopping server waits, after its last reply on a connection,
 * for the client to close it (see conn_linger). */
#define LINGER_MS 500

/* ------------------------------------------------------------------ */
/* Lingering close at a stop                                          */

/* A static sink: what a stopping connection still receives is dropped. */
static void on_discard_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char sink[65536];
    *buf = uv_buf_init(sink, sizeof sink);
}

static void on_discard_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn_t *c = stream->data;
    if (nread > 0) {
        c->srv->counters.bytes_in += (uint64_t)nread;
        return;
    }
    if (nread < 0) /* the client closed (or the connection failed): done */
        server_conn_close(c);
}

static void on_linger_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    c->shutdown_pending = false;
    if (c->closing) {
        server_conn_maybe_free(c);
        return;
    }
    if (status < 0 || uv_read_start((uv_stream_t *)&c->handle, on_discard_alloc,
                                    on_discard_read) != 0) {
        server_conn_close(c);
        return;
    }
    c->reading = true;
}

static void on_linger_timer(uv_timer_t *t)
{
    server_t *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    bool more = false;
    conn_t *c = srv->conns;
    while (c != NULL) {
        conn_t *next = c->next;
        if (c->lingering) {
            if (now - c->linger_since_ms >= LINGER_MS)
                server_conn_close(c);
            else
                more = true;
        }
        c = next;
    }
    if (!more && srv->linger_timer_on) {
        uv_timer_stop(t);
        srv->linger_timer_on = false;
    }
}

/*
 * Every request a stopping connection sent before the stop is answered; the
 * client may have sent more since, still unread in the socket. Closing a
 * socket with unread data makes the kernel send a reset, and a reset makes
 * the client's kernel drop replies it has received but the client has not
 * read yet. So: send FIN after the last reply (shutdown), read and discard
 * until the client closes, and close then or after LINGER_MS, whichever
 * comes first. Requests discarded here get no reply; the client sees EOF
 * after its last answered request.
 */
static void conn_linger(conn_t *c)
{
    server_t *srv = c->srv;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->handle);
        c->reading = false;
    }
    c->lingering = true;
    c->linger_since_ms = uv_now(srv->loop);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->handle, on_linger_shutdown) != 0) {
        server_conn_close(c);
        return;
    }
    c->shutdown_pending = true;
    if (!srv->linger_timer_on && !srv->closing) {
        uv_timer_start(&srv->linger_timer, on_linger_timer, 100, 100);
        srv->linger_timer_on = true;
    }
}

/* Ends a connection that has nothing left to do: its client sent EOF, the
 * server is stopping, or a reply asked for the close (unauthorized), and
 * every request it sent is answered and written. A paused connection may
 * still hold received lines in its framer: server_conn_process answers them
 * first, then comes back here. */
void server_conn_close_if_finished(conn_t *c)
{
    if (c->closing || c->lingering)
        return;
    bool wants_close = c->close_after_replies || ((c->draining || c->eof) && !c->paused);
    if (wants_close && c->pending == 0 && c->out_len == 0 && c->writes_in_flight == 0)
        server_conn_idle_close(c);
}

/* A connection with nothing left to answer closes; at a stop it lingers
 * first, unless the client already half-closed or a reply ended it. */
void server_conn_idle_close(conn_t *c)
{
    if (c->lingering || c->closing)
        return;
    if (c->draining && !c->eof && !c->close_after_replies)
        conn_linger(c);
    else
        server_conn_close(c);
}

/* At a stop, requests the client sent before it may still sit unread in
 * the socket. Closing with unread data would make the kernel reset the
 * connection and destroy replies already written, so read what is there
 * now (non-blocking, within the connection's bounds) and answer it. */
static void conn_drain_read(conn_t *c)
{
    uv_os_fd_t fd;
    if (c->closing || c->eof || uv_fileno((uv_handle_t *)&c->handle, &fd) != 0)
        return;
    c->final_read = true;
    for (int rounds = 0; rounds < 256 && !c->closing && !server_conn_over_bounds(c); rounds++) {
        size_t avail = 0;
        char *space = framer_write_space(&c->framer, &avail);
        if (space == NULL || avail == 0)
            break;
        ssize_t n = recv(fd, space, avail, MSG_DONTWAIT);
        if (n <= 0) {
            if (n == 0)
                c->eof = true;
            break;
        }
        framer_commit(&c->framer, (size_t)n);
        c->srv->counters.bytes_in += (uint64_t)n;
        server_conn_process(c);
    }
    c->final_read = false;
}

/* ------------------------------------------------------------------ */
/* Drain and close                                                    */

static void on_server_handle_closed(uv_handle_t *h)
{
    server_t *srv = h->data;
    srv->handles_open--;
    if (srv->closing && srv->handles_open == 0)
        free(srv);
}

void server_drain(server_t *srv, void (*on_drained)(void *), void *arg)
{
    srv->draining = true;
    srv->on_drained = on_drained;
    srv->drained_arg = arg;
    if (srv->listening) {
        srv->listening = false;
        uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
    }
    conn_t *c = srv->conns;
    while (c != NULL) {
        conn_t *next = c->next;
        c->draining = true;
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->handle);
            c->reading = false;
        }
        /* Lines already received are requests in flight: answer them. */
        c->paused = false;
        conn_drain_read(c);
        if (!c->closing)
            server_conn_process(c);
        c = next;
    }
    if (srv->conns == NULL && srv->on_drained != NULL) {
        srv->on_drained = NULL;
        on_drained(arg);
    }
}

void server_close(server_t *srv)
{
    srv->on_drained = NULL;
    srv->draining = true;
    if (srv->listening) {
        srv->listening = false;
        uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
    }
    while (srv->conns != NULL)
        server_conn_close(srv->conns);
    srv->closing = true;
    uv_close((uv_handle_t *)&srv->flusher, on_server_handle_closed);
    uv_close((uv_handle_t *)&srv->sweeper, on_server_handle_closed);
    uv_close((uv_handle_t *)&srv->linger_timer, on_server_handle_closed);
}
