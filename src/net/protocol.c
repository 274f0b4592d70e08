/*
 * protocol.c - the producer protocol's wire format (see protocol.h): error
 * codes and reply encoding. Requests are parsed by json_parse.c.
 */
#include "notifd/net/protocol.h"

#include "notifd/lib/json_writer.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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
        /* A decide reply is ~450 bytes: one allocation, not three. */
        size_t cap = b->cap ? b->cap : 1024;
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

char *proto_ok_line(const json_t *id, const json_t *body, size_t *len)
{
    growbuf_t b = {0};
    const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(15);
    if (growbuf_append("{\"id\":", 6, &b) != 0 ||
        json_dump_callback(id && proto_id_valid(id) ? id : json_null(), growbuf_append, &b,
                           flags | JSON_ENCODE_ANY) != 0 ||
        growbuf_append(",\"ok\":true", 10, &b) != 0)
        goto fail;
    if (body != NULL && json_object_size(body) > 0) {
        /* The body's own "{" becomes the "," after "ok":true. */
        size_t brace = b.len;
        if (json_dump_callback(body, growbuf_append, &b, flags) != 0)
            goto fail;
        b.data[brace] = ',';
    } else if (growbuf_append("}", 1, &b) != 0) {
        goto fail;
    }
    if (growbuf_append("\n", 1, &b) != 0)
        goto fail;
    *len = b.len;
    return b.data;
fail:
    free(b.data);
    return NULL;
}

/* The request's id as jansson writes it (JSON_COMPACT |
 * JSON_REAL_PRECISION(15), which json_writer.h matches), null when absent
 * or not a string or a number. */
static void write_id(json_writer_t *w, const json_t *id)
{
    if (json_is_string(id))
        jw_string(w, json_string_value(id), json_string_length(id));
    else if (json_is_integer(id))
        jw_int(w, (int64_t)json_integer_value(id));
    else if (json_is_real(id))
        jw_real(w, json_real_value(id));
    else
        jw_null(w);
}

char *proto_ok_line_text(const json_t *id, const char *obj, size_t obj_len, const char *extra,
                         size_t *len)
{
    while (obj_len > 0 && (obj[obj_len - 1] == ' ' || obj[obj_len - 1] == '\n' ||
                           obj[obj_len - 1] == '\r' || obj[obj_len - 1] == '\t'))
        obj_len--;
    if (obj_len < 2 || obj[0] != '{' || obj[obj_len - 1] != '}')
        return NULL;
    /* One request, one line: a raw control byte (a newline above all) in
     * the text would split the reply, so whatever the caller vouches for,
     * such text is refused. Compact JSON never holds one. */
    for (size_t i = 0; i < obj_len; i++)
        if ((unsigned char)obj[i] < 0x20)
            return NULL;
    /* Written directly, the id included: every decide's reply is this
     * line, and it needs no jansson dump. */
    json_writer_t w;
    jw_init(&w);
    jw_raw(&w, "{\"id\":", 6);
    write_id(&w, id);
    jw_raw(&w, ",\"ok\":true", 10);
    if (obj_len > 2) {
        jw_raw(&w, ",", 1);
        jw_raw(&w, obj + 1, obj_len - 2);
    }
    if (extra != NULL && extra[0] != '\0') {
        jw_raw(&w, ",", 1);
        jw_raw(&w, extra, strlen(extra));
    }
    jw_raw(&w, "}\n", 2);
    return jw_take(&w, len);
}

int proto_id_valid(const json_t *id) { return json_is_string(id) || json_is_number(id); }

/* An error message may quote text from Redis (an error reply, cut to fit a
 * buffer, perhaps mid-character); jansson refuses invalid UTF-8, which would
 * leave the reply without its "error". Such a message is sent with every
 * non-ASCII byte as '?'. */
static json_t *error_message(const char *message)
{
    json_t *s = json_string(message);
    if (s != NULL)
        return s;
    char ascii[512];
    size_t n = 0;
    for (; message[n] != '\0' && n < sizeof ascii - 1; n++)
        ascii[n] = (unsigned char)message[n] < 0x80 ? message[n] : '?';
    ascii[n] = '\0';
    return json_string(ascii);
}

char *proto_error_line(const json_t *id, proto_error_t code, const char *message, size_t *len)
{
    json_t *o = json_object();
    json_object_set(o, "id", (id && proto_id_valid(id)) ? (json_t *)id : json_null());
    json_object_set_new(o, "ok", json_false());
    json_object_set_new(o, "error", json_pack("{s:s,s:o}", "code", proto_error_code(code),
                                              "message", error_message(message)));
    char *line = proto_encode_line(o, len);
    json_decref(o);
    return line;
}
