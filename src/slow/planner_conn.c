/*
 * planner_conn.c - the planner worker's own Redis connection: opening it
 * (AUTH included) and reconnecting with backoff, one command at a time on
 * it, loading the plan-write script before each pass, and which error
 * replies are about a key rather than about Redis as a whole. Only the
 * worker thread touches it (planner_internal.h; planner.c runs the passes,
 * planner_partition.c and its neighbours pipeline on it).
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "planner_internal.h"

void planner_conn_drop(planner_t *pl)
{
    if (pl->c != NULL)
        redisFree(pl->c);
    pl->c = NULL;
    reply_arena_reset(&pl->arena);
    pl->out.len = 0; /* a group half formatted when the connection failed */
    pl->out.failed = false;
}

void planner_conn_failed(planner_t *pl, const config_t *cfg, planner_result_t *res,
                        const char *what)
{
    if (res->error[0] == '\0')
        snprintf(res->error, sizeof res->error, "redis: %s", what);
    planner_conn_drop(pl);
    if (pl->backoff_ms <= 0)
        pl->backoff_ms = cfg->redis.reconnect_min_ms;
    pl->next_connect_ms = planner_mono_ms() + (uint64_t)pl->backoff_ms;
    pl->backoff_ms *= 2;
    if (pl->backoff_ms > cfg->redis.reconnect_max_ms)
        pl->backoff_ms = cfg->redis.reconnect_max_ms;
}

static bool conn_settings_changed(const planner_t *pl, const config_t *cfg)
{
    const config_redis_t *r = &cfg->redis;
    return strcmp(pl->conn_host, r->host) != 0 || pl->conn_port != r->port ||
           strcmp(pl->conn_unix, r->unix_path) != 0 ||
           (pl->conn_password == NULL) != (r->password == NULL) ||
           (pl->conn_password != NULL && strcmp(pl->conn_password, r->password) != 0);
}

static struct timeval tv_ms(int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

/* One command on the worker's connection, with nothing else in flight.
 * NULL (and the connection dropped) on an I/O error or timeout; error
 * replies are returned. The reply lives until the next command. */
redisReply *planner_conn_command(planner_t *pl, const config_t *cfg, planner_result_t *res,
                                int argc, const char **argv, const size_t *lens)
{
    reply_arena_reset(&pl->arena);
    redisReply *r = redisCommandArgv(pl->c, argc, argv, lens);
    if (r == NULL)
        planner_conn_failed(pl, cfg, res, pl->c->errstr[0] ? pl->c->errstr : "no reply");
    return r;
}

/* Opens the connection (AUTH included). `force` ignores the reconnect
 * backoff. */
static bool conn_open(planner_t *pl, const config_t *cfg, bool force, planner_result_t *res)
{
    if (!force && planner_mono_ms() < pl->next_connect_ms) {
        snprintf(res->error, sizeof res->error,
                 "redis: unavailable, next connection attempt in %llu ms",
                 (unsigned long long)(pl->next_connect_ms - planner_mono_ms()));
        return false;
    }
    const config_redis_t *r = &cfg->redis;
    struct timeval ct = tv_ms(r->connect_timeout_ms);
    pl->c = r->unix_path[0] ? redisConnectUnixWithTimeout(r->unix_path, ct)
                            : redisConnectWithTimeout(r->host, r->port, ct);
    snprintf(pl->conn_host, sizeof pl->conn_host, "%s", r->host);
    pl->conn_port = r->port;
    snprintf(pl->conn_unix, sizeof pl->conn_unix, "%s", r->unix_path);
    free(pl->conn_password);
    pl->conn_password = r->password ? strdup(r->password) : NULL;
    if (pl->c == NULL || pl->c->err) {
        char why[160];
        snprintf(why, sizeof why, "connect failed: %s", pl->c ? pl->c->errstr : "out of memory");
        planner_conn_failed(pl, cfg, res, why);
        return false;
    }
    /* Replies in the arena; keep the read buffer (a pass streams MBs). */
    reply_arena_attach(pl->c->reader, &pl->arena);
    pl->c->reader->maxbuf = 0;
    int timeout = r->timeout_ms > PLANNER_MIN_TIMEOUT_MS ? r->timeout_ms : PLANNER_MIN_TIMEOUT_MS;
    redisSetTimeout(pl->c, tv_ms(timeout));
    if (r->password != NULL) {
        const char *argv[] = {"AUTH", r->password};
        size_t lens[] = {4, strlen(r->password)};
        redisReply *rep = planner_conn_command(pl, cfg, res, 2, argv, lens);
        if (rep == NULL)
            return false;
        if (rep->type == REDIS_REPLY_ERROR) {
            char why[160];
            snprintf(why, sizeof why, "AUTH failed: %s", rep->str);
            planner_conn_failed(pl, cfg, res, why);
            return false;
        }
    }
    return true;
}

/*
 * Makes sure the connection is up and the plan-write script is loaded; the
 * script is loaded on every pass, not only on connect, so a SCRIPT FLUSH
 * between two passes cannot fail a pass with NOSCRIPT. A kept connection
 * may have died since the last pass (Redis restarted, an idle timeout):
 * then the first command fails, and one fresh connection is tried at once
 * before the pass gives up.
 */
bool planner_conn_ensure(planner_t *pl, const config_t *cfg, bool force, planner_result_t *res)
{
    if (pl->c != NULL && (pl->c->err || conn_settings_changed(pl, cfg)))
        planner_conn_drop(pl);
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = pl->c != NULL;
        if (!reused && !conn_open(pl, cfg, force || attempt > 0, res))
            return false;
        const char *argv[] = {"SCRIPT", "LOAD", planner_script_plan_write};
        size_t lens[] = {6, 4, strlen(planner_script_plan_write)};
        redisReply *rep = planner_conn_command(pl, cfg, res, 3, argv, lens);
        if (rep == NULL) {
            if (!reused)
                return false;
            res->error[0] = '\0'; /* a stale connection: try a fresh one */
            continue;
        }
        if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
            char why[160];
            snprintf(why, sizeof why, "SCRIPT LOAD failed: %s",
                     rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
            planner_conn_failed(pl, cfg, res, why);
            return false;
        }
        memcpy(pl->sha_write, rep->str, 41);
        pl->backoff_ms = cfg->redis.reconnect_min_ms;
        return true;
    }
    return false;
}

bool planner_error_is_the_keys(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WRONGTYPE", 9) == 0;
}
