/*
 * json_lex.h - the lexical pieces of JSON that both request parsers share:
 * the tree parser (src/net/json_parse.c) and the decide scanner
 * (src/fast/decide_scan.c). Sharing them is what makes the two agree on
 * every number and every string byte, which the differential fuzz target
 * (tests/fuzz/fuzz_decide_scan.c) relies on.
 */
#ifndef NOTIFD_LIB_JSON_LEX_H
#define NOTIFD_LIB_JSON_LEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One JSON number as jansson would hold it: an integer (within int64) or
 * a finite real. */
typedef struct json_lex_number {
    bool is_real;
    int64_t integer;
    double real;
} json_lex_number_t;

/* Reads the number that starts at p (a '-' or a digit expected). Returns
 * the byte after it, or NULL with *why (static text) and *why_at (where
 * the problem is) set: a malformed number, an integer past int64, a real
 * that overflows, or out of memory. Integers are exact; reals are
 * correctly rounded (exact arithmetic when the digits fit in 53 bits and
 * the exponent in +-22, strtod() otherwise, as in jansson). */
const unsigned char *json_lex_number(const unsigned char *p, const unsigned char *end,
                                     json_lex_number_t *out, const char **why,
                                     const unsigned char **why_at);

/* 1 for a byte a JSON string holds as it is (printable ASCII but the
 * quote and the backslash), else 0: one table lookup per byte in the loops
 * that scan or copy strings. */
extern const unsigned char json_lex_plain[256];

/* Length of the valid UTF-8 sequence of 2..4 bytes at p, or 0: rejects
 * overlong forms, surrogates and code points above U+10FFFF, as jansson
 * does. */
size_t json_lex_utf8_sequence(const unsigned char *p, const unsigned char *end);

#endif
