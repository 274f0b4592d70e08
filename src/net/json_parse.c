/*
 * json_parse.c - the request parser (see json_parse.h).
 *
 * Requests are parsed here rather than by json_loadb(): jansson's lexer
 * takes a callback per byte and converts every number with strtod() and
 * localeconv(), which made it the largest cost of a decide
 * (docs/benchmarks.md). This parser scans the buffer directly and converts
 * the common decimals exactly without strtod; it still builds an ordinary
 * jansson tree, so every op handler reads requests as before. It accepts
 * exactly what json_loadb(JSON_REJECT_DUPLICATES) accepts: RFC 8259 JSON
 * with an object or array at the top, valid UTF-8, no \u0000, no duplicate
 * keys, integers within json_int_t, finite reals, at most
 * JSON_PARSER_MAX_DEPTH levels of nesting.
 */
#include "notifd/net/json_parse.h"

#include "notifd/lib/json_lex.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if JANSSON_VERSION_HEX >= 0x020e00
#define HAVE_JSON_SETN 1 /* json_object_getn/setn: keys need no NUL */
#endif

typedef struct parser {
    const unsigned char *start, *p, *end;
    int depth;
    const char *error;       /* first error, with its position */
    const unsigned char *error_at;
    char *scratch;           /* unescaped strings */
    size_t scratch_cap;
    char small[256];
} parser_t;

static json_t *parse_value(parser_t *ps);

static json_t *parse_fail(parser_t *ps, const unsigned char *at, const char *why)
{
    if (ps->error == NULL) {
        ps->error = why;
        ps->error_at = at;
    }
    return NULL;
}

static void skip_ws(parser_t *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static bool scratch_reserve(parser_t *ps, size_t n)
{
    if (n <= ps->scratch_cap)
        return true;
    size_t cap = ps->scratch_cap * 2;
    if (cap < n)
        cap = n;
    char *nb = ps->scratch == ps->small ? malloc(cap) : realloc(ps->scratch, cap);
    if (nb == NULL)
        return false;
    if (ps->scratch == ps->small)
        memcpy(nb, ps->small, sizeof ps->small);
    ps->scratch = nb;
    ps->scratch_cap = cap;
    return true;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parses the string whose opening quote is at ps->p. On success *out and
 * *len hold its (unescaped, valid UTF-8) bytes: either a pointer into the
 * input (no escapes, the common case) or into ps->scratch, valid until the
 * next string is parsed. */
static bool parse_string_raw(parser_t *ps, const char **out, size_t *len)
{
    const unsigned char *p = ++ps->p, *end = ps->end;
    /* Fast path: plain ASCII up to the closing quote. */
    const unsigned char *q = p;
    while (q < end && *q != '"' && *q != '\\' && *q >= 0x20 && *q < 0x80)
        q++;
    if (q < end && *q == '"') {
        *out = (const char *)p;
        *len = (size_t)(q - p);
        ps->p = q + 1;
        return true;
    }
    /* General path: copy, unescape and validate into scratch. Unescaped
     * text is never longer than its escaped form. */
    if (!scratch_reserve(ps, (size_t)(end - p) + 4)) {
        parse_fail(ps, p, "out of memory");
        return false;
    }
    char *w = ps->scratch;
    size_t n = (size_t)(q - p);
    memcpy(w, p, n);
    q = p + n;
    while (q < end) {
        unsigned c = *q;
        if (c == '"') {
            *out = ps->scratch;
            *len = n;
            ps->p = q + 1;
            return true;
        }
        if (c < 0x20) {
            parse_fail(ps, q, "control character in string");
            return false;
        }
        if (c >= 0x80) {
            size_t k = json_lex_utf8_sequence(q, end);
            if (k == 0) {
                parse_fail(ps, q, "invalid UTF-8 in string");
                return false;
            }
            memcpy(w + n, q, k);
            n += k;
            q += k;
            continue;
        }
        if (c != '\\') {
            w[n++] = (char)c;
            q++;
            continue;
        }
        if (q + 1 >= end)
            break;
        unsigned e = q[1];
        q += 2;
        switch (e) {
        case '"': w[n++] = '"'; break;
        case '\\': w[n++] = '\\'; break;
        case '/': w[n++] = '/'; break;
        case 'b': w[n++] = '\b'; break;
        case 'f': w[n++] = '\f'; break;
        case 'n': w[n++] = '\n'; break;
        case 'r': w[n++] = '\r'; break;
        case 't': w[n++] = '\t'; break;
        case 'u': {
            int cp = end - q >= 4 ? hex4(q) : -1;
            if (cp < 0) {
                parse_fail(ps, q - 2, "invalid \\u escape");
                return false;
            }
            q += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                int lo = end - q >= 6 && q[0] == '\\' && q[1] == 'u' ? hex4(q + 2) : -1;
                if (lo < 0xdc00 || lo > 0xdfff) {
                    parse_fail(ps, q - 6, "invalid Unicode surrogate pair");
                    return false;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                q += 6;
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                parse_fail(ps, q - 6, "invalid Unicode surrogate pair");
                return false;
            } else if (cp == 0) {
                parse_fail(ps, q - 6, "\\u0000 is not allowed");
                return false;
            }
            n += put_utf8(w + n, (unsigned)cp);
            break;
        }
        default:
            parse_fail(ps, q - 2, "invalid escape");
            return false;
        }
    }
    parse_fail(ps, end, "premature end of input in string");
    return false;
}

/* A number per the JSON grammar (json_lex.c): integers become
 * json_integer (an error past json_int_t, as in jansson), reals json_real. */
static json_t *parse_number(parser_t *ps)
{
    json_lex_number_t num;
    const char *why;
    const unsigned char *why_at;
    const unsigned char *next = json_lex_number(ps->p, ps->end, &num, &why, &why_at);
    if (next == NULL)
        return parse_fail(ps, why_at, why);
    ps->p = next;
    return num.is_real ? json_real(num.real) : json_integer((json_int_t)num.integer);
}

static bool expect_literal(parser_t *ps, const char *word, size_t n)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        parse_fail(ps, ps->p, "invalid token");
        return false;
    }
    ps->p += n;
    return true;
}

