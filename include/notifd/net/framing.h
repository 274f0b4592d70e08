/*
 * framing.h - newline-delimited request framing for one connection.
 *
 * Bytes are read straight into the framer's buffer (framer_write_space /
 * framer_commit, no copy), then complete lines are taken out one by one with
 * framer_next. A line ends at '\n'; a '\r' before it is dropped. A line longer
 * than max_line bytes is reported once as FRAMER_TOO_LONG and everything up
 * to its newline is discarded, so the connection carries on with the next
 * line.
 *
 * Memory: the buffer starts small and grows only while a long line is being
 * received, never beyond max_line plus one read chunk; it shrinks back once
 * empty. A line returned by framer_next stays valid until the next
 * framer_write_space, framer_feed or framer_free.
 */
#ifndef NOTIFD_FRAMING_H
#define NOTIFD_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

typedef enum framer_result {
    FRAMER_NEED_MORE = 0, /* no complete line buffered */
    FRAMER_LINE = 1,      /* *line, *len hold one line without its terminator */
    FRAMER_TOO_LONG = 2,  /* a line exceeded max_line; it is being discarded */
} framer_result_t;

typedef struct framer {
    char *buf;
    size_t head;      /* first unconsumed byte */
    size_t len;       /* bytes in buf */
    size_t cap;
    size_t scanned;   /* bytes after head already searched for '\n' */
    size_t max_line;
    bool discarding;  /* inside an over-long line: drop until '\n' */
} framer_t;

void framer_init(framer_t *f, size_t max_line);
void framer_free(framer_t *f);

/* Room to read into: returns a pointer and sets *avail (>= 1), growing or
 * compacting the buffer as needed; NULL when out of memory. */
char *framer_write_space(framer_t *f, size_t *avail);
/* Marks n bytes of the space returned by framer_write_space as filled. */
void framer_commit(framer_t *f, size_t n);
/* Copies data in, as much as fits (tests, and callers that do not read in
 * place); returns the bytes taken. When less than n, drain with framer_next
 * and feed the rest, as a socket read loop would. */
size_t framer_feed(framer_t *f, const char *data, size_t n);

framer_result_t framer_next(framer_t *f, const char **line, size_t *len);

/* Bytes buffered and not yet returned as lines. */
size_t framer_buffered(const framer_t *f);

#endif
