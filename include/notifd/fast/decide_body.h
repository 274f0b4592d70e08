/*
 * decide_body.h - the answer of a decide, as JSON text.
 *
 * The same text is the reply, the idempotency record a retry gets back,
 * and (parsed) the core of the decision event, so it is written once,
 * straight into a buffer (json_writer.h).
 */
#ifndef NOTIFD_DECIDE_BODY_H
#define NOTIFD_DECIDE_BODY_H

#include <stdbool.h>
#include <stddef.h>

#include "notifd/config/config.h"
#include "notifd/core/decision.h"

typedef struct decide_body {
    const config_t *cfg;
    const decision_t *dec;
    decision_reason_t reason;
    bool send;
    const char *message;        /* chosen id (not NUL-terminated) or NULL */
    size_t message_len;
    const plan_t *plan;         /* NULL: "plan":null (threshold mode, degraded skip) */
    const char *slow_arm, *fast_arm;
    bool threshold_mode;
    bool degraded;
    /* rate_limited: the text ends with "retry_at": and the record script
     * (decide_record.lua) appends the time and the closing brace. */
    bool retry_at_open;
} decide_body_t;

/* {"send":…,"message":…,"reason":…,"p_send":…,"propensity":…,"plan":…,
 *  "arm":{…},"mode":…[,"retry_at":…][,"degraded":true]}; NULL when out of
 * memory. rate_limited always has retry_at (see retry_at_open). *len gets the
 * length. */
char *decide_body_text(const decide_body_t *b, size_t *len);

#endif
