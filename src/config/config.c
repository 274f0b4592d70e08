/*
 * config.c - loading, validating and reference-counting the configuration.
 *
 * The daemon keys (listen, redis.*, limits.*, ...) are read here; the policy
 * keys (fast.*, slow.*, features.*) by config_policy.c. Defaults are set
 * first, then each present key overrides its default after its type and range
 * are checked. Cross-key rules (reconnect_min <= reconnect_max, ...) come
 * last. Secrets are read from their files here, so a missing token file is a
 * config error at load time, never a surprise at the first request.
 */
#include "notifd/config/config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notifd/config/config_policy.h"
#include "notifd/config/config_reader.h"
#include "notifd/log.h"


static const char *const top_level_keys[] = {
    "listen", "admin_listen", "redis", "auth_token_file", "planner", "events", "feedback", "limits",
    "log_level", "log_sample_every", "seed", "shutdown_grace_s", "channels",
    "fast", "slow", "features", "experiments", NULL,
};
static const char *const redis_keys[] = {
    "host", "port", "unix", "prefix", "password_file", "timeout_ms",
    "connect_timeout_ms", "reconnect_min_ms", "reconnect_max_ms", "max_in_flight",
    "max_queued", "probe_interval_ms", "tracking", NULL,
};
static const char *const planner_keys[] = {
    "interval_s", "batch_size", "lease_ms", "jitter", "enabled", "poll_s",
    "max_members_per_s", "nice", NULL,
};
static const char *const events_keys[] = {
    "url", "spool_dir", "batch_max", "flush_ms", "timeout_ms", "queue_max",
    "queue_max_bytes", "spool_max_bytes", "fsync", "retry_min_ms", "retry_max_ms", NULL,
};
static const char *const feedback_keys[] = {"spool_dir", "queue_max", "spool_max_bytes",
                                             "live_id_ttl_s", NULL};
static const char *const limits_keys[] = {
    "max_line_bytes", "max_connections", "max_output_bytes", "max_pipeline",
    "idle_timeout_s", "max_candidates", "ts_window_s", "admin_max_connections",
    "admin_idle_timeout_s", "global", "on_error", "shadow", NULL,
};
static const char *const rate_limit_keys[] = {"per_second", "burst", "shadow", "tags", NULL};
static const char *const tag_limit_keys[] = {"per_second", "burst", "shadow", NULL};

bool config_parse_endpoint(const char *text, config_endpoint_t *out, const char **why)
{
    const char *colon;
    size_t host_len;
    const char *host;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':') {
            *why = "expected \"[ipv6]:port\"";
            return false;
        }
        host = text + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL) {
            *why = "expected \"host:port\"";
            return false;
        }
        host = text;
        host_len = (size_t)(colon - text);
        if (memchr(host, ':', host_len) != NULL) {
            *why = "an IPv6 address must be written in brackets: \"[::1]:7400\"";
            return false;
        }
    }
    if (host_len == 0 || host_len >= sizeof out->host) {
        *why = "the host part is empty or too long";
        return false;
    }
    /* Digits only: strtol alone would also take " 80" and "+80". */
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 || port < 1 ||
        port > 65535) {
        *why = "the port must be a number in 1..65535";
        return false;
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = (int)port;
    return true;
}

/* Reads a secret (password, token) from a file: the first line, without
 * trailing whitespace. Secrets never live in the config itself so that the
 * config can be shared, logged and checked into version control. */
static char *read_secret_file(config_errors_t *errs, const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        config_errors_add(errs, key, "cannot read \"%s\": %s", path, strerror(errno));
        return NULL;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *nl = strpbrk(buf, "\r\n");
    if (nl != NULL)
        *nl = '\0';
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    if (n == 0) {
        config_errors_add(errs, key, "\"%s\" is empty", path);
        return NULL;
    }
    return strdup(buf);
}

