/*
 * events_spool.c - the event sink's use of the disk spool (the segment
 * format and its checks are spool.c's, shared with the feedback queue):
 * spilling pending events in group commits, putting a batch back on disk,
 * replaying segments oldest first with every line checked, and the
 * dead-letter file. Its own file because it is the sink's one disk-facing
 * responsibility, and all of it runs on the worker thread (events_worker.c
 * decides when).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "events_internal.h"
#include "notifd/events/spool.h"
#include "notifd/log.h"

void ev_publish_spool_gauges(events_t *ev)
{
    int64_t bytes = ev->spool ? (int64_t)spool_bytes(ev->spool) : 0;
    atomic_store_explicit(&ev->spool_bytes, bytes, memory_order_relaxed);
    atomic_store_explicit(&ev->spool_segs, ev->spool ? (int64_t)spool_segments(ev->spool) : 0,
                          memory_order_relaxed);
    metrics_events_set_spool_bytes(ev->metrics, bytes);
}


void ev_replay_reset(events_t *ev)
{
    free(ev->replay_buf);
    ev->replay_buf = NULL;
    ev->replaying = false;
    ev->replay_len = ev->replay_off = 0;
}


spool_t *ev_get_spool(events_t *ev)
{
    if (ev->spool != NULL)
        return ev->spool;
    char why[256];
    ev->spool = spool_open(ev->spool_path, SEGMENT_BYTES, why, sizeof why);
    if (ev->spool == NULL)
        log_limited(&ev->rl_spool_err, LOG_ERROR, "cannot open the event spool",
                    "dir=\"%s\" error=\"%s\"", ev->spool_path, why);
    ev_publish_spool_gauges(ev);
    return ev->spool;
}

bool ev_spool_pending(const events_t *ev)
{
    return ev->replaying || (ev->spool != NULL && spool_segments(ev->spool) > 0);
}

/* Appends one batch of NDJSON to the spool. Returns true when it is on disk;
 * otherwise logs (rate-limited) and the caller keeps the events. */
static bool spool_write(events_t *ev, struct iovec *iov, int iovcnt, size_t n)
{
    spool_t *sp = ev_get_spool(ev);
    if (sp == NULL)
        return false;
    int rc = spool_appendv(sp, iov, iovcnt, ev->cfg.fsync, ev->cfg.spool_max_bytes);
    if (rc == SPOOL_FULL) {
        if (!atomic_exchange(&ev->spool_full, true))
            log_error("EVENT SPOOL FULL: events.spool_max_bytes reached; events now wait in "
                      "memory and are dropped (counted) once events.queue_max is reached",
                      "dir=\"%s\" spool_bytes=%" PRIu64 " spool_max_bytes=%" PRId64,
                      ev->spool_path, spool_bytes(sp), ev->cfg.spool_max_bytes);
        else
            log_limited(&ev->rl_spool_full, LOG_ERROR, "event spool still full",
                        "dir=\"%s\" spool_bytes=%" PRIu64 " waiting_in_memory=%" PRId64,
                        ev->spool_path, spool_bytes(sp), atomic_load(&ev->depth));
        return false;
    }
    if (rc != 0) {
        log_limited(&ev->rl_spool_err, LOG_ERROR,
                    "cannot write the event spool; events wait in memory",
                    "dir=\"%s\" error=\"%s\" events=%zu", ev->spool_path, strerror(-rc), n);
        return false;
    }
    atomic_store(&ev->spool_full, false);
    ev_count(ev, EVC_SPOOLED, n);
    ev_publish_spool_gauges(ev);
    return true;
}

/* Moves the oldest events of `pending` to disk in one write and one sync
 * (group commit): when publishing outpaces fdatasync, each write takes all
 * that piled up during the last one, so the spool keeps up where one sync
 * per batch would fall behind and memory would fill up. The lines are
 * written from where they are, not copied. Takes at most what still fits
 * under events.spool_max_bytes, but always one event, so that a full spool
 * is still reported as full. */
bool ev_spill_pending(events_t *ev)
{
    spool_t *sp = ev_get_spool(ev);
    if (sp == NULL || ev->pending.count == 0)
        return false;
    uint64_t room = UINT64_MAX;
    if (ev->cfg.spool_max_bytes >= 0) {
        uint64_t used = spool_bytes(sp), max = (uint64_t)ev->cfg.spool_max_bytes;
        room = max > used ? max - used : 0;
    }
    size_t cap = ev->pending.count < SPILL_EVENTS_MAX ? ev->pending.count : SPILL_EVENTS_MAX;
    struct iovec *iov = malloc(2 * cap * sizeof *iov);
    if (iov == NULL)
        return false;
    size_t n = 0, bytes = 0;
    for (ev_node_t *x = ev->pending.head; x != NULL && n < cap; x = x->next, n++) {
        if (n > 0 && bytes + x->len + 1 > room)
            break;
        iov[2 * n] = (struct iovec){x->line, x->len};
        iov[2 * n + 1] = (struct iovec){(void *)"\n", 1};
        bytes += x->len + 1;
    }
    bool ok = spool_write(ev, iov, (int)(2 * n), n);
    free(iov);
    if (ok) {
        ev_list_pop_free(&ev->pending, n);
        ev_set_depth(ev, -(int64_t)n, -(int64_t)bytes);
    }
    return ok;
}

/* The current batch goes back to disk (stop, or the endpoint removed by a
 * reload). A spool batch needs nothing: its segment is still on disk. */
