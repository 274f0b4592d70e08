/*
 * spool.h - the on-disk buffer of the decision-event sink (events.c): a
 * directory of append-only NDJSON segment files, replayed oldest first.
 *
 * Layout of events.spool_dir:
 *   events-<20-digit sequence>.ndjson   segments, one JSON event per line
 *   dead-letter.ndjson                  batches the endpoint rejected (4xx), and
 *                                       spool lines that are not an event
 *   quarantine-events-<seq>.ndjson      a segment that could not be read
 * Anything else in the directory is ignored.
 *
 * Invariants:
 * - Sequence numbers only grow: a new segment gets max(existing) + 1, so the
 *   lexical and numeric orders of the names agree and replay order is write
 *   order, across restarts too.
 * - Only the segment this process created last (the "active" one) is ever
 *   appended to. Segments found at open are sealed: a segment left with a
 *   torn last line by a crash is never appended after that line.
 * - An append is all or nothing: when write(2) or fsync fails part-way
 *   (ENOSPC, EIO, EFBIG), the segment is truncated back to its previous size
 *   and the error returned, so the file holds whole lines only and the
 *   caller still owns the data.
 * - spool_bytes() is the size of every segment on disk (not counting the
 *   dead-letter file), the number checked against the size limit.
 *
 * Plain blocking file I/O (and jansson, to check replayed lines), no
 * network, no globals: the event sink calls it
 * from its own thread, and the unit tests drive it directly. Not
 * thread-safe; one owner at a time.
 */
#ifndef NOTIFD_SPOOL_H
#define NOTIFD_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct spool spool_t;

/* spool_append() results other than 0 and -errno. */
#define SPOOL_FULL 1

/* Segment file names: "events-00000000000000000042.ndjson". */
#define SPOOL_SEGMENT_NAME_MAX 48
#define SPOOL_DEAD_LETTER_NAME "dead-letter.ndjson"

/* Opens (creating it and its parents if needed) the spool directory and
 * indexes the segments already there. A new segment is started once the
 * active one holds `segment_bytes` or more. Returns NULL with errno set and
 * a reason in `why` on failure. */
spool_t *spool_open(const char *dir, uint64_t segment_bytes, char *why, size_t why_size);
void spool_close(spool_t *sp);

/* Appends `len` bytes (whole lines) to the active segment, starting one if
 * needed; with `sync`, fdatasync()s the segment (and the directory when a
 * segment was created) before returning. Refuses with SPOOL_FULL when
 * `max_bytes` >= 0 and the spool would grow beyond it. Returns 0, SPOOL_FULL
 * or -errno (the spool is unchanged on any failure). */
int spool_append(spool_t *sp, const char *data, size_t len, bool sync, int64_t max_bytes);

/* The same for data in pieces (one write(2) per IOV_MAX pieces, one sync):
 * the sink writes many queued events at once without copying them. The
 * iovec array is consumed (modified). */
int spool_appendv(spool_t *sp, struct iovec *iov, int iovcnt, bool sync, int64_t max_bytes);

/* The oldest segment, sealing it first if it is the active one (so the
 * caller can read it whole while new appends go to a new segment). Returns
 * false when the spool is empty. */
bool spool_oldest(spool_t *sp, uint64_t *seq);

/* Reads a whole segment into a malloc'd buffer (NUL-terminated, not
 * counted in *len). 0 or -errno; -EFBIG, without reading, for a segment
 * larger than `max_bytes` (one this process could not have written). */
int spool_read(spool_t *sp, uint64_t seq, size_t max_bytes, char **buf, size_t *len);

/* Deletes a delivered segment. 0 or -errno (the index forgets it anyway, so
 * a segment that cannot be unlinked is not replayed twice by this process). */
int spool_remove(spool_t *sp, uint64_t seq);

/* Renames an unreadable segment to quarantine-<name> and forgets it. */
int spool_quarantine(spool_t *sp, uint64_t seq);

/* Appends a rejected batch to dead-letter.ndjson (same all-or-nothing and
 * sync rules as spool_append; no size limit: it is an operator's file). */
int spool_dead_letter(spool_t *sp, const char *data, size_t len, bool sync);

uint64_t spool_bytes(const spool_t *sp);
size_t spool_segments(const spool_t *sp);
const char *spool_dir(const spool_t *sp);

/* ---- pure helpers (exposed for the unit test) ---------------------------- */

void spool_segment_name(char *out, size_t cap, uint64_t seq);
/* True when `name` is a segment name; its sequence number into *seq. */
bool spool_parse_segment_name(const char *name, uint64_t *seq);

/* True when `line` (without its newline) is what a spool line must be: one
 * JSON object and nothing else, at most `max_len` bytes. Anything else in a
 * segment (a torn write, a hand edit, disk garbage) is never sent on. */
bool spool_line_is_event(const char *line, size_t len, size_t max_len);

/* What replay does with the next stretch of a segment read into memory. */
typedef enum spool_run {
    SPOOL_RUN_END,                  /* nothing left */
    SPOOL_RUN_EVENTS,               /* valid lines: the next batch to POST */
    SPOOL_RUN_BAD,                  /* consecutive invalid lines: for the dead-letter file */
} spool_run_t;

typedef struct spool_run_limits {
    size_t max_lines;               /* most lines in an EVENTS run (events.batch_max) */
    size_t max_bytes;               /* most bytes in an EVENTS run, unless its first line is longer */
    size_t max_line_bytes;          /* a longer line is invalid */
} spool_run_limits_t;

/* From `off`: the longest run of lines of one kind within the limits (BAD
 * runs have no limit). Sets *end to the offset after it (newlines
 * included) and *n_lines. Bytes after the last '\n' (a crash mid-append) are
 * a line like any other: delivered when they are a whole event, else bad. */
spool_run_t spool_next_run(const char *buf, size_t len, size_t off, const spool_run_limits_t *lim,
                           size_t *end, size_t *n_lines);

#endif
