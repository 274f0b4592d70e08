/*
 * feedback_queue.c - feedback waiting for Redis (see feedback_queue.h and
 * docs/feedback-queue.md).
 *
 * Memory is a FIFO of records (one JSON line each, the fields of a feedback
 * request with ts resolved and an event_id). A 100 ms timer moves memory to
 * the spool (one write and one fdatasync for all of it) while Redis is away,
 * and starts a replay round when the store is READY: first the oldest spool
 * segment, else the memory FIFO. A round pipelines up to REPLAY_WINDOW
 * commands; Redis runs one connection's commands in order, so the order
 * is kept. A round ends when every command sent has an answer:
 *   - a segment whose lines were all applied (or dead-lettered) is deleted;
 *   - after an outage (NULL reply, OOM, ...) nothing is deleted and the next
 *     round resends from the start: the event ids make what was already
 *     applied a duplicate, which changes nothing.
 * Memory records leave the FIFO as their answers arrive.
 */
#include "notifd/fast/feedback_queue.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "notifd/core/feedback_retry.h"
#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/events/spool.h"

#define TICK_MS 100
#define REPLAY_WINDOW 256
#define RETRY_AFTER_FAILURE_MS 500
#define SEGMENT_BYTES ((uint64_t)4 << 20)

typedef struct fbq_item {
    char *line;                     /* the record's JSON, no newline */
    size_t len;
    uint64_t seq;                   /* position in the FIFO, for matching answers */
    bool done;                      /* dead-lettered; leaves when it reaches the head */
} fbq_item_t;

typedef enum { ROUND_IDLE, ROUND_SEGMENT, ROUND_MEMORY } round_source_t;

typedef struct fbq {
    app_t *app;
    spool_t *spool;
    uv_timer_t tick;
    uint64_t instance;              /* random per process run, in generated ids */
    uint64_t next_id;
    uint64_t next_item_seq;
    bool stopped, timer_closed;

    fbq_item_t *items;              /* FIFO: items[head .. head + count) */
    size_t head, count, cap;
    uint64_t generation;            /* +1 each time memory goes to the spool */

    round_source_t source;
    size_t inflight;
    bool failed;                    /* an outage ended this round early */
    uint64_t retry_at_ms;           /* no new round before this (after a failure) */
    size_t mem_sent;                /* FIFO items sent in this round */
    uint64_t seg_seq;
    char *seg_buf;
    size_t seg_len, seg_off;

    uint64_t spill_retry_at_ms;
    uint64_t full_logged_ms;
    struct {
        uint64_t queued, replayed, duplicates, spooled, dead_lettered, refused;
    } n;
} fbq_t;

typedef struct replay_cmd {
    fbq_t *q;
    config_t *cfg;                  /* the snapshot rec was parsed under (channel indexes) */
    json_t *rec;
    feedback_fields_t f;            /* points into rec */
    round_source_t source;
    uint64_t item_seq, generation;
} replay_cmd_t;

static fbq_t *queue_of(app_t *app) { return app == NULL ? NULL : app->feedback_queue; }

static void publish_gauges(fbq_t *q)
{
    metrics_feedback_set_queue_depth(q->app->metrics, (int64_t)q->count);
    metrics_feedback_set_spool_bytes(q->app->metrics, (int64_t)spool_bytes(q->spool));
}

static void add_count(fbq_t *q, metrics_feedback_t kind, uint64_t *cell, uint64_t n)
{
    *cell += n;
    metrics_feedback_add(q->app->metrics, kind, n);
}

static void free_memory(fbq_t *q)
{
    for (size_t i = 0; i < q->count; i++)
        free(q->items[q->head + i].line);
    q->head = q->count = 0;
}

static void maybe_free(fbq_t *q)
{
    if (q->stopped && q->timer_closed && q->inflight == 0) {
        free(q->items);
        free(q);
    }
}

