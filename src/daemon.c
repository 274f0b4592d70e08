/*
 * daemon.c - process lifecycle (see daemon.h).
 *
 * Signals are table-driven: each signal maps to one action, in one screen.
 * libuv delivers them on the loop thread, so actions may touch any loop
 * state. SIGPIPE is ignored: a client that hangs up mid-write is an EPIPE
 * on that connection, not the end of the daemon.
 *
 * Stopping: stop accepting and reading, answer every request already
 * received (they may wait on Redis), flush, then close Redis and exit 0. If
 * that takes longer than shutdown_grace_s, what is left is closed anyway.
 */
#include "notifd/daemon.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "notifd/admin/admin.h"
#include "notifd/events/events.h"
#include "notifd/fast/feedback_queue.h"
#include "notifd/log.h"
#include "notifd/admin/metrics.h"
#include "notifd/ops.h"
#include "notifd/policy.h"
#include "notifd/version.h"

typedef struct daemon_ctx {
    app_t app;
    uv_signal_t signals[3];
    uv_timer_t grace;
    uv_timer_t watchdog;
    bool watchdog_on;
    bool finished;
} daemon_ctx_t;

static void daemon_stop(app_t *app);
static void on_reload_signal(app_t *app) { daemon_reload(app); }

static const struct {
    int signo;
    const char *name;
    void (*action)(app_t *app);
} signal_table[] = {
    {SIGHUP, "SIGHUP", on_reload_signal},
    {SIGTERM, "SIGTERM", daemon_stop},
    {SIGINT, "SIGINT", daemon_stop},
};

#define N_SIGNALS (sizeof signal_table / sizeof signal_table[0])

static daemon_ctx_t *ctx_of(app_t *app) { return (daemon_ctx_t *)app; }

static void on_signal(uv_signal_t *h, int signo)
{
    app_t *app = h->data;
    for (size_t i = 0; i < N_SIGNALS; i++)
        if (signal_table[i].signo == signo) {
            log_info("signal", "signal=%s", signal_table[i].name);
            signal_table[i].action(app);
        }
}

bool daemon_reload(app_t *app)
{
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)(uv_hrtime() / 1000));
    config_errors_t errs;
    config_errors_init(&errs);
    config_t *next = config_load_file(app->config_path, app->config->generation + 1, &errs);
    if (next == NULL) {
        app->counters.reloads_failed++;
        for (size_t i = 0; i < errs.count; i++)
            log_error("reload rejected, keeping the running config", "problem=\"%s\"",
                      errs.items[i]);
        config_errors_free(&errs);
        sd_notify(0, "READY=1\nSTATUS=reload rejected; running the previous config");
        return false;
    }
    config_errors_free(&errs);
    const config_t *cur = app->config;
    if (strcmp(cur->listen.host, next->listen.host) != 0 || cur->listen.port != next->listen.port)
        log_warn("listen changed; it takes effect at the next restart", "%s", "");
    if (cur->admin_enabled != next->admin_enabled ||
        strcmp(cur->admin_listen.host, next->admin_listen.host) != 0 ||
        cur->admin_listen.port != next->admin_listen.port)
        log_warn("admin_listen changed; it takes effect at the next restart", "%s", "");
    if (cur->limits.admin_max_connections != next->limits.admin_max_connections ||
        cur->limits.admin_idle_timeout_s != next->limits.admin_idle_timeout_s)
        log_warn("limits.admin_* changed; they take effect at the next restart", "%s", "");
    if (strcmp(cur->feedback.spool_dir, next->feedback.spool_dir) != 0)
        log_warn("feedback.spool_dir changed; it takes effect at the next restart", "%s", "");
    log_set_level((log_level_t)next->log_level);
    server_apply_config(app->server, next);
    store_configure(app->store, next);
    policy_apply_config(app, next);
    events_apply_config(app, next);
    app_config_swap(app, next);
    app->counters.reloads_ok++;
    log_info("config reloaded", "generation=%llu", (unsigned long long)next->generation);
    sd_notify(0, "READY=1\nSTATUS=serving");
    return true;
}

static void observe_redis_rtt(void *metrics, double seconds)
{
    metrics_observe_redis_rtt(metrics, seconds);
}

static bool store_is_congested(void *store) { return store_congested(store); }
static void on_store_drained(void *server) { server_gate_opened(server); }

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* The last step of a stop: everything answered (or the grace period is
 * over). Closing every handle lets uv_run return. */
static void daemon_finish(app_t *app)
{
    daemon_ctx_t *d = ctx_of(app);
    if (d->finished)
        return;
    d->finished = true;
    admin_stop(app); /* joins the HTTP thread before store and server go away */
    store_close(app->store); /* fails any request still waiting on Redis */
    /* After the store: the feedback it failed just now was queued; all of
     * the queue goes to the spool. */
    feedback_queue_stop(app);
    server_close(app->server);
    /* After the store: requests failed just now may still publish events.
     * A no-op when on_drained already stopped the sink; on the grace path it
     * spools what is queued without trying the endpoint. */
    events_stop(app, NULL, NULL);
    /* Last: the decisions failed by store_close above still use the policy
     * state (arm counters, the per-member gates). */
    policy_stop(app);
    for (size_t i = 0; i < N_SIGNALS; i++)
        close_handle((uv_handle_t *)&d->signals[i]);
    close_handle((uv_handle_t *)&d->grace);
    close_handle((uv_handle_t *)&d->watchdog);
}