static void defaults(config_t *cfg)
{
    snprintf(cfg->listen.host, sizeof cfg->listen.host, "127.0.0.1");
    cfg->listen.port = 7400;
    cfg->admin_enabled = true;
    snprintf(cfg->admin_listen.host, sizeof cfg->admin_listen.host, "127.0.0.1");
    cfg->admin_listen.port = 7401;

    snprintf(cfg->redis.host, sizeof cfg->redis.host, "127.0.0.1");
    cfg->redis.port = 6379;
    snprintf(cfg->redis.prefix, sizeof cfg->redis.prefix, "notif:");
    cfg->redis.timeout_ms = 1000;
    cfg->redis.connect_timeout_ms = 1000;
    cfg->redis.max_in_flight = 1024;
    cfg->redis.max_queued = 65536;
    cfg->redis.probe_interval_ms = 1000;
    cfg->redis.tracking = true;
    cfg->redis.reconnect_min_ms = 100;
    cfg->redis.reconnect_max_ms = 5000;

    cfg->planner.interval_s = 604800;
    cfg->planner.batch_size = 64;
    cfg->planner.lease_ms = 30000;
    cfg->planner.jitter_frac = 0.05;
    cfg->planner.enabled = true;
    cfg->planner.poll_s = 60;
    cfg->planner.max_members_per_s = 0;
    cfg->planner.nice = 10;

    snprintf(cfg->events.spool_dir, sizeof cfg->events.spool_dir, "var/spool");
    cfg->events.batch_max = 500;
    cfg->events.flush_ms = 200;
    cfg->events.timeout_ms = 5000;
    cfg->events.queue_max = 100000;
    cfg->events.queue_max_bytes = (int64_t)64 << 20;
    cfg->events.spool_max_bytes = (int64_t)1 << 30;
    cfg->events.fsync = 1;
    cfg->events.retry_min_ms = 100;
    cfg->events.retry_max_ms = 30000;

    snprintf(cfg->feedback.spool_dir, sizeof cfg->feedback.spool_dir, "var/feedback-spool");
    cfg->feedback.queue_max = 10000;
    cfg->feedback.spool_max_bytes = (int64_t)1 << 30;
    cfg->feedback.live_id_ttl_s = 60;

    cfg->limits.max_line_bytes = 64 * 1024;
    cfg->limits.max_connections = 10000;
    cfg->limits.max_output_bytes = 1024 * 1024;
    cfg->limits.max_pipeline = 1024;
    cfg->limits.idle_timeout_s = 300;
    cfg->limits.max_candidates = 1000;
    cfg->limits.ts_window_s = 365LL * 86400;
    cfg->limits.admin_max_connections = 64;
    cfg->limits.admin_idle_timeout_s = 5;

    cfg->log_level = LOG_INFO;
    cfg->log_sample_every = 0;
    cfg->seed = 0x6e6f74696664ull; /* "notifd" */
    cfg->shutdown_grace_s = 10;

    static const char *const default_channels[] = {"push", "email", "in_app"};
    cfg->n_channels = 3;
    for (int i = 0; i < 3; i++)
        snprintf(cfg->channels[i], sizeof cfg->channels[i], "%s", default_channels[i]);
}

static void parse_endpoint_key(config_errors_t *errs, json_t *root, const char *key,
                               config_endpoint_t *out, bool *enabled)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL)
        return;
    if (json_is_null(v) && enabled != NULL) {
        *enabled = false;
        return;
    }
    if (!json_is_string(v)) {
        config_errors_add(errs, key, "must be a \"host:port\" string%s",
                          enabled ? " or null" : "");
        return;
    }
    const char *why;
    config_endpoint_t ep;
    if (!config_parse_endpoint(json_string_value(v), &ep, &why)) {
        config_errors_add(errs, key, "\"%s\": %s", json_string_value(v), why);
        return;
    }
    *out = ep;
    if (enabled)
        *enabled = true;
}

