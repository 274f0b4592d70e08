/*
 * decide_scan.h - a decide request read straight from its line, without a
 * JSON tree.
 *
 * Building a jansson tree for every request and then reading the decide
 * fields out of it was the largest share of notifd's instructions per
 * decide (docs/benchmarks.md). decide_scan_line() makes one pass over the
 * line, checks the JSON grammar as the tree parser does, and fills a
 * decide_request_t directly.
 *
 * It only ever says "yes" to a line the tree path (proto_parse_line, then
 * decide_request_parse) also accepts, with the same result; on anything
 * else, an error or a form it leaves alone, it declines and the caller
 * takes the tree path, which finds the error and words it. That keeps
 * every error message exactly as it was without a second copy of them.
 * It declines:
 *   - any line that is not a decide (another op, or no "op");
 *   - any invalid input, at whatever place the tree path would report it;
 *   - a backslash anywhere in the line (escaped strings go to the tree,
 *     which unescapes them);
 *   - nesting deeper than DECIDE_SCAN_MAX_DEPTH, or an object with more
 *     than DECIDE_SCAN_MAX_KEYS keys (the duplicate check compares keys
 *     pairwise, on the stack);
 *   - more than DECIDE_SCAN_MAX_CANDIDATES candidates or
 *     DECIDE_SCAN_MAX_FEATURES features in all.
 * tests/fuzz/fuzz_decide_scan.c checks the promise against the tree path.
 */
#ifndef NOTIFD_FAST_DECIDE_SCAN_H
#define NOTIFD_FAST_DECIDE_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/config/config.h"
#include "notifd/fast/request_check.h"
#include "notifd/lib/json_lex.h"

#define DECIDE_SCAN_MAX_DEPTH 8
/* The scan collects candidates and features on the stack; a request
 * with more goes to the tree. */
#define DECIDE_SCAN_MAX_CANDIDATES 128
#define DECIDE_SCAN_MAX_FEATURES 1024
#define DECIDE_SCAN_MAX_KEYS 64

typedef enum decide_scan_id {
    DECIDE_SCAN_ID_NONE,   /* no "id" member */
    DECIDE_SCAN_ID_STRING, /* id_text/id_len: raw bytes in the line (no escapes) */
    DECIDE_SCAN_ID_NUMBER, /* id_number */
} decide_scan_id_t;

typedef struct decide_scan {
    /* Strings point into `mem`, owned by the request (decide_request_free).
     * ts is the request's own when ts_given, else 0: the caller checks it
     * against its clock (decide_scan_take). */
    decide_request_t r;
    bool ts_given;
    decide_scan_id_t id_kind;
    const char *id_text;   /* points into the line: use it before the line goes */
    size_t id_len;
    json_lex_number_t id_number;
} decide_scan_t;

/* Fills *out from a decide request line and returns true, or returns
 * false (nothing to free) when the tree path must handle the line. */
bool decide_scan_line(const char *line, size_t len, const config_t *cfg, decide_scan_t *out);

/* Moves a scanned request into *r, taking ts from `now` when the request
 * had none and checking it against limits.ts_window_s: the one check the
 * scan leaves, because it depends on the clock at the decide. Returns NULL,
 * or the message decide_request_parse() gives for the same request (*r is
 * then still the caller's to free). */
const char *decide_scan_take(decide_scan_t *scan, decide_request_t *r, const config_t *cfg,
                             int64_t now);

#endif
