/*
 * json_writer.c - see json_writer.h.
 */
#include "notifd/lib/json_writer.h"
#include "notifd/lib/json_lex.h"
#include "notifd/lib/number_format.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void jw_init(json_writer_t *w) { memset(w, 0, sizeof *w); }

void jw_free(json_writer_t *w)
{
    free(w->buf);
    jw_init(w);
}

char *jw_take(json_writer_t *w, size_t *len)
{
    char *out = w->failed || w->buf == NULL ? NULL : w->buf;
    if (out != NULL)
        out[w->len] = '\0'; /* every reservation kept a byte for it */
    if (out == NULL)
        free(w->buf);
    if (len)
        *len = out ? w->len : 0;
    jw_init(w);
    return out;
}

/* Room for `more` bytes and the NUL jw_take adds: the buffer grows by
 * doubling, so a reply is one or two allocations. */
static bool reserve_slow(json_writer_t *w, size_t more)
{
    if (w->failed)
        return false;
    /* A decide body and its reply line are a few hundred bytes: one malloc each. */
    size_t cap = w->cap ? w->cap : 512;
    while (cap < w->len + more + 1)
        cap *= 2;
    char *b = realloc(w->buf, cap);
    if (b == NULL) {
        w->failed = true;
        return false;
    }
    w->buf = b;
    w->cap = cap;
    return true;
}

static inline bool reserve(json_writer_t *w, size_t more)
{
    return (!w->failed && w->len + more + 1 <= w->cap) || reserve_slow(w, more);
}

static void put(json_writer_t *w, const char *s, size_t n)
{
    if (!reserve(w, n))
        return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

/* The separator a new item (key, or value in an array/at top) needs, if
 * any; the caller has reserved a byte for it. */
static size_t separator(json_writer_t *w, char *out)
{
    if (w->after_key) {
        w->after_key = false;
        return 0;
    }
    if (w->depth == 0)
        return 0;
    bool comma = w->has_items[w->depth - 1];
    w->has_items[w->depth - 1] = true;
    if (comma)
        *out = ',';
    return comma;
}

static void begin_item(json_writer_t *w)
{
    if (!reserve(w, 1))
        return;
    w->len += separator(w, w->buf + w->len);
}

static void open_container(json_writer_t *w, const char *bracket)
{
    begin_item(w);
    if (w->depth >= JSON_WRITER_MAX_DEPTH) {
        w->failed = true;
        return;
    }
    w->has_items[w->depth++] = false;
    put(w, bracket, 1);
}

static void close_container(json_writer_t *w, const char *bracket)
{
    if (w->depth == 0 || w->after_key) {
        w->failed = true;
        return;
    }
    w->depth--;
    put(w, bracket, 1);
}

void jw_object_begin(json_writer_t *w) { open_container(w, "{"); }
void jw_object_end(json_writer_t *w) { close_container(w, "}"); }
void jw_array_begin(json_writer_t *w) { open_container(w, "["); }
void jw_array_end(json_writer_t *w) { close_container(w, "]"); }

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if it is not one:
 * overlong forms, surrogates and code points past U+10FFFF are invalid. */
static size_t utf8_valid_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; min = 0x10000; }
    else return 0;
    if (avail < n)
        return 0;
    unsigned cp = c & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* The quoted, escaped string at out, which has room for 6 bytes per input
 * byte (the longest escape, \u00XX) plus the quotes; returns its length. */
static size_t write_escaped(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    char *o = out;
    *o++ = '"';
    while (p < end) {
        /* Bytes that need no escaping, copied as they are scanned: most
         * strings here are short keys, where a memcpy call costs more. */
        while (p < end && json_lex_plain[*p])
            *o++ = (char)*p++;
        if (p == end)
            break;
        unsigned c = *p;
        if (c >= 0x80) {
            size_t n = utf8_valid_len(p, (size_t)(end - p));
            if (n == 0) {
                memcpy(o, "\xEF\xBF\xBD", 3); /* U+FFFD for a byte that is not UTF-8 */
                o += 3;
                p++;
            } else {
                memcpy(o, p, n);
                o += n;
                p += n;
            }
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
        p++;
    }
    *o++ = '"';
    return (size_t)(o - out);
}

/* Separator, then the string, in one reservation: most replies are short
 * keys and ids, so the per-byte work is the copy. */
static void put_item_string(json_writer_t *w, const char *s, size_t len, bool key)
{
    if (len > (SIZE_MAX - 8) / 6 || !reserve(w, 6 * len + 4)) {
        w->failed = true;
        return;
    }
    char *o = w->buf + w->len;
    o += separator(w, o);
    o += write_escaped(o, s, len);
    if (key)
        *o++ = ':';
    w->len = (size_t)(o - w->buf);
}

void jw_raw(json_writer_t *w, const char *text, size_t len) { put(w, text, len); }

void jw_key(json_writer_t *w, const char *key)
{
    if (w->depth == 0 || w->after_key) {
        w->failed = true;
        return;
    }
    put_item_string(w, key, strlen(key), true);
    w->after_key = true;
}

void jw_string(json_writer_t *w, const char *s, size_t len)
{
    put_item_string(w, s, len, false);
}

void jw_cstring(json_writer_t *w, const char *s) { jw_string(w, s, strlen(s)); }

void jw_real(json_writer_t *w, double x)
{
    if (!isfinite(x)) {
        jw_null(w);
        return;
    }
    begin_item(w);
    char b[NUMBER_FORMAT_MAX + 8];
    int n = (int)number_format_g(b, x, 15);
    if (n <= 0 || (size_t)n >= sizeof b - 2) {
        w->failed = true;
        return;
    }
    /* Like jansson: the exponent without "+" or leading zeros ("2.5e-9"),
     * and a real always reads back as a real ("1.0"). */
    char *e = strchr(b, 'e');
    if (e != NULL) {
        char *digits = e + 1, *from = digits;
        if (*from == '-')
            digits = ++from;
        else if (*from == '+')
            from++;
        while (*from == '0' && from[1] != '\0')
            from++;
        memmove(digits, from, strlen(from) + 1);
        n = (int)strlen(b);
    } else if (strchr(b, '.') == NULL) {
        b[n++] = '.';
        b[n++] = '0';
        b[n] = '\0';
    }
    put(w, b, (size_t)n);
}

void jw_int(json_writer_t *w, int64_t x)
{
    begin_item(w);
    char b[NUMBER_FORMAT_MAX];
    put(w, b, number_format_i64(b, x));
}

void jw_bool(json_writer_t *w, bool b)
{
    begin_item(w);
    put(w, b ? "true" : "false", b ? 4 : 5);
}

void jw_null(json_writer_t *w)
{
    begin_item(w);
    put(w, "null", 4);
}