/* Memory to the spool: all of it in one write, one fdatasync. 0, SPOOL_FULL
 * or -errno (memory unchanged). */
static int spill(fbq_t *q)
{
    const config_t *cfg = q->app->config;
    if (q->count == 0)
        return 0;
    if (cfg->feedback.spool_max_bytes == 0)
        return SPOOL_FULL;
    struct iovec *iov = malloc(q->count * 2 * sizeof *iov);
    if (iov == NULL)
        return -ENOMEM;
    int n = 0;
    for (size_t i = 0; i < q->count; i++) {
        const fbq_item_t *it = &q->items[q->head + i];
        if (it->done)
            continue;
        iov[n++] = (struct iovec){it->line, it->len};
        iov[n++] = (struct iovec){(void *)"\n", 1};
    }
    int rc = spool_appendv(q->spool, iov, n, true, cfg->feedback.spool_max_bytes);
    free(iov);
    uint64_t now = uv_now(q->app->loop);
    if (rc != 0) {
        if (now - q->full_logged_ms >= 10000 || q->full_logged_ms == 0) {
            q->full_logged_ms = now;
            if (rc == SPOOL_FULL)
                log_error("FEEDBACK SPOOL FULL; feedback is refused once memory is full too",
                          "spool_bytes=%" PRIu64 " spool_max_bytes=%lld queued=%zu",
                          spool_bytes(q->spool), (long long)cfg->feedback.spool_max_bytes,
                          q->count);
            else
                log_error("cannot write the feedback spool", "dir=\"%s\" error=\"%s\"",
                          spool_dir(q->spool), strerror(-rc));
        }
        q->spill_retry_at_ms = now + 1000;
        return rc;
    }
    add_count(q, METRICS_FEEDBACK_SPOOLED, &q->n.spooled, (uint64_t)n / 2);
    free_memory(q);
    /* Records sent from memory in this round are in the spool now: their
     * answers no longer pop anything, and the round sends no more. */
    q->generation++;
    if (q->source == ROUND_MEMORY)
        q->failed = true;
    publish_gauges(q);
    return 0;
}

static void dead_letter(fbq_t *q, const char *line, size_t len, const char *why)
{
    static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
    log_limited(&rl, LOG_ERROR, "queued feedback refused for good; written to the dead-letter file",
                "dir=\"%s\" reason=\"%s\"", spool_dir(q->spool), why);
    char *copy = malloc(len + 1);
    int rc = copy == NULL ? -ENOMEM : 0;
    if (rc == 0) {
        memcpy(copy, line, len);
        copy[len] = '\n';
        rc = spool_dead_letter(q->spool, copy, len + 1, true);
        free(copy);
    }
    if (rc != 0)
        log_error("cannot write the feedback dead-letter file; the event is lost",
                  "error=\"%s\"", strerror(-rc));
    add_count(q, METRICS_FEEDBACK_DEAD_LETTERED, &q->n.dead_lettered, 1);
}

/* The head leaves the FIFO, and with it the dead-lettered ones behind it. */
static void pop_head(fbq_t *q)
{
    do {
        free(q->items[q->head].line);
        q->head++;
        q->count--;
        if (q->mem_sent > 0)
            q->mem_sent--;
    } while (q->count > 0 && q->items[q->head].done);
    if (q->count == 0)
        q->head = 0;
}

/* The head of the FIFO leaves once its answer is in. */
static void pop_answered(fbq_t *q, const replay_cmd_t *c)
{
    if (c->source == ROUND_MEMORY && c->generation == q->generation && q->count > 0 &&
        q->items[q->head].seq == c->item_seq)
        pop_head(q);
}

