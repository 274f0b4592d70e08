/*
 * json_writer.h - compact JSON written straight into a growing buffer.
 *
 * For the few replies built on every decide: building a jansson tree and
 * dumping it cost a malloc per node and per key, and showed as a third of
 * notifd's CPU per decide in the profile. The output matches what jansson
 * writes with JSON_COMPACT | JSON_REAL_PRECISION(15) (key order as
 * written, reals with 15 significant digits and a ".0" when integral), and
 * is always valid UTF-8: invalid bytes in a string become U+FFFD.
 */
#ifndef NOTIFD_JSON_WRITER_H
#define NOTIFD_JSON_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_WRITER_MAX_DEPTH 16

typedef struct json_writer {
    char *buf;          /* NUL-terminated by jw_take */
    size_t len, cap;
    bool failed;        /* out of memory or nesting too deep: output unusable */
    int depth;
    bool after_key;
    bool has_items[JSON_WRITER_MAX_DEPTH];
} json_writer_t;

void jw_init(json_writer_t *w);
void jw_free(json_writer_t *w);
/* Hands the buffer over (NULL when the writer failed); `len` gets its length. */
char *jw_take(json_writer_t *w, size_t *len);

void jw_object_begin(json_writer_t *w);
void jw_object_end(json_writer_t *w);
void jw_array_begin(json_writer_t *w);
void jw_array_end(json_writer_t *w);
/* Appends text as it is, outside the writer's bookkeeping: for the
 * pieces of a reply line the caller has already encoded. */
void jw_raw(json_writer_t *w, const char *text, size_t len);
void jw_key(json_writer_t *w, const char *key);
void jw_string(json_writer_t *w, const char *s, size_t len);
void jw_cstring(json_writer_t *w, const char *s);
/* A non-finite real is written as null (JSON has no NaN or infinity). */
void jw_real(json_writer_t *w, double x);
void jw_int(json_writer_t *w, int64_t x);
void jw_bool(json_writer_t *w, bool b);
void jw_null(json_writer_t *w);

#endif