static void parse_redis(config_errors_t *errs, json_t *root, config_t *cfg)
{
    json_t *o = config_get_object(errs, root, "", "redis");
    if (o == NULL)
        return;
    config_check_known(errs, o, "redis", redis_keys);
    config_redis_t *r = &cfg->redis;
    long long x;
    config_get_string(errs, o, "redis", "host", r->host, sizeof r->host, false, false);
    if (config_get_int(errs, o, "redis", "port", 1, 65535, &x))
        r->port = (int)x;
    config_get_string(errs, o, "redis", "unix", r->unix_path, sizeof r->unix_path, true, true);
    config_get_string(errs, o, "redis", "prefix", r->prefix, sizeof r->prefix, false, true);
    config_get_string(errs, o, "redis", "password_file", r->password_file,
                      sizeof r->password_file, true, false);
    if (config_get_int(errs, o, "redis", "timeout_ms", 1, 60000, &x))
        r->timeout_ms = (int)x;
    if (config_get_int(errs, o, "redis", "connect_timeout_ms", 1, 60000, &x))
        r->connect_timeout_ms = (int)x;
    if (config_get_int(errs, o, "redis", "max_in_flight", 1, 1000000, &x))
        r->max_in_flight = (int)x;
    if (config_get_int(errs, o, "redis", "max_queued", 16, 10000000, &x))
        r->max_queued = (int)x;
    if (config_get_int(errs, o, "redis", "probe_interval_ms", 0, 600000, &x))
        r->probe_interval_ms = (int)x;
    config_get_bool(errs, o, "redis", "tracking", &r->tracking);
    if (config_get_int(errs, o, "redis", "reconnect_min_ms", 1, 600000, &x))
        r->reconnect_min_ms = (int)x;
    if (config_get_int(errs, o, "redis", "reconnect_max_ms", 1, 600000, &x))
        r->reconnect_max_ms = (int)x;
    if (r->reconnect_min_ms > r->reconnect_max_ms)
        config_errors_add(errs, "redis.reconnect_min_ms", "must not exceed redis.reconnect_max_ms (%d)",
                          r->reconnect_max_ms);
    /* Member ids are embedded in keys between braces; a prefix with a brace
     * would move the Cluster hash tag off the member id. */
    if (strpbrk(r->prefix, "{}") != NULL)
        config_errors_add(errs, "redis.prefix", "must not contain '{' or '}'");
}

static void parse_planner(config_errors_t *errs, json_t *root, config_t *cfg)
{
    json_t *o = config_get_object(errs, root, "", "planner");
    if (o == NULL)
        return;
    config_check_known(errs, o, "planner", planner_keys);
    long long x;
    if (config_get_int(errs, o, "planner", "interval_s", 1, 366LL * 86400, &x))
        cfg->planner.interval_s = x;
    if (config_get_int(errs, o, "planner", "batch_size", 1, 100000, &x))
        cfg->planner.batch_size = (int)x;
    if (config_get_int(errs, o, "planner", "lease_ms", 100, 3600000, &x))
        cfg->planner.lease_ms = (int)x;
    config_get_double(errs, o, "planner", "jitter", 0.0, 0.5, &cfg->planner.jitter_frac);
    config_get_bool(errs, o, "planner", "enabled", &cfg->planner.enabled);
    if (config_get_int(errs, o, "planner", "poll_s", 1, 86400, &x))
        cfg->planner.poll_s = (int)x;
    if (config_get_int(errs, o, "planner", "max_members_per_s", 0, 10000000, &x))
        cfg->planner.max_members_per_s = (int)x;
    if (config_get_int(errs, o, "planner", "nice", 0, 19, &x))
        cfg->planner.nice = (int)x;
}

