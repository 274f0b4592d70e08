/*
 * redis_uv.c - the hiredis event adapter for libuv that notifd uses in place
 * of hiredis' own adapters/libuv.h.
 *
 * Why not the stock adapter: it calls uv_poll_start() on every add/del of
 * an event, and libuv implements uv_poll_start() as stop + start, where the
 * stop removes the descriptor from epoll (EPOLL_CTL_DEL) and the next turn
 * adds it back. hiredis asks for "writable" on every command it queues, so
 * a decide (several commands) cost several epoll_ctl calls and a write()
 * per command batch of one callback (docs/benchmarks.md, "Profile notes").
 * It also ignores poll errors, so a failed socket is never reported to
 * hiredis.
 *
 * Here:
 *   - the poll handle is (re)started only when the wanted events change;
 *   - once connected, a queued command does not arm "writable" at all: a
 *     uv_prepare handle, which runs once per loop turn just before libuv
 *     blocks for I/O, writes everything queued during the turn in one
 *     write(). Only if the socket cannot take it all is "writable" armed,
 *     until hiredis has written the rest;
 *   - while connecting, "writable" is how hiredis learns the connect
 *     finished, so it is armed as usual;
 *   - a poll error is handed to hiredis as readable (and writable if
 *     wanted), so the read or write fails and hiredis disconnects cleanly.
 */
#include "notifd/store/redis_uv.h"

#include <stdbool.h>
#include <stdlib.h>

typedef struct redis_uv {
    redisAsyncContext *ac;      /* NULL once hiredis has let go of it */
    uv_poll_t poll;
    uv_prepare_t flush;
    int polling;                /* events the poll handle is started with */
    bool want_read;
    bool want_write;            /* hiredis has output queued */
    bool flushing;              /* inside our own redisAsyncHandleWrite */
    int open_handles;
} redis_uv_t;

static bool connected(const redis_uv_t *r)
{
    return r->ac != NULL && (r->ac->c.flags & REDIS_CONNECTED) != 0;
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Brings the poll handle in line with what is wanted. "Writable" is polled
 * for only while connecting, or when a flush could not write everything. */
static void update_poll(redis_uv_t *r, bool write_blocked)
{
    int ev = 0;
    if (r->want_read)
        ev |= UV_READABLE;
    if (r->want_write && (!connected(r) || write_blocked || (r->polling & UV_WRITABLE)))
        ev |= UV_WRITABLE;
    if (ev == r->polling)
        return;
    r->polling = ev;
    if (ev == 0)
        uv_poll_stop(&r->poll);
    else
        uv_poll_start(&r->poll, ev, on_poll);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    redis_uv_t *r = h->data;
    if (status < 0)
        events = r->polling; /* let hiredis find the error on read or write */
    if (r->ac != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(r->ac);
    /* The read may have disconnected and freed the context (r->ac NULL). */
    if (r->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(r->ac);
}

/* Once per loop turn: write what the turn queued. */
static void on_flush(uv_prepare_t *h)
{
    redis_uv_t *r = h->data;
    if (r->ac == NULL || !r->want_write || !connected(r) || (r->polling & UV_WRITABLE))
        return;
    r->flushing = true;
    redisAsyncHandleWrite(r->ac); /* calls del_write when all was written */
    r->flushing = false; /* r outlives a context freed in there: handles close later */
}

static void add_read(void *p)
{
    redis_uv_t *r = p;
    r->want_read = true;
    update_poll(r, false);
}

static void del_read(void *p)
{
    redis_uv_t *r = p;
    r->want_read = false;
    update_poll(r, false);
}

static void add_write(void *p)
{
    redis_uv_t *r = p;
    r->want_write = true;
    /* hiredis asks again from inside a flush only when the socket took
     * less than everything: poll for writable until the rest is out. */
    update_poll(r, r->flushing);
}

static void del_write(void *p)
{
    redis_uv_t *r = p;
    r->want_write = false;
    update_poll(r, false);
}

static void on_closed(uv_handle_t *h)
{
    redis_uv_t *r = h->data;
    if (--r->open_handles == 0)
        free(r);
}

static void cleanup(void *p)
{
    redis_uv_t *r = p;
    r->ac = NULL;
    r->flushing = false;
    uv_close((uv_handle_t *)&r->poll, on_closed);
    uv_close((uv_handle_t *)&r->flush, on_closed);
}

int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data != NULL)
        return REDIS_ERR;
    redis_uv_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return REDIS_ERR;
    if (uv_poll_init(loop, &r->poll, ac->c.fd) != 0) {
        free(r);
        return REDIS_ERR;
    }
    uv_prepare_init(loop, &r->flush);
    uv_prepare_start(&r->flush, on_flush);
    r->poll.data = r;
    r->flush.data = r;
    r->open_handles = 2;
    r->ac = ac;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = r;
    return REDIS_OK;
}
