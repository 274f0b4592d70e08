/*
 * feedback_retry.c - see feedback_retry.h.
 */
#include "notifd/core/feedback_retry.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Error codes (the reply's first word) that describe Redis's state, not the
 * command: retrying the same event later can succeed. */
static const char *const outage_codes[] = {
    "OOM", "MISCONF", "LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN",
    "CLUSTERDOWN", "NOREPLICAS", "NOAUTH", "NOPERM", NULL,
};

bool feedback_error_is_outage(const char *err, size_t len)
{
    if (err == NULL)
        return true;
    size_t word = 0;
    while (word < len && err[word] != ' ')
        word++;
    for (const char *const *c = outage_codes; *c != NULL; c++)
        if (strlen(*c) == word && memcmp(*c, err, word) == 0)
            return true;
    return false;
}

void feedback_queued_event_id(char *out, size_t cap, uint64_t instance, uint64_t seq)
{
    snprintf(out, cap, "q:%016" PRIx64 ":%" PRIu64, instance, seq);
}
