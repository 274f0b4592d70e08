/*
 * explain_internal.h - what the explain op's two files share: its context
 * (explain.c reads into it) and the answer built from it (explain_answer.c).
 */
#ifndef NOTIFD_EXPLAIN_INTERNAL_H
#define NOTIFD_EXPLAIN_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>

#include "decide_internal.h"
#include "notifd/core/features.h"

typedef struct explain_ctx {
    decide_ctx_t d;          /* first: the decide read's callbacks get &d */
    json_t *request;         /* the request as a decide's; d.r points into it */
    bool channel_defaulted;  /* no "channel" given: the first configured one */
    bool have_features;      /* the member hash had fields */
    member_features_t features;
    bool durable_optout[NOTIFD_MAX_CHANNELS]; /* P optout:{M}, per channel */
} explain_ctx_t;

/* The answer's body (without id and ok), or NULL when out of memory.
 * Pure but for reading the process's threshold calibrator (threshold
 * mode), which it copies: it changes nothing. */
json_t *explain_answer(explain_ctx_t *x);

#endif