/* Appends a record to the FIFO (which owns `line` from then on). */
static int push_item(fbq_t *q, char *line)
{
    if (q->head > 0 && q->head + q->count == q->cap) {
        memmove(q->items, q->items + q->head, q->count * sizeof *q->items);
        q->head = 0;
    }
    if (q->count == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        fbq_item_t *items = realloc(q->items, cap * sizeof *items);
        if (items == NULL)
            return -1;
        q->items = items;
        q->cap = cap;
    }
    q->items[q->head + q->count++] =
        (fbq_item_t){.line = line, .len = strlen(line), .seq = ++q->next_item_seq};
    return 0;
}

static void pump(fbq_t *q);

static void on_replayed(redisReply *reply, void *privdata)
{
    replay_cmd_t *c = privdata;
    fbq_t *q = c->q;
    q->inflight--;
    if (q->stopped) {
        /* The store failed what was in flight at the stop: those events are
         * in the spool (memory) or still in their segment. */
    } else if (reply == NULL ||
               (reply->type == REDIS_REPLY_ERROR &&
                feedback_error_is_outage(reply->str, reply->len))) {
        if (!q->failed) {
            static log_ratelimit_t rl = LOG_RATELIMIT_INIT(10000, 3);
            log_limited(&rl, LOG_WARN, "feedback replay interrupted; will resume",
                        "error=\"%s\"", reply == NULL ? "no reply" : reply->str);
        }
        q->failed = true;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        char *line = json_dumps(c->rec, JSON_COMPACT);
        dead_letter(q, line ? line : "{}", line ? strlen(line) : 2, reply->str);
        free(line);
        pop_answered(q, c);
    } else {
        long long result = reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
        if (feedback_applied(q->app, c->cfg, &c->f, result))
            add_count(q, METRICS_FEEDBACK_REPLAYED, &q->n.replayed, 1);
        else
            q->n.duplicates++;
        pop_answered(q, c);
    }
    json_decref(c->rec);
    config_release(c->cfg);
    free(c);
    if (q->stopped)
        maybe_free(q);
    else
        pump(q);
}

/* Parses and sends one record. Returns 1 sent, 0 dead-lettered (not a
 * valid record under this config), -1 the store is not ready. */
static int send_record(fbq_t *q, const char *line, size_t len, round_source_t source,
                       uint64_t item_seq)
{
    const config_t *cfg = q->app->config;
    replay_cmd_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -1;
    *c = (replay_cmd_t){.q = q, .source = source, .item_seq = item_seq,
                        .generation = q->generation};
    json_error_t err;
    const char *why = "not a JSON object";
    c->rec = json_loadb(line, len, 0, &err);
    if (!json_is_object(c->rec) || !feedback_parse(c->rec, cfg, 0, 0, &c->f, &why)) {
        dead_letter(q, line, len, why);
        json_decref(c->rec);
        free(c);
        return 0;
    }
    c->cfg = config_acquire(q->app->config);
    if (feedback_send(q->app, cfg, &c->f, on_replayed, c) != 0) {
        config_release(c->cfg);
        json_decref(c->rec);
        free(c);
        return -1;
    }
    q->inflight++;
    return 1;
}

static bool start_round(fbq_t *q)
{
    const config_t *cfg = q->app->config;
    uint64_t seq;
    q->failed = false;
    q->mem_sent = 0;
    if (spool_oldest(q->spool, &seq)) {
        /* Bigger than any spill this config writes: set aside unread. */
        size_t max = (size_t)SEGMENT_BYTES +
                     (size_t)cfg->feedback.queue_max * (cfg->limits.max_line_bytes + 1);
        int rc = spool_read(q->spool, seq, max, &q->seg_buf, &q->seg_len);
        if (rc != 0) {
            log_error("cannot read a feedback spool segment; quarantined",
                      "dir=\"%s\" seq=%" PRIu64 " error=\"%s\"", spool_dir(q->spool), seq,
                      strerror(-rc));
            spool_quarantine(q->spool, seq);
            return false;
        }
        q->seg_seq = seq;
        q->seg_off = 0;
        q->source = ROUND_SEGMENT;
        return true;
    }
    if (q->count > 0) {
        q->source = ROUND_MEMORY;
        return true;
    }
    return false;
}

