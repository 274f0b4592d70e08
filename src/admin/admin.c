/*
 * admin.c - the admin HTTP endpoint: /metrics, /healthz, /readyz (see
 * admin.h).
 *
 * Why libmicrohttpd with its own thread rather than a server on the libuv
 * loop: HTTP parsing of hostile input is exactly the code worth taking from
 * a well-kept library, and a scrape that renders a few hundred lines must
 * not add latency to decisions. The price is a second thread, so the rule
 * here is strict: request handlers touch only the metrics registry, whose
 * cells are atomics. Everything else they need is copied in by the loop
 * thread (admin_publish), on a 250 ms timer, so /readyz lags a Redis state
 * change by at most that.
 */
#include "notifd/admin/admin.h"

#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "notifd/log.h"
#include "notifd/admin/metrics.h"

#define ADMIN_PUBLISH_MS 250
#define ADMIN_CONN_MEMORY (16u * 1024u)
#define ADMIN_BACKLOG 16u

typedef struct admin {
    app_t *app;
    metrics_t *metrics;          /* the only app state the HTTP thread reads */
    struct MHD_Daemon *httpd;
    uv_timer_t publish;
    uint64_t names_generation;   /* config generation whose channel names were published */
    /* libmicrohttpd logs each malformed request; a hostile client must not
     * be able to flood the journal. The limiter is shared by the HTTP
     * thread and the loop thread (start, stop), hence the lock. */
    pthread_mutex_t log_lock;
    log_ratelimit_t log_limit;
} admin_t;

void admin_publish(app_t *app)
{
    metrics_t *m = app->metrics;
    admin_t *a = app->admin;
    const config_t *cfg = app->config;
    metrics_publish_store(m, store_state(app->store), store_last_error(app->store),
                          store_counters(app->store));
    metrics_publish_server(m, server_counters(app->server));
    metrics_publish_config(m, cfg->generation, app->counters.reloads_ok,
                           app->counters.reloads_failed);
    metrics_publish_stopping(m, app->stopping);
    if (a == NULL || a->names_generation != cfg->generation) {
        metrics_set_channel_names(m, cfg->channels, cfg->n_channels);
        metrics_set_limit_tag_names(m, cfg->rate_limits.tags, cfg->rate_limits.n_tags);
        metrics_set_arm_names(m, 0, cfg->policy.fast_layer.names, cfg->policy.fast_layer.n_arms);
        metrics_set_arm_names(m, 1, cfg->policy.slow_layer.names, cfg->policy.slow_layer.n_arms);
        if (a != NULL)
            a->names_generation = cfg->generation;
    }
}

static void on_publish(uv_timer_t *t)
{
    admin_t *a = t->data;
    admin_publish(a->app);
}

/* ---- HTTP thread --------------------------------------------------------- */

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned int status,
                               const char *content_type, char *body, size_t len,
                               enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO; /* closes the connection */
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *conn, unsigned int status,
                                    const char *text)
{
    return respond(conn, status, "text/plain; charset=utf-8", (char *)text, strlen(text),
                   MHD_RESPMEM_MUST_COPY);
}

/* Runs on the libmicrohttpd thread: reads the registry only. A response is
 * queued on the first call, before any request body is read; libmicrohttpd
 * then discards the body, so a client cannot make us buffer one. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    admin_t *a = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                            "method not allowed: the admin endpoint is read-only (GET)\n");
    if (strcmp(url, "/metrics") == 0) {
        char *text = NULL;
        size_t len = metrics_render(a->metrics, &text);
        if (text == NULL)
            return respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len,
                       MHD_RESPMEM_MUST_FREE);
    }
    if (strcmp(url, "/healthz") == 0)
        return respond_text(conn, MHD_HTTP_OK, "ok\n");
    if (strcmp(url, "/readyz") == 0) {
        char why[256], body[300];
        bool ready = metrics_ready(a->metrics, why, sizeof why);
        snprintf(body, sizeof body, "%s%s\n", ready ? "" : "not ready: ", why);
        return respond_text(conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body);
    }
    return respond_text(conn, MHD_HTTP_NOT_FOUND,
                        "not found: try /metrics, /healthz or /readyz\n");
}

/* libmicrohttpd's diagnostics (bind failures, malformed requests) go to our
 * structured log as one line each; they come from the HTTP thread, which
 * log_write allows. */
