/*
 * priority.c - the priority classes' names (see priority.h).
 */
#include "notifd/core/priority.h"

#include <string.h>

static const char *const names[PRIORITY_COUNT] = {
    [PRIORITY_NORMAL] = "normal",
    [PRIORITY_HIGH] = "high",
    [PRIORITY_TRANSACTIONAL] = "transactional",
};

const char *message_priority_name(message_priority_t p)
{
    return (p >= 0 && p < PRIORITY_COUNT) ? names[p] : "unknown";
}

bool message_priority_parse(const char *name, size_t len, message_priority_t *out)
{
    for (int p = 0; p < PRIORITY_COUNT; p++) {
        if (strlen(names[p]) == len && memcmp(names[p], name, len) == 0) {
            *out = (message_priority_t)p;
            return true;
        }
    }
    return false;
}
