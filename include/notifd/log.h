/*
 * log.h - structured logging to stderr.
 *
 * One line per event: `level=info msg="listening" addr=127.0.0.1:7400`.
 * journald keeps stderr lines as they are, and key=value fields are easy to
 * grep and to parse. The level is process-wide and changes on reload; it is
 * an atomic so the planner thread may log too. Repeated errors are
 * rate-limited per call site with log_ratelimit_t.
 */
#ifndef NOTIFD_LOG_H
#define NOTIFD_LOG_H

#include <stdint.h>

typedef enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
} log_level_t;

/* Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int log_level_parse(const char *name);
const char *log_level_name(log_level_t level);
void log_set_level(log_level_t level);
log_level_t log_get_level(void);

/* `fmt` holds the key=value fields after the message; it may be "" . */
void log_write(log_level_t level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A per-call-site limiter: at most `burst` lines per `interval_ms`; when a
 * window closes with suppressed lines, the next line reports how many. */
typedef struct log_ratelimit {
    uint64_t window_start_ms;
    uint32_t interval_ms;
    uint32_t burst;
    uint32_t emitted;
    uint32_t suppressed;
} log_ratelimit_t;

#define LOG_RATELIMIT_INIT(interval_ms, burst) {0, (interval_ms), (burst), 0, 0}

/* Returns the number of suppressed lines to report (>= 0) when this line may
 * be written, or -1 when it must be dropped. Not thread-safe: one limiter per
 * thread and call site. */
int log_ratelimit_allow(log_ratelimit_t *rl);

#define log_debug(msg, ...) do { if (log_get_level() <= LOG_DEBUG) log_write(LOG_DEBUG, msg, __VA_ARGS__); } while (0)
#define log_info(msg, ...) log_write(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_write(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_ERROR, msg, __VA_ARGS__)

/* Logs through `rl`, appending suppressed=N when earlier lines were dropped. */
#define log_limited(rl, level, msg, fmt, ...)                                      \
    do {                                                                           \
        int log_sup_ = log_ratelimit_allow(rl);                                    \
        if (log_sup_ > 0)                                                          \
            log_write(level, msg, fmt " suppressed=%d", __VA_ARGS__, log_sup_);    \
        else if (log_sup_ == 0)                                                    \
            log_write(level, msg, fmt, __VA_ARGS__);                               \
    } while (0)

#endif