static void parse_events(config_errors_t *errs, json_t *root, config_t *cfg)
{
    json_t *o = config_get_object(errs, root, "", "events");
    if (o == NULL)
        return;
    config_check_known(errs, o, "events", events_keys);
    config_events_t *e = &cfg->events;
    long long x;
    if (config_get_string(errs, o, "events", "url", e->url, sizeof e->url, true, false) &&
        e->url[0] != '\0' && strncmp(e->url, "http://", 7) != 0 &&
        strncmp(e->url, "https://", 8) != 0)
        config_errors_add(errs, "events.url", "must start with http:// or https://");
    config_get_string(errs, o, "events", "spool_dir", e->spool_dir, sizeof e->spool_dir,
                      false, false);
    if (config_get_int(errs, o, "events", "batch_max", 1, 100000, &x))
        e->batch_max = (int)x;
    if (config_get_int(errs, o, "events", "flush_ms", 1, 600000, &x))
        e->flush_ms = (int)x;
    if (config_get_int(errs, o, "events", "timeout_ms", 1, 600000, &x))
        e->timeout_ms = (int)x;
    if (config_get_int(errs, o, "events", "queue_max", 1, 100000000, &x))
        e->queue_max = (int)x;
    /* At least 1 MiB: a batch is an eighth of it, and an event larger than
     * all of it is dropped (docs/events.md). */
    if (config_get_int(errs, o, "events", "queue_max_bytes", 1LL << 20, 1LL << 40, &x))
        e->queue_max_bytes = x;
    if (config_get_int(errs, o, "events", "spool_max_bytes", 0, LLONG_MAX, &x))
        e->spool_max_bytes = x;
    json_t *fs = json_object_get(o, "fsync");
    if (fs != NULL) {
        if (json_is_string(fs) && strcmp(json_string_value(fs), "never") == 0)
            e->fsync = 0;
        else if (json_is_string(fs) && strcmp(json_string_value(fs), "batch") == 0)
            e->fsync = 1;
        else
            config_errors_add(errs, "events.fsync", "must be \"batch\" or \"never\"");
    }
    if (config_get_int(errs, o, "events", "retry_min_ms", 1, 3600000, &x))
        e->retry_min_ms = (int)x;
    if (config_get_int(errs, o, "events", "retry_max_ms", 1, 3600000, &x))
        e->retry_max_ms = (int)x;
    if (e->retry_min_ms > e->retry_max_ms)
        config_errors_add(errs, "events.retry_min_ms", "must not exceed events.retry_max_ms");
}

static void parse_feedback(config_errors_t *errs, json_t *root, config_t *cfg)
{
    json_t *o = config_get_object(errs, root, "", "feedback");
    if (o == NULL)
        return;
    config_check_known(errs, o, "feedback", feedback_keys);
    config_feedback_t *f = &cfg->feedback;
    long long x;
    config_get_string(errs, o, "feedback", "spool_dir", f->spool_dir, sizeof f->spool_dir,
                      false, false);
    if (config_get_int(errs, o, "feedback", "queue_max", 1, 10000000, &x))
        f->queue_max = (int)x;
    if (config_get_int(errs, o, "feedback", "spool_max_bytes", 0, LLONG_MAX, &x))
        f->spool_max_bytes = x;
    if (config_get_int(errs, o, "feedback", "live_id_ttl_s", 0, 86400, &x))
        f->live_id_ttl_s = x;
}

static void parse_limits(config_errors_t *errs, json_t *root, config_t *cfg)
{
    json_t *o = config_get_object(errs, root, "", "limits");
    if (o == NULL)
        return;
    config_check_known(errs, o, "limits", limits_keys);
    config_limits_t *l = &cfg->limits;
    long long x;
    if (config_get_int(errs, o, "limits", "max_line_bytes", 256, 64LL << 20, &x))
        l->max_line_bytes = (size_t)x;
    if (config_get_int(errs, o, "limits", "max_connections", 1, 1000000, &x))
        l->max_connections = (int)x;
    if (config_get_int(errs, o, "limits", "max_output_bytes", 4096, 1LL << 30, &x))
        l->max_output_bytes = (size_t)x;
    if (config_get_int(errs, o, "limits", "max_pipeline", 1, 1000000, &x))
        l->max_pipeline = (int)x;
    if (config_get_int(errs, o, "limits", "idle_timeout_s", 0, 86400 * 7, &x))
        l->idle_timeout_s = (int)x;
    if (config_get_int(errs, o, "limits", "max_candidates", 1, 100000, &x))
        l->max_candidates = (int)x;
    if (config_get_int(errs, o, "limits", "ts_window_s", 0, 100LL * 365 * 86400, &x))
        l->ts_window_s = x;
    /* The admin endpoint's bounds (admin.c): each connection may hold 16 KiB,
     * and an idle one is never kept forever, so 0 is not a choice. */
    if (config_get_int(errs, o, "limits", "admin_max_connections", 1, 4096, &x))
        l->admin_max_connections = (int)x;
    if (config_get_int(errs, o, "limits", "admin_idle_timeout_s", 1, 3600, &x))
        l->admin_idle_timeout_s = (int)x;
}

