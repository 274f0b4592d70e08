/*
 * log.c - the one place that writes log lines (see log.h).
 *
 * A line is formatted into a stack buffer and written with a single write(2)
 * so that lines from the loop thread and the planner thread never interleave.
 */
#include "notifd/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int current_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

const char *log_level_name(log_level_t level)
{
    return (level >= LOG_DEBUG && level <= LOG_ERROR) ? level_names[level] : "?";
}

void log_set_level(log_level_t level) { atomic_store(&current_level, (int)level); }

log_level_t log_get_level(void) { return (log_level_t)atomic_load(&current_level); }

void log_write(log_level_t level, const char *msg, const char *fmt, ...)
{
    if ((int)level < atomic_load(&current_level))
        return;
    char line[2048];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=\"%s\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000, level_names[level], msg);
    if (n < 0)
        return;
    if (fmt != NULL && fmt[0] != '\0' && (size_t)n < sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
        else
            n--; /* no fields after all: drop the separator */
    }
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2; /* truncated: keep the newline */
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w; /* nowhere left to report a failed log write */
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int log_ratelimit_allow(log_ratelimit_t *rl)
{
    uint64_t now = monotonic_ms();
    if (now - rl->window_start_ms >= rl->interval_ms) {
        int suppressed = (int)rl->suppressed;
        rl->window_start_ms = now;
        rl->emitted = 1;
        rl->suppressed = 0;
        return suppressed;
    }
    if (rl->emitted < rl->burst) {
        rl->emitted++;
        return 0;
    }
    rl->suppressed++;
    return -1;
}
