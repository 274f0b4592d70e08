/*
 * json_lex.c - see json_lex.h. Moved out of the tree parser so the decide
 * scanner converts every number and checks every string byte exactly as
 * it does.
 */
#include "notifd/lib/json_lex.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const unsigned char json_lex_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

size_t json_lex_utf8_sequence(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static const unsigned char *fail(const char **why, const unsigned char **why_at,
                                 const unsigned char *at, const char *text)
{
    *why = text;
    *why_at = at;
    return NULL;
}

/* Clinger's fast path: when the digits fit in 53 bits and the decimal
 * exponent in +-22 both operands are exact doubles, so one correctly
 * rounded operation gives the correctly rounded result. */
const unsigned char *json_lex_number(const unsigned char *p, const unsigned char *end,
                                     json_lex_number_t *out, const char **why,
                                     const unsigned char **why_at)
{
    const unsigned char *begin = p;
    bool neg = false, is_real = false;
    if (p < end && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return fail(why, why_at, begin, "invalid number");
    uint64_t mant = 0;
    int digits = 0, dropped = 0; /* significant digits kept / beyond 19 */
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                digits += mant != 0;
            } else {
                dropped++;
            }
            p++;
        }
    }
    int frac = 0;
    if (p < end && *p == '.') {
        is_real = true;
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return fail(why, why_at, p, "invalid number: digits expected after '.'");
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                digits += mant != 0;
                frac++;
            } else {
                dropped++; /* a fraction digit beyond 19: not exact */
            }
            p++;
        }
    }
    long exp10 = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_real = true;
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p >= end || *p < '0' || *p > '9')
            return fail(why, why_at, p, "invalid number: exponent digits expected");
        while (p < end && *p >= '0' && *p <= '9') {
            if (exp10 < 100000)
                exp10 = exp10 * 10 + (*p - '0');
            p++;
        }
        if (eneg)
            exp10 = -exp10;
    }
    size_t len = (size_t)(p - begin);
    out->is_real = is_real;
    if (!is_real) {
        /* At most 19 digits parsed exactly; anything longer overflows. */
        if (dropped > 0 || mant > (uint64_t)INT64_MAX + (neg ? 1u : 0u))
            return fail(why, why_at, begin, neg ? "too big negative integer" : "too big integer");
        out->integer = neg ? (int64_t)(0 - mant) : (int64_t)mant;
        return p;
    }
    double v;
    long e = exp10 - frac;
    if (dropped == 0 && mant < (1ull << 53) && e >= -22 && e <= 22) {
        v = (double)mant;
        v = e >= 0 ? v * pow10_exact[e] : v / pow10_exact[-e];
        if (neg)
            v = -v;
    } else {
        char buf[128];
        char *heap = NULL, *s = buf;
        if (len >= sizeof buf) {
            heap = malloc(len + 1);
            if (heap == NULL)
                return fail(why, why_at, begin, "out of memory");
            s = heap;
        }
        memcpy(s, begin, len);
        s[len] = '\0';
        errno = 0;
        v = strtod(s, NULL);
        bool overflow = errno == ERANGE && isinf(v);
        free(heap);
        if (overflow || !isfinite(v))
            return fail(why, why_at, begin, "real number overflow");
    }
    out->real = v;
    return p;
}
