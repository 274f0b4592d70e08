/*
 * request.h - validation of producer requests, separate from their I/O so
 * it can be unit-tested and fuzzed on its own (tests/fuzz/).
 *
 * decide_request_parse() checks a decide request completely (member,
 * channel, opportunity, ts, candidates and their features) and returns NULL
 * or the message a producer sees with bad_request. Strings in the result
 * point into the JSON request, which must outlive it. The candidate arrays
 * (and the per-candidate scratch arrays the decision needs) come from one
 * allocation, freed by decide_request_free().
 */
#ifndef NOTIFD_REQUEST_H
#define NOTIFD_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "notifd/config/config.h"
#include "notifd/core/ranker.h"

/* The longest candidate id and opportunity id, in bytes. */
#define DECIDE_ID_MAX 256

typedef struct decide_request {
    const char *member;
    size_t member_len;
    int channel;
    const char *opportunity;
    size_t opportunity_len;
    int64_t ts;
    size_t n;                        /* candidates */
    ranker_candidate_t *candidates;
    ranker_feature_t *features;      /* all candidates' features, in order */
    double *last_sent;               /* scratch: per candidate, -1 = never sent */
    double *utility;                 /* scratch */
    double *select_prob;             /* scratch */
    uint32_t *limit_tags;            /* per candidate, its "tags" that name a global
                                        rate limit (config_limit_tag_bit) */
    void *mem;
} decide_request_t;

const char *decide_request_parse(decide_request_t *out, json_t *root, const config_t *cfg,
                                 int64_t now);
void decide_request_free(decide_request_t *r);

/* A member id is 1..256 bytes with no control characters and no '{' or '}'
 * (the braces delimit the member in every key, keys.h); returns NULL when
 * valid, else the message to answer with. */
const char *ops_check_member(const json_t *member);
/* The same rules for a member id as bytes. */
const char *ops_check_member_bytes(const char *member, size_t len);
/* NULL when `ts` is within `window` seconds of `now` (window 0: any), else
 * the message to answer with. */
const char *ops_check_ts_window(int64_t ts, int64_t now, int64_t window);
/* ts from the request (integer or number of unix seconds) or `now`. Returns
 * false, with *why set, when present but invalid or more than `window` s
 * from `now` (window 0: any ts in 0..1e11). A ts far from the wall clock
 * would let one request move a member's weeks, decays and plans into
 * another era (limits.ts_window_s). */
bool ops_get_ts_at(const json_t *root, int64_t now, int64_t window, int64_t *ts,
                   const char **why);

#endif
