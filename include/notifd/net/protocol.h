/*
 * protocol.h - the producer protocol's wire format: request parsing, error
 * codes and reply encoding (one compact JSON object per line).
 *
 * Error codes are a contract (README.md, "Producer protocol"): clients switch on them, so they
 * never change; the message is for people and says what to do.
 */
#ifndef NOTIFD_PROTOCOL_H
#define NOTIFD_PROTOCOL_H

#include <jansson.h>
#include <stddef.h>

typedef enum proto_error {
    PROTO_BAD_REQUEST = 0,
    PROTO_LINE_TOO_LONG,
    PROTO_UNKNOWN_OP,
    PROTO_UNAUTHORIZED,
    PROTO_UNAVAILABLE,
    PROTO_INTERNAL,
    PROTO_ERROR_COUNT
} proto_error_t;

const char *proto_error_code(proto_error_t e);


/* Encodes `obj` compactly, with a trailing '\n', into a new malloc'd buffer;
 * NULL when out of memory. Key order is insertion order. */
char *proto_encode_line(const json_t *obj, size_t *len);

/* {"id":id,"ok":true,<the members of body>}\n, encoding `body` once (no
 * merged copy); `id` may be NULL (null), `body` NULL or empty. The caller
 * makes sure body has no "id" or "ok" member. NULL when out of memory. */
char *proto_ok_line(const json_t *id, const json_t *body, size_t *len);

/* The same from an already encoded JSON object text (for example a reply
 * stored in Redis): {"id":id,"ok":true,<members of obj>,<extra>}\n without
 * parsing obj. `extra` is NULL or more members ("\"duplicate\":true").
 * NULL when obj is not {...}, holds a byte below 0x20 (it would split the
 * line) or out of memory. The caller vouches that obj is one valid JSON
 * object without "id" or "ok": text it wrote, or text from elsewhere checked
 * first (stored_answer.h). */
char *proto_ok_line_text(const json_t *id, const char *obj, size_t obj_len, const char *extra,
                         size_t *len);

/* {"id":id,"ok":false,"error":{"code":...,"message":...}}\n; `id` may be NULL. */
char *proto_error_line(const json_t *id, proto_error_t code, const char *message, size_t *len);

/* Whether a request id is acceptable (string or number). */
int proto_id_valid(const json_t *id);

#endif