static void end_round(fbq_t *q)
{
    if (q->source == ROUND_SEGMENT) {
        if (!q->failed && q->seg_off >= q->seg_len) {
            spool_remove(q->spool, q->seg_seq);
            log_info("feedback spool segment applied", "seq=%" PRIu64, q->seg_seq);
        }
        free(q->seg_buf);
        q->seg_buf = NULL;
    }
    if (q->failed)
        q->retry_at_ms = uv_now(q->app->loop) + RETRY_AFTER_FAILURE_MS;
    q->source = ROUND_IDLE;
    publish_gauges(q);
}

/* Sends what the round has next, up to the window; ends the round once
 * every answer is in, and starts the next one while Redis is ready. */
static void pump(fbq_t *q)
{
    for (;;) {
        if (q->source == ROUND_IDLE) {
            if (store_state(q->app->store) != STORE_READY ||
                uv_now(q->app->loop) < q->retry_at_ms || !start_round(q))
                return;
        }
        while (!q->failed && q->inflight < REPLAY_WINDOW) {
            int rc;
            if (q->source == ROUND_SEGMENT) {
                if (q->seg_off >= q->seg_len)
                    break;
                const char *at = q->seg_buf + q->seg_off;
                const char *nl = memchr(at, '\n', q->seg_len - q->seg_off);
                size_t len = nl ? (size_t)(nl - at) : q->seg_len - q->seg_off;
                rc = len == 0 ? 0 : send_record(q, at, len, ROUND_SEGMENT, 0);
                if (rc >= 0)
                    q->seg_off += len + (nl != NULL);
            } else {
                if (q->mem_sent >= q->count)
                    break;
                fbq_item_t *it = &q->items[q->head + q->mem_sent];
                if (it->done) {
                    q->mem_sent++;
                    continue;
                }
                rc = send_record(q, it->line, it->len, ROUND_MEMORY, it->seq);
                if (rc == 0) {
                    /* Dead-lettered unsent: it leaves the FIFO now if it
                     * is the head, else when the ones before it do. */
                    it->done = true;
                    if (q->mem_sent == 0) {
                        q->mem_sent++;
                        pop_head(q);
                        continue;
                    }
                }
                if (rc >= 0)
                    q->mem_sent++;
            }
            if (rc < 0)
                q->failed = true;
        }
        if (q->inflight > 0)
            return;
        bool failed = q->failed;
        end_round(q);
        if (failed)
            return;
    }
}

static void on_tick_closed(uv_handle_t *h)
{
    fbq_t *q = h->data;
    q->timer_closed = true;
    maybe_free(q);
}

static void on_tick(uv_timer_t *t)
{
    fbq_t *q = t->data;
    uint64_t now = uv_now(q->app->loop);
    /* Memory waits for its round unless a round is reading it; the spool
     * makes it survive a crash, and keeps memory free for the next ones. */
    if (q->count > 0 && q->source != ROUND_MEMORY && now >= q->spill_retry_at_ms)
        spill(q);
    pump(q);
    publish_gauges(q);
}

int feedback_queue_start(app_t *app)
{
    const config_t *cfg = app->config;
    fbq_t *q = calloc(1, sizeof *q);
    if (q == NULL) {
        log_error("cannot start the feedback queue", "reason=\"out of memory\"");
        return -1;
    }
    q->app = app;
    char why[256];
    q->spool = spool_open(cfg->feedback.spool_dir, SEGMENT_BYTES, why, sizeof why);
    if (q->spool == NULL) {
        log_error("cannot open the feedback spool", "dir=\"%s\" reason=\"%s\"",
                  cfg->feedback.spool_dir, why);
        free(q);
        return -1;
    }
    if (getrandom(&q->instance, sizeof q->instance, GRND_NONBLOCK) != (ssize_t)sizeof q->instance)
        q->instance = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ uv_hrtime();
    if (spool_segments(q->spool) > 0)
        log_info("feedback spool found; replaying it once Redis is ready",
                 "dir=\"%s\" segments=%zu bytes=%" PRIu64, spool_dir(q->spool),
                 spool_segments(q->spool), spool_bytes(q->spool));
    uv_timer_init(app->loop, &q->tick);
    q->tick.data = q;
    uv_timer_start(&q->tick, on_tick, TICK_MS, TICK_MS);
    app->feedback_queue = q;
    publish_gauges(q);
    return 0;
}

