/*
 * stored_answer.c - see stored_answer.h.
 */
#include "notifd/fast/stored_answer.h"

#include <jansson.h>

bool stored_answer_valid(const char *text, size_t len)
{
    if (text == NULL || len < 2 || len > STORED_ANSWER_MAX_BYTES || text[0] != '{' ||
        text[len - 1] != '}')
        return false;
    /* The cheap check that keeps one reply on one line: compact JSON never
     * holds a raw control byte (strings escape them). */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 0x20)
            return false;
    /* Without JSON_DECODE_ANY only an object or array is accepted, and
     * trailing data ("{}{}") is an error. */
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    bool ok = json_is_object(root) && json_object_get(root, "id") == NULL &&
              json_object_get(root, "ok") == NULL;
    json_decref(root);
    return ok;
}
