/*
 * framing.c - newline framing with bounded memory (see framing.h).
 */
#include "notifd/net/framing.h"

#include <stdlib.h>
#include <string.h>

#define FRAMER_INITIAL_CAP 4096
#define FRAMER_MIN_READ 2048
#define FRAMER_READ_SLACK 16384 /* one read may bring this much past a line */
#define FRAMER_SHRINK_ABOVE 65536

void framer_init(framer_t *f, size_t max_line)
{
    memset(f, 0, sizeof *f);
    f->max_line = max_line;
}

void framer_free(framer_t *f)
{
    free(f->buf);
    f->buf = NULL;
    f->head = f->len = f->cap = f->scanned = 0;
}

size_t framer_buffered(const framer_t *f) { return f->len - f->head; }

static void compact(framer_t *f)
{
    if (f->head == 0)
        return;
    size_t rest = f->len - f->head;
    if (rest > 0)
        memmove(f->buf, f->buf + f->head, rest);
    f->len = rest;
    f->head = 0;
}

char *framer_write_space(framer_t *f, size_t *avail)
{
    /* An emptied large buffer (after a long line) goes back to small. */
    if (f->head == f->len && f->cap > FRAMER_SHRINK_ABOVE) {
        free(f->buf);
        f->buf = NULL;
        f->cap = 0;
    }
    if (f->head == f->len)
        f->head = f->len = 0;
    if (f->cap - f->len < FRAMER_MIN_READ)
        compact(f);
    if (f->cap - f->len < FRAMER_MIN_READ) {
        size_t limit = f->max_line + 2 + FRAMER_READ_SLACK;
        size_t cap = f->cap ? f->cap * 2 : FRAMER_INITIAL_CAP;
        if (cap > limit)
            cap = limit;
        if (cap < f->len + FRAMER_MIN_READ)
            cap = f->len + FRAMER_MIN_READ;
        char *nb = realloc(f->buf, cap);
        if (nb == NULL)
            return NULL;
        f->buf = nb;
        f->cap = cap;
    }
    *avail = f->cap - f->len;
    return f->buf + f->len;
}

void framer_commit(framer_t *f, size_t n) { f->len += n; }

size_t framer_feed(framer_t *f, const char *data, size_t n)
{
    size_t done = 0;
    while (done < n) {
        size_t avail;
        char *space = framer_write_space(f, &avail);
        if (space == NULL || avail == 0)
            break;
        size_t k = n - done < avail ? n - done : avail;
        memcpy(space, data + done, k);
        framer_commit(f, k);
        done += k;
        if (f->len == f->cap)
            break; /* full: the caller drains with framer_next first */
    }
    return done;
}

framer_result_t framer_next(framer_t *f, const char **line, size_t *len)
{
    for (;;) {
        size_t start = f->head + f->scanned;
        char *nl = f->len > start ? memchr(f->buf + start, '\n', f->len - start) : NULL;
        if (nl == NULL) {
            size_t pending = f->len - f->head;
            if (f->discarding) {
                f->head = f->len = f->scanned = 0;
                return FRAMER_NEED_MORE;
            }
            /* max_line bytes plus a possible '\r' may still be a valid line. */
            if (pending > f->max_line + 1) {
                f->discarding = true;
                f->head = f->len = f->scanned = 0;
                return FRAMER_TOO_LONG;
            }
            f->scanned = pending;
            return FRAMER_NEED_MORE;
        }
        size_t end = (size_t)(nl - f->buf);
        char *begin = f->buf + f->head;
        size_t n = end - f->head;
        f->head = end + 1;
        f->scanned = 0;
        if (f->discarding) {
            f->discarding = false;
            continue; /* the tail of a line already reported too long */
        }
        if (n > 0 && begin[n - 1] == '\r')
            n--;
        if (n > f->max_line)
            return FRAMER_TOO_LONG;
        *line = begin;
        *len = n;
        return FRAMER_LINE;
    }
}
