/*
 * events_delivery.c - the event sink's HTTP side: POSTing the current batch
 * with libcurl (one easy handle, reused, in the worker's multi handle so the
 * connection is kept alive), and what a finished request means: 2xx sent,
 * a 4xx dead-lettered, anything else retried after a capped, jittered
 * backoff. Its own file because it is the only code that talks to curl
 * about a transfer; it runs on the worker thread (events_worker.c).
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "events_internal.h"
#include "notifd/events/spool.h"
#include "notifd/lib/rng.h"
#include "notifd/log.h"

static size_t on_response_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    events_t *ev = userdata;
    size_t n = size * nmemb, room = RESPONSE_SNIPPET - ev->resp_len;
    size_t k = n < room ? n : room;
    for (size_t i = 0; i < k; i++) {
        /* Kept for a log line: no quotes or control characters. */
        char c = ptr[i];
        ev->resp[ev->resp_len++] = (c == '"' || (unsigned char)c < 0x20) ? ' ' : c;
    }
    ev->resp[ev->resp_len] = '\0';
    return n;
}

void ev_abort_in_flight(events_t *ev)
{
    if (!ev->in_flight)
        return;
    curl_multi_remove_handle(ev->multi, ev->easy);
    ev->in_flight = false;
}

/* Options are set per request, never while the handle is in the multi, so
 * a reload can change the URL or timeout between two batches. The
 * connection cache belongs to the multi handle, so the TCP connection is
 * kept alive across requests. */
void ev_start_send(events_t *ev)
{
    CURL *e = ev->easy;
    curl_easy_setopt(e, CURLOPT_URL, ev->cfg.url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, ev->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, ev->user_agent);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)ev->cur.len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, ev->cur.data);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)ev->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ev->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_response_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, ev);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, ev->curl_err);
    ev->curl_err[0] = '\0';
    ev->resp_len = 0;
    ev->resp[0] = '\0';
    CURLMcode mc = curl_multi_add_handle(ev->multi, e);
    if (mc != CURLM_OK) {
        /* Cannot even start: treat as a connection error on the next turn. */
        snprintf(ev->curl_err, sizeof ev->curl_err, "%s", curl_multi_strerror(mc));
        ev->down = true;
        ev->retry_at_ms = ev_now_ms() + (uint64_t)ev->cfg.retry_max_ms;
        return;
    }
    ev->in_flight = true;
}

/* A batch is off our hands (delivered or dead-lettered). */
static void batch_done(events_t *ev)
{
    bool from_spool = ev->cur.source == FROM_SPOOL;
    if (from_spool)
        ev->replay_off = ev->cur.spool_end;
    else
        ev_set_depth(ev, -(int64_t)ev->cur.count, -(int64_t)ev->cur.len);
    ev_batch_clear(ev);
    if (from_spool && ev->replay_off == ev->replay_len) {
        /* Remove a delivered segment at once, so a stop right now does not
         * replay it again at the next start. (Bad lines after the last
         * batch are left for ev_next_replay_batch to dead-letter.) */
        spool_remove(ev->spool, ev->replay_seq);
        ev_replay_reset(ev);
        ev_publish_spool_gauges(ev);
    }
}

static void endpoint_up(events_t *ev)
{
    if (ev->down)
        log_info("event endpoint reachable again", "url=%s", ev->cfg.url);
    ev->down = false;
    ev->backoff_ms = 0;
    ev->retry_at_ms = 0;
    atomic_store(&ev->endpoint, ENDPOINT_UP);
}

static void on_complete(events_t *ev, CURLcode res, long status)
{
    if (res == CURLE_OK && status >= 200 && status < 300) {
        ev_count(ev, EVC_SENT, ev->cur.count);
        endpoint_up(ev);
        batch_done(ev);
        return;
    }
    bool retry = res != CURLE_OK || status >= 500 || status == 408 || status == 429;
    if (!retry) {
        log_limited(&ev->rl_reject, LOG_ERROR,
                    "event endpoint rejected a batch; written to the dead-letter file",
                    "url=%s status=%ld events=%zu file=\"%s/%s\" response=\"%s\"", ev->cfg.url,
                    status, ev->cur.count, ev->spool_path, SPOOL_DEAD_LETTER_NAME, ev->resp);
        endpoint_up(ev);
        ev_dead_letter(ev, ev->cur.data, ev->cur.len, ev->cur.count);
        batch_done(ev);
        return;
    }
    ev_count(ev, EVC_RETRIED, ev->cur.count);
    ev->down = true;
    atomic_store(&ev->endpoint, ENDPOINT_DOWN);
    int b = ev->backoff_ms ? ev->backoff_ms * 2 : ev->cfg.retry_min_ms;
    ev->backoff_ms = b > ev->cfg.retry_max_ms ? ev->cfg.retry_max_ms : b;
    uint64_t jitter = rng_next_u64(&ev->jitter) % (uint64_t)(ev->backoff_ms / 4 + 1);
    ev->retry_at_ms = ev_now_ms() + (uint64_t)ev->backoff_ms + jitter;
    if (res != CURLE_OK)
        log_limited(&ev->rl_fail, LOG_WARN, "event delivery failed; will retry",
                    "url=%s error=\"%s\" events=%zu retry_in_ms=%d", ev->cfg.url,
                    ev->curl_err[0] ? ev->curl_err : curl_easy_strerror(res), ev->cur.count,
                    ev->backoff_ms);
    else
        log_limited(&ev->rl_fail, LOG_WARN, "event delivery failed; will retry",
                    "url=%s status=%ld events=%zu retry_in_ms=%d response=\"%s\"", ev->cfg.url,
                    status, ev->cur.count, ev->backoff_ms, ev->resp);
    if (ev->stopping)
        ev->stop_direct = false; /* no retries at stop: spool the rest */
}

void ev_drive_transfer(events_t *ev)
{
    if (!ev->in_flight)
        return;
    int running = 0;
    curl_multi_perform(ev->multi, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(ev->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE || msg->easy_handle != ev->easy)
            continue;
        CURLcode res = msg->data.result;
        long status = 0;
        curl_easy_getinfo(ev->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(ev->multi, ev->easy); /* invalidates msg */
        ev->in_flight = false;
        on_complete(ev, res, status);
    }
}

