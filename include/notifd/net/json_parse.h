/*
 * json_parse.h - the producer protocol's request parser: one line of JSON
 * into a jansson tree, several times faster than json_loadb() and accepting
 * exactly what it accepts (json_parse.c).
 */
#ifndef NOTIFD_NET_JSON_PARSE_H
#define NOTIFD_NET_JSON_PARSE_H

#include <jansson.h>
#include <stddef.h>

typedef struct proto_parse_error {
    size_t column;      /* 1-based byte offset of the problem in the line */
    const char *text;   /* static text: what is wrong there */
} proto_parse_error_t;

/* Parses one request line into a jansson tree (a new reference), or
 * returns NULL and fills *err. Accepts what json_loadb() with
 * JSON_REJECT_DUPLICATES accepts (an object or array at the top, strict
 * RFC 8259, valid UTF-8, no \u0000, unique keys, integers within
 * json_int_t, finite reals), several times faster. */
json_t *proto_parse_line(const char *line, size_t len, proto_parse_error_t *err);

#endif