static void on_events_stopped(void *arg) { daemon_finish(arg); }

static void on_drained(void *arg)
{
    app_t *app = arg;
    log_info("drained: every request answered", "%s", "");
    /* Every decision is answered, so every event is queued: flush (or
     * spool) them, then finish. */
    events_stop(app, on_events_stopped, app);
}

static void on_grace_over(uv_timer_t *t)
{
    app_t *app = t->data;
    log_warn("shutdown grace period over; closing what is left",
             "grace_s=%d", app->config->shutdown_grace_s);
    daemon_finish(app);
}

static void daemon_stop(app_t *app)
{
    daemon_ctx_t *d = ctx_of(app);
    if (app->stopping)
        return;
    app->stopping = true;
    sd_notify(0, "STOPPING=1");
    log_info("stopping", "grace_s=%d", app->config->shutdown_grace_s);
    uv_timer_start(&d->grace, on_grace_over, (uint64_t)app->config->shutdown_grace_s * 1000u, 0);
    server_drain(app->server, on_drained, app);
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    sd_notify(0, "WATCHDOG=1");
}

/* Every connection is a descriptor: lift the soft limit to the hard one (as
 * far as the unit allows), and say so when max_connections still cannot fit. */
static void raise_fd_limit(const config_t *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)cfg->limits.max_connections + 64 > rl.rlim_cur)
        log_warn("limits.max_connections is above the open-file limit; accepts will fail first",
                 "max_connections=%d nofile=%llu", cfg->limits.max_connections,
                 (unsigned long long)rl.rlim_cur);
}

int daemon_run(const char *config_path, config_t *cfg)
{
    daemon_ctx_t *d = calloc(1, sizeof *d);
    if (d == NULL) {
        config_release(cfg);
        return 1;
    }
    app_t *app = &d->app;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    raise_fd_limit(cfg);

    app->loop = uv_default_loop();
    snprintf(app->config_path, sizeof app->config_path, "%s", config_path);
    app->config = cfg;
    pthread_mutex_init(&app->config_lock, NULL);
    app->started_unix = (int64_t)time(NULL);
    app->started_ms = uv_now(app->loop);
    app->metrics = metrics_create();
    log_set_level((log_level_t)cfg->log_level);

    app->store = store_create(app->loop);
    app->server = server_create(app->loop, ops_handle_line, ops_handle_too_long, app);
    if (app->store == NULL || app->server == NULL || policy_start(app) != 0) {
        log_error("cannot start", "reason=\"out of memory or policy start failed\"");
        return 1;
    }
    store_set_rtt_observer(app->store, observe_redis_rtt, app->metrics);
    /* Back-pressure: producers are not read while notifd's Redis queue is
     * more than half full (store.h). */
    server_set_gate(app->server, store_is_congested, app->store);
    store_set_drain_observer(app->store, on_store_drained, app->server);
    store_configure(app->store, cfg);
    if (events_start(app) != 0 || feedback_queue_start(app) != 0)
        return 1;

    int rc = server_listen(app->server, cfg);
    if (rc != 0) {
        log_error("cannot listen", "addr=%s:%d error=\"%s\"", cfg->listen.host, cfg->listen.port,
                  uv_strerror(rc));
        return 1;
    }
    if (admin_start(app) != 0)
        return 1;
    for (size_t i = 0; i < N_SIGNALS; i++) {
        uv_signal_init(app->loop, &d->signals[i]);
        d->signals[i].data = app;
        uv_signal_start(&d->signals[i], on_signal, signal_table[i].signo);
    }
    uv_timer_init(app->loop, &d->grace);
    d->grace.data = app;
    uv_timer_init(app->loop, &d->watchdog);
    uint64_t watchdog_usec = 0;
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
        /* Ping at half the interval: the loop being able to run this timer
         * is exactly what the watchdog should vouch for. */
        uv_timer_start(&d->watchdog, on_watchdog, watchdog_usec / 2000, watchdog_usec / 2000);
    }
    log_info("listening", "addr=%s:%d version=%s config=%s", cfg->listen.host, cfg->listen.port,
             NOTIFD_VERSION, config_path);
    sd_notify(0, "READY=1\nSTATUS=serving");

    uv_run(app->loop, UV_RUN_DEFAULT);

    int exit_code = app->exit_code;
    log_info("stopped", "exit_code=%d", exit_code);
    int close_rc = uv_loop_close(app->loop);
    if (close_rc != 0)
        log_warn("loop closed with handles still open", "error=%s", uv_strerror(close_rc));
    config_release(app->config);
    pthread_mutex_destroy(&app->config_lock);
    metrics_free(app->metrics);
    free(d);
    return exit_code;
}