uint32_t config_limit_tag_bit(const config_global_limits_t *g, const char *name, size_t len)
{
    for (int t = 0; t < g->n_tags; t++)
        if (g->tag_lens[t] == len && memcmp(g->tags[t], name, len) == 0)
            return 1u << t;
    return 0;
}

/* One limit object {per_second, burst[, shadow]}: both numbers required. */
static void parse_rate_limit(config_errors_t *errs, json_t *o, const char *path, bool shadow,
                             config_rate_limit_t *out)
{
    double rate = 0.0;
    long long burst = 0;
    bool have_rate = config_get_double(errs, o, path, "per_second", 1e-6, 1e6, &rate);
    bool have_burst = config_get_int(errs, o, path, "burst", 1, 1000000000, &burst);
    bool own_shadow = false;
    config_get_bool(errs, o, path, "shadow", &own_shadow);
    if (!have_rate || !have_burst) {
        if (json_object_get(o, "per_second") == NULL || json_object_get(o, "burst") == NULL)
            config_errors_add(errs, path, "needs both \"per_second\" (a rate per second) and "
                                          "\"burst\" (an integer >= 1)");
        return;
    }
    if ((double)burst / rate > 30.0 * 86400) {
        config_errors_add(errs, path, "burst / per_second must be at most 30 days of sends");
        return;
    }
    out->set = true;
    out->per_second = rate;
    out->burst = burst;
    out->shadow = shadow || own_shadow;
}

/* A tag name is a key part (P limit:<channel>:<tag>) and a label value. */
static bool limit_tag_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= CONFIG_LIMIT_TAG_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

/* limits.global, limits.on_error, limits.shadow: after the channels, which
 * limits.global names. */