static json_t *parse_object(parser_t *ps)
{
    json_t *obj = json_object();
    if (obj == NULL)
        return parse_fail(ps, ps->p, "out of memory");
    ps->p++; /* '{' */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return obj;
    }
    for (;;) {
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') {
            parse_fail(ps, ps->p, "string or '}' expected");
            break;
        }
        const unsigned char *key_at = ps->p;
        const char *key;
        size_t key_len;
        if (!parse_string_raw(ps, &key, &key_len))
            break;
        if (memchr(key, '\0', key_len) != NULL) {
            parse_fail(ps, key_at, "NUL byte in object key not supported");
            break;
        }
        /* The key may point into scratch, which the value's strings reuse:
         * copy it then, and only then (most keys stay in the input). */
        char key_small[128];
        char *key_copy = NULL;
        const char *key_stable = key;
        if (key == ps->scratch) {
            key_copy = key_len < sizeof key_small ? key_small : malloc(key_len + 1);
            if (key_copy == NULL) {
                parse_fail(ps, key_at, "out of memory");
                break;
            }
            memcpy(key_copy, key, key_len);
            key_stable = key_copy;
        }
#ifndef HAVE_JSON_SETN
        /* Older jansson wants NUL-terminated keys. */
        if (key_copy == NULL) {
            key_copy = key_len < sizeof key_small ? key_small : malloc(key_len + 1);
            if (key_copy == NULL) {
                parse_fail(ps, key_at, "out of memory");
                break;
            }
            memcpy(key_copy, key, key_len);
            key_stable = key_copy;
        }
        key_copy[key_len] = '\0';
        if (json_object_get(obj, key_copy) != NULL) {
            if (key_copy != key_small)
                free(key_copy);
            parse_fail(ps, key_at, "duplicate object key");
            break;
        }