__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt,
                                                            va_list ap)
{
    admin_t *a = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    for (char *p = msg; *p != '\0'; p++)
        if (*p == '"')
            *p = '\'';
    pthread_mutex_lock(&a->log_lock);
    log_limited(&a->log_limit, LOG_WARN, "admin http", "detail=\"%s\"", msg);
    pthread_mutex_unlock(&a->log_lock);
}

/* ---- lifecycle ----------------------------------------------------------- */

int admin_start(app_t *app)
{
    const config_t *cfg = app->config;
    if (!cfg->admin_enabled)
        return 0;
    if (app->metrics == NULL) {
        log_error("cannot start admin endpoint", "reason=\"no metrics registry\"");
        return -1;
    }
    char port[8];
    snprintf(port, sizeof port, "%d", cfg->admin_listen.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(cfg->admin_listen.host, port, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        log_error("cannot start admin endpoint", "addr=%s:%d error=\"%s\"",
                  cfg->admin_listen.host, cfg->admin_listen.port, gai_strerror(gai));
        return -1;
    }

    admin_t *a = calloc(1, sizeof *a);
    if (a == NULL) {
        freeaddrinfo(ai);
        log_error("cannot start admin endpoint", "reason=\"out of memory\"");
        return -1;
    }
    a->app = app;
    a->metrics = app->metrics;
    pthread_mutex_init(&a->log_lock, NULL);
    a->log_limit = (log_ratelimit_t)LOG_RATELIMIT_INIT(10000, 10);
    app->admin = a;
    /* Publish before the first request can arrive, so /readyz never answers
     * from an empty registry. */
    admin_publish(app);

    /* Connection bounds (limits.admin_*). The per-address limit is the
     * total: probes, scrapers and anything else local all come from one
     * loopback address, so a lower per-address limit let a few idle
     * connections (8 were enough) refuse every probe. What keeps idle
     * connections from holding the endpoint is the timeout: a connection
     * silent for admin_idle_timeout_s is closed, keep-alive ones included
     * (a scraper reconnects, at the cost of a handshake). */
    unsigned int max_conns = (unsigned int)cfg->limits.admin_max_connections;
    unsigned int idle_s = (unsigned int)cfg->limits.admin_idle_timeout_s;
    /* AUTO picks epoll or poll: select() would break once the producer
     * server's descriptors pass FD_SETSIZE. */
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    a->httpd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, a,
        /* first, so that every later diagnostic goes to our log */
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, a,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_CONNECTION_LIMIT, max_conns,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, max_conns,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ADMIN_CONN_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, idle_s,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, ADMIN_BACKLOG,
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
        MHD_OPTION_SIGPIPE_HANDLED_BY_APP, (int)1, /* daemon.c ignores SIGPIPE */
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (a->httpd == NULL) {
        log_error("cannot start admin endpoint", "addr=%s:%d reason=\"cannot bind or listen\"",
                  cfg->admin_listen.host, cfg->admin_listen.port);
        app->admin = NULL;
        pthread_mutex_destroy(&a->log_lock);
        free(a);
        return -1;
    }
    uv_timer_init(app->loop, &a->publish);
    a->publish.data = a;
    uv_timer_start(&a->publish, on_publish, ADMIN_PUBLISH_MS, ADMIN_PUBLISH_MS);
    /* The timer alone must never keep a stopping daemon alive. */
    uv_unref((uv_handle_t *)&a->publish);
    log_info("admin endpoint listening",
             "addr=%s:%d paths=/metrics,/healthz,/readyz max_connections=%u idle_timeout_s=%u",
             cfg->admin_listen.host, cfg->admin_listen.port, max_conns, idle_s);
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    admin_t *a = h->data;
    pthread_mutex_destroy(&a->log_lock);
    free(a);
}

void admin_stop(app_t *app)
{
    admin_t *a = app->admin;
    if (a == NULL)
        return;
    app->admin = NULL;
    /* Joins the HTTP thread: after this no one reads the registry, so the
     * daemon may free it. */
    MHD_stop_daemon(a->httpd);
    a->httpd = NULL;
    uv_timer_stop(&a->publish);
    uv_close((uv_handle_t *)&a->publish, on_timer_closed);
}