static void parse_global_limits(config_errors_t *errs, json_t *root, config_t *cfg)
{
    json_t *o = json_object_get(root, "limits");
    if (!json_is_object(o))
        return; /* absent, or reported by parse_limits */
    config_global_limits_t *g = &cfg->rate_limits;
    char mode[16] = "open";
    if (config_get_string(errs, o, "limits", "on_error", mode, sizeof mode, false, false) &&
        strcmp(mode, "open") != 0 && strcmp(mode, "closed") != 0)
        config_errors_add(errs, "limits.on_error", "must be \"open\" or \"closed\"");
    g->fail_closed = strcmp(mode, "closed") == 0;
    bool all_shadow = false;
    config_get_bool(errs, o, "limits", "shadow", &all_shadow);
    json_t *global = config_get_object(errs, o, "limits", "global");
    if (global == NULL)
        return;
    const char *ch;
    json_t *entry;
    json_object_foreach(global, ch, entry) {
        char path[128];
        snprintf(path, sizeof path, "limits.global.%s", ch);
        int c = config_channel_index(cfg, ch, strlen(ch));
        if (c < 0) {
            config_errors_add(errs, path, "is not a configured channel (see \"channels\")");
            continue;
        }
        if (!json_is_object(entry)) {
            config_errors_add(errs, path, "must be an object {per_second, burst, shadow, tags}");
            continue;
        }
        config_check_known(errs, entry, path, rate_limit_keys);
        bool shadow = all_shadow;
        json_t *sv = json_object_get(entry, "shadow");
        if (json_is_boolean(sv))
            shadow = shadow || json_is_true(sv);
        if (json_object_get(entry, "per_second") != NULL ||
            json_object_get(entry, "burst") != NULL)
            parse_rate_limit(errs, entry, path, all_shadow, &g->limit[c][0]);
        else
            config_get_bool(errs, entry, path, "shadow", &(bool){false});
        json_t *tags = config_get_object(errs, entry, path, "tags");
        if (tags == NULL) {
            if (json_object_get(entry, "per_second") == NULL &&
                json_object_get(entry, "burst") == NULL && json_object_get(entry, "tags") == NULL)
                config_errors_add(errs, path, "sets no limit: give per_second and burst, or tags");
            continue;
        }
        const char *tag;
        json_t *te;
        json_object_foreach(tags, tag, te) {
            char tpath[256];
            snprintf(tpath, sizeof tpath, "%s.tags.%s", path, tag);
            if (!limit_tag_name_ok(tag)) {
                config_errors_add(errs, tpath, "a tag name must be 1..%d characters [A-Za-z0-9_.-]",
                                  CONFIG_LIMIT_TAG_MAX - 1);
                continue;
            }
            if (!json_is_object(te)) {
                config_errors_add(errs, tpath, "must be an object {per_second, burst, shadow}");
                continue;
            }
            config_check_known(errs, te, tpath, tag_limit_keys);
            uint32_t bit = config_limit_tag_bit(g, tag, strlen(tag));
            int t;
            if (bit == 0) {
                if (g->n_tags == CONFIG_LIMIT_TAGS_MAX) {
                    config_errors_add(errs, tpath, "too many limited tags (at most %d names in all)",
                                      CONFIG_LIMIT_TAGS_MAX);
                    continue;
                }
                t = g->n_tags++;
                snprintf(g->tags[t], sizeof g->tags[t], "%s", tag);
                g->tag_lens[t] = strlen(tag);
            } else {
                t = __builtin_ctz(bit);
            }
            /* A channel entry's shadow covers its tags too. */
            parse_rate_limit(errs, te, tpath, shadow, &g->limit[c][1 + t]);
        }
    }
    for (int c = 0; c < cfg->n_channels; c++)
        for (int t = 0; t <= g->n_tags; t++)
            g->any = g->any || g->limit[c][t].set;
}

static void parse_channels(config_errors_t *errs, json_t *root, config_t *cfg)
{
    json_t *v = json_object_get(root, "channels");
    if (v == NULL)
        return;
    if (!json_is_array(v) || json_array_size(v) == 0 ||
        json_array_size(v) > NOTIFD_MAX_CHANNELS) {
        config_errors_add(errs, "channels", "must be an array of 1..%d channel names",
                          NOTIFD_MAX_CHANNELS);
        return;
    }
    int n = 0;
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        char kp[64];
        snprintf(kp, sizeof kp, "channels[%zu]", i);
        const char *s = json_string_value(item);
        size_t len = s ? strlen(s) : 0;
        bool valid = s != NULL && len > 0 && len < NOTIFD_CHANNEL_NAME_MAX;
        for (size_t k = 0; valid && k < len; k++)
            valid = (s[k] >= 'a' && s[k] <= 'z') || (s[k] >= '0' && s[k] <= '9') || s[k] == '_';
        if (!valid) {
            config_errors_add(errs, kp, "must be a name of 1..%d characters [a-z0-9_]",
                              NOTIFD_CHANNEL_NAME_MAX - 1);
            continue;
        }
        for (int k = 0; k < n; k++)
            if (strcmp(cfg->channels[k], s) == 0) {
                config_errors_add(errs, kp, "\"%s\" is listed twice", s);
                valid = false;
            }
        if (valid)
            snprintf(cfg->channels[n++], sizeof cfg->channels[0], "%s", s);
    }
    cfg->n_channels = n;
}