#endif
        skip_ws(ps);
        json_t *value = NULL;
        if (ps->p >= ps->end || *ps->p != ':') {
            parse_fail(ps, ps->p, "':' expected");
        } else {
            ps->p++;
            value = parse_value(ps);
        }
        int rc = -1;
        if (value != NULL) {
#ifdef HAVE_JSON_SETN
            /* A duplicate key replaces the value and leaves the size as it
             * was: one hash lookup per key instead of two. */
            size_t before = json_object_size(obj);
            rc = json_object_setn_new_nocheck(obj, key_stable, key_len, value);
            if (rc == 0 && json_object_size(obj) == before) {
                parse_fail(ps, key_at, "duplicate object key");
                rc = -1;
            } else if (rc != 0) {
                parse_fail(ps, key_at, "out of memory");
            }
#else
            rc = json_object_set_new_nocheck(obj, key_stable, value);
            if (rc != 0)
                parse_fail(ps, key_at, "out of memory");
#endif
        }
        if (key_copy != NULL && key_copy != key_small)
            free(key_copy);
        if (rc != 0)
            break;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return obj;
        }
        parse_fail(ps, ps->p, "',' or '}' expected");
        break;
    }
    json_decref(obj);
    return NULL;
}

static json_t *parse_array(parser_t *ps)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return parse_fail(ps, ps->p, "out of memory");
    ps->p++; /* '[' */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return arr;
    }
    for (;;) {
        json_t *value = parse_value(ps);
        if (value == NULL || json_array_append_new(arr, value) != 0) {
            parse_fail(ps, ps->p, "out of memory");
            break;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return arr;
        }
        parse_fail(ps, ps->p, "',' or ']' expected");
        break;
    }
    json_decref(arr);
    return NULL;
}

static json_t *parse_value(parser_t *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end)
        return parse_fail(ps, ps->p, "unexpected end of input");
    switch (*ps->p) {
    case '{':
    case '[': {
        if (++ps->depth > JSON_PARSER_MAX_DEPTH)
            return parse_fail(ps, ps->p, "maximum parsing depth reached");
        json_t *v = *ps->p == '{' ? parse_object(ps) : parse_array(ps);
        ps->depth--;
        return v;
    }
    case '"': {
        const char *s;
        size_t n;
        if (!parse_string_raw(ps, &s, &n))
            return NULL;
        json_t *v = json_stringn_nocheck(s, n);
        return v ? v : parse_fail(ps, ps->p, "out of memory");
    }
    case 't':
        return expect_literal(ps, "true", 4) ? json_true() : NULL;
    case 'f':
        return expect_literal(ps, "false", 5) ? json_false() : NULL;
    case 'n':
        return expect_literal(ps, "null", 4) ? json_null() : NULL;
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
            return parse_number(ps);
        return parse_fail(ps, ps->p, "invalid token");
    }
}

json_t *proto_parse_line(const char *line, size_t len, proto_parse_error_t *err)
{
    parser_t ps = {.start = (const unsigned char *)line, .p = (const unsigned char *)line,
                   .end = (const unsigned char *)line + len};
    ps.scratch = ps.small;
    ps.scratch_cap = sizeof ps.small;
    json_t *root = NULL;
    skip_ws(&ps);
    if (ps.p < ps.end && *ps.p != '{' && *ps.p != '[')
        parse_fail(&ps, ps.p, "'[' or '{' expected");
    else
        root = parse_value(&ps);
    if (root != NULL) {
        skip_ws(&ps);
        if (ps.p != ps.end) {
            parse_fail(&ps, ps.p, "end of line expected");
            json_decref(root);
            root = NULL;
        }
    }
    if (ps.scratch != ps.small)
        free(ps.scratch);
    if (root == NULL && err != NULL) {
        err->column = (size_t)(ps.error_at - ps.start) + 1;
        err->text = ps.error ? ps.error : "invalid JSON";
    }
    return root;
}
