/*
 * protocol.c - reply encoding for the producer protocol (see protocol.h).
 */
#include "notifd/protocol.h"

#include <stdlib.h>
#include <string.h>

static const char *const error_codes[PROTO_ERROR_COUNT] = {
    [PROTO_BAD_REQUEST] = "bad_request",   [PROTO_LINE_TOO_LONG] = "line_too_long",
    [PROTO_UNKNOWN_OP] = "unknown_op",     [PROTO_UNAUTHORIZED] = "unauthorized",
    [PROTO_UNAVAILABLE] = "unavailable",   [PROTO_INTERNAL] = "internal",
};

const char *proto_error_code(proto_error_t e)
{
    return (e >= 0 && e < PROTO_ERROR_COUNT) ? error_codes[e] : "internal";
}

typedef struct growbuf {
    char *data;
    size_t len, cap;
} growbuf_t;

static int growbuf_append(const char *buffer, size_t size, void *data)
{
    growbuf_t *b = data;
    if (b->len + size + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + size + 1)
            cap *= 2;
        char *nd = realloc(b->data, cap);
        if (nd == NULL)
            return -1;
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, buffer, size);
    b->len += size;
    b->data[b->len] = '\0'; /* the line is also a C string, for logs and tests */
    return 0;
}

char *proto_encode_line(const json_t *obj, size_t *len)
{
    growbuf_t b = {0};
    /* 15 significant digits: 0.1 prints as 0.1, and probabilities keep far
     * more precision than any consumer needs. */
    if (json_dump_callback(obj, growbuf_append, &b, JSON_COMPACT | JSON_REAL_PRECISION(15)) != 0 ||
        growbuf_append("\n", 1, &b) != 0) {
        free(b.data);
        return NULL;
    }
    *len = b.len;
    return b.data;
}

int proto_id_valid(const json_t *id) { return json_is_string(id) || json_is_number(id); }

char *proto_error_line(const json_t *id, proto_error_t code, const char *message, size_t *len)
{
    json_t *o = json_object();
    json_object_set(o, "id", (id && proto_id_valid(id)) ? (json_t *)id : json_null());
    json_object_set_new(o, "ok", json_false());
    json_object_set_new(o, "error", json_pack("{s:s,s:s}", "code", proto_error_code(code),
                                              "message", message));
    char *line = proto_encode_line(o, len);
    json_decref(o);
    return line;
}