static void parse_root(config_errors_t *errs, json_t *root, config_t *cfg)
{
    config_check_known(errs, root, "", top_level_keys);
    parse_endpoint_key(errs, root, "listen", &cfg->listen, NULL);
    parse_endpoint_key(errs, root, "admin_listen", &cfg->admin_listen, &cfg->admin_enabled);
    parse_redis(errs, root, cfg);
    config_get_string(errs, root, "", "auth_token_file", cfg->auth_token_file,
                      sizeof cfg->auth_token_file, true, false);
    parse_planner(errs, root, cfg);
    parse_events(errs, root, cfg);
    parse_feedback(errs, root, cfg);
    /* Both spools name their segments alike: one directory each. */
    if (strcmp(cfg->feedback.spool_dir, cfg->events.spool_dir) == 0)
        config_errors_add(errs, "feedback.spool_dir", "must differ from events.spool_dir");
    parse_limits(errs, root, cfg);
    parse_channels(errs, root, cfg);
    parse_global_limits(errs, root, cfg);

    json_t *lv = json_object_get(root, "log_level");
    if (lv != NULL) {
        int level = json_is_string(lv) ? log_level_parse(json_string_value(lv)) : -1;
        if (level < 0)
            config_errors_add(errs, "log_level", "must be \"debug\", \"info\", \"warn\" or \"error\"");
        else
            cfg->log_level = level;
    }
    long long x;
    if (config_get_int(errs, root, "", "log_sample_every", 0, 1000000000, &x))
        cfg->log_sample_every = (int)x;
    if (config_get_int(errs, root, "", "seed", 0, LLONG_MAX, &x))
        cfg->seed = (uint64_t)x;
    if (config_get_int(errs, root, "", "shutdown_grace_s", 0, 3600, &x))
        cfg->shutdown_grace_s = (int)x;

    if (cfg->admin_enabled && strcmp(cfg->admin_listen.host, cfg->listen.host) == 0 &&
        cfg->admin_listen.port == cfg->listen.port)
        config_errors_add(errs, "admin_listen", "must differ from listen");

    if (cfg->redis.password_file[0] != '\0')
        cfg->redis.password = read_secret_file(errs, cfg->redis.password_file, "redis.password_file");
    if (cfg->auth_token_file[0] != '\0')
        cfg->auth_token = read_secret_file(errs, cfg->auth_token_file, "auth_token_file");

    policy_config_parse(errs, root, cfg, &cfg->policy);
}

static void config_free(config_t *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->redis.password);
    free(cfg->auth_token);
    policy_config_free(&cfg->policy);
    free(cfg);
}

static config_t *load_json(json_t *root, const char *path, uint64_t generation,
                           config_errors_t *errs)
{
    config_t *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        config_errors_add(errs, "", "out of memory");
        return NULL;
    }
    defaults(cfg);
    policy_config_defaults(&cfg->policy);
    atomic_init(&cfg->refs, 1);
    cfg->generation = generation;
    snprintf(cfg->path, sizeof cfg->path, "%s", path ? path : "");
    if (!json_is_object(root))
        config_errors_add(errs, "", "the config must be a JSON object");
    else
        parse_root(errs, root, cfg);
    if (errs->count > 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

config_t *config_load_string(const char *json_text, uint64_t generation, config_errors_t *errs)
{
    json_error_t jerr;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        config_errors_add(errs, "", "invalid JSON at line %d column %d: %s", jerr.line,
                          jerr.column, jerr.text);
        return NULL;
    }
    config_t *cfg = load_json(root, NULL, generation, errs);
    json_decref(root);
    return cfg;
}

config_t *config_load_file(const char *path, uint64_t generation, config_errors_t *errs)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (jerr.line <= 0)
            config_errors_add(errs, "", "cannot load \"%s\": %s", path, jerr.text);
        else
            config_errors_add(errs, "", "invalid JSON in \"%s\" at line %d column %d: %s", path,
                              jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    config_t *cfg = load_json(root, path, generation, errs);
    json_decref(root);
    return cfg;
}

config_t *config_acquire(config_t *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void config_release(config_t *cfg)
{
    if (cfg != NULL && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
        config_free(cfg);
}

int config_channel_index(const config_t *cfg, const char *name, size_t len)
{
    for (int i = 0; i < cfg->n_channels; i++)
        if (strncmp(cfg->channels[i], name, len) == 0 && cfg->channels[i][len] == '\0')
            return i;
    return -1;
}