bool feedback_queue_busy(app_t *app)
{
    fbq_t *q = queue_of(app);
    return q != NULL &&
           (q->count > 0 || q->source != ROUND_IDLE || spool_segments(q->spool) > 0);
}

bool feedback_queue_live_id(app_t *app, char *out, size_t cap)
{
    fbq_t *q = queue_of(app);
    if (q == NULL)
        return false;
    feedback_queued_event_id(out, cap, q->instance, ++q->next_id);
    return true;
}

int feedback_queue_put(app_t *app, const config_t *cfg, const feedback_fields_t *f,
                       const char **why)
{
    fbq_t *q = queue_of(app);
    if (q == NULL) {
        *why = "notifd is stopping and the feature store did not take the event; retry it";
        return -1;
    }
    if (q->count >= (size_t)cfg->feedback.queue_max && spill(q) != 0) {
        add_count(q, METRICS_FEEDBACK_REFUSED, &q->n.refused, 1);
        *why = "the feature store is unavailable and the feedback spool is full "
               "(feedback.queue_max, feedback.spool_max_bytes); retry the event later";
        return -1;
    }
    char id[FEEDBACK_QUEUED_ID_MAX];
    feedback_queued_event_id(id, sizeof id, q->instance, ++q->next_id);
    json_t *rec = feedback_record(cfg, f, id);
    char *line = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (line == NULL || push_item(q, line) != 0) {
        free(line);
        *why = "out of memory";
        return -1;
    }
    add_count(q, METRICS_FEEDBACK_QUEUED, &q->n.queued, 1);
    return 0;
}

void feedback_queue_stop(app_t *app)
{
    fbq_t *q = queue_of(app);
    if (q == NULL)
        return;
    app->feedback_queue = NULL;
    size_t waiting = q->count;
    if (waiting > 0) {
        int rc = spill(q);
        if (rc == 0)
            log_info("feedback queue spooled at stop", "events=%zu dir=\"%s\"", waiting,
                     spool_dir(q->spool));
        else
            log_error("FEEDBACK LOST at stop: the spool could not take the queue",
                      "events=%zu error=\"%s\"", waiting,
                      rc == SPOOL_FULL ? "spool full" : strerror(-rc));
    }
    q->stopped = true;
    free_memory(q);
    free(q->seg_buf);
    q->seg_buf = NULL;
    spool_close(q->spool);
    q->spool = NULL;
    uv_close((uv_handle_t *)&q->tick, on_tick_closed);
}

void feedback_queue_stats(app_t *app, json_t *obj)
{
    fbq_t *q = queue_of(app);
    if (q == NULL)
        return;
    json_object_set_new(
        obj, "feedback_queue",
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "queued", (json_int_t)q->n.queued,
                  "replayed", (json_int_t)q->n.replayed, "duplicates",
                  (json_int_t)q->n.duplicates, "spooled", (json_int_t)q->n.spooled,
                  "dead_lettered", (json_int_t)q->n.dead_lettered, "refused",
                  (json_int_t)q->n.refused, "queue_depth", (json_int_t)q->count, "spool_bytes",
                  (json_int_t)spool_bytes(q->spool), "spool_segments",
                  (json_int_t)spool_segments(q->spool), "replaying", q->source != ROUND_IDLE));
}
