/*
 * protocol.h - the producer protocol's wire format: error codes and reply
 * encoding (one compact JSON object per line).
 *
 * Error codes are a contract (DESIGN.md): clients switch on them, so they
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

/* {"id":id,"ok":false,"error":{"code":...,"message":...}}\n; `id` may be NULL. */
char *proto_error_line(const json_t *id, proto_error_t code, const char *message, size_t *len);

/* Whether a request id is acceptable (string or number). */
int proto_id_valid(const json_t *id);

#endif