void ev_cur_to_spool(events_t *ev, bool last_chance)
{
    if (!ev->have_cur)
        return;
    if (ev->cur.source == FROM_SPOOL) {
        ev_batch_clear(ev);
        ev_replay_reset(ev);
        return;
    }
    struct iovec one = {ev->cur.data, ev->cur.len};
    if (spool_write(ev, &one, 1, ev->cur.count)) {
        ev_set_depth(ev, -(int64_t)ev->cur.count, -(int64_t)ev->cur.len);
        ev_batch_clear(ev);
    } else if (last_chance) {
        log_error("events lost at stop: cannot spool them", "events=%zu", ev->cur.count);
        ev_count(ev, EVC_DROPPED, ev->cur.count);
        ev_set_depth(ev, -(int64_t)ev->cur.count, -(int64_t)ev->cur.len);
        ev_batch_clear(ev);
    }
}

/* Appends `n` events (NDJSON) to the dead-letter file; if that fails they
 * are lost, and said so. */
void ev_dead_letter(events_t *ev, const char *data, size_t len, size_t n)
{
    spool_t *sp = ev_get_spool(ev);
    int rc = sp ? spool_dead_letter(sp, data, len, ev->cfg.fsync) : -EIO;
    if (rc == 0) {
        ev_count(ev, EVC_DEAD_LETTERED, n);
        return;
    }
    log_error("cannot write the dead-letter file; rejected events lost",
              "dir=\"%s\" error=\"%s\" events=%zu", ev->spool_path, strerror(-rc), n);
    ev_count(ev, EVC_DROPPED, n);
}

/* Reads the oldest segment into replay_buf, '\n'-terminated: a last line
 * without its newline (a crash mid-append) is then a line like the others,
 * and is either a whole event or bad. False when the spool is empty. */
static bool replay_open_oldest(events_t *ev)
{
    for (;;) {
        uint64_t seq;
        if (ev->spool == NULL || !spool_oldest(ev->spool, &seq))
            return false;
        /* A segment this config could have written holds SEGMENT_BYTES
         * plus at most one batch, itself at most events.queue_max_bytes
         * (one large event). A larger one is not read into memory. */
        size_t max = SEGMENT_BYTES + (size_t)ev->cfg.queue_max_bytes;
        int rc = spool_read(ev->spool, seq, max, &ev->replay_buf, &ev->replay_len);
        char *grown = NULL;
        if (rc == 0 && ev->replay_len > 0 && ev->replay_buf[ev->replay_len - 1] != '\n') {
            grown = realloc(ev->replay_buf, ev->replay_len + 2);
            if (grown == NULL) {
                rc = -ENOMEM;
                ev_replay_reset(ev);
            } else {
                ev->replay_buf = grown;
                ev->replay_buf[ev->replay_len++] = '\n';
                ev->replay_buf[ev->replay_len] = '\0';
            }
        }
        if (rc != 0) {
            log_error("cannot read an event spool segment; quarantined",
                      "dir=\"%s\" seq=%" PRIu64 " error=\"%s\" max_bytes=%zu", ev->spool_path,
                      seq, strerror(-rc), max);
            spool_quarantine(ev->spool, seq);
            ev_publish_spool_gauges(ev);
            continue;
        }
        ev->replaying = true;
        ev->replay_seq = seq;
        ev->replay_off = 0;
        log_info("replaying event spool segment", "seq=%" PRIu64 " bytes=%zu%s", seq,
                 ev->replay_len, grown ? " last_line_unterminated=true" : "");
        return true;
    }
}

/* The next batch of the spool, oldest segment first. Every line is checked
 * (spool_next_run): lines that are not one JSON object, or longer than
 * events.queue_max_bytes, go to the dead-letter file on the way, so one bad
 * line never takes a valid batch down with it. Delivered and emptied
 * segments are removed on the way too. */
bool ev_next_replay_batch(events_t *ev)
{
    spool_run_limits_t lim = {(size_t)ev->cfg.batch_max, ev_batch_bytes_max(&ev->cfg),
                              (size_t)ev->cfg.queue_max_bytes};
    for (;;) {
        if (!ev->replaying && !replay_open_oldest(ev))
            return false;
        size_t end, n;
        spool_run_t run = spool_next_run(ev->replay_buf, ev->replay_len, ev->replay_off, &lim,
                                         &end, &n);
        if (run == SPOOL_RUN_END) {
            spool_remove(ev->spool, ev->replay_seq);
            ev_replay_reset(ev);
            ev_publish_spool_gauges(ev);
            continue;
        }
        if (run == SPOOL_RUN_BAD) {
            log_limited(&ev->rl_bad_line, LOG_WARN,
                        "event spool lines are not events; written to the dead-letter file",
                        "seq=%" PRIu64 " offset=%zu lines=%zu bytes=%zu file=\"%s/%s\"",
                        ev->replay_seq, ev->replay_off, n, end - ev->replay_off,
                        ev->spool_path, SPOOL_DEAD_LETTER_NAME);
            ev_dead_letter(ev, ev->replay_buf + ev->replay_off, end - ev->replay_off, n);
            ev->replay_off = end;
            continue;
        }
        ev->cur = (batch_t){ev->replay_buf + ev->replay_off, end - ev->replay_off, n,
                            FROM_SPOOL, false, end};
        ev->have_cur = true;
        return true;
    }
}

