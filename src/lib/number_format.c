/*
 * number_format.c - see number_format.h.
 *
 * The fast path of number_format_g: with e = floor(log10|x|), the first
 * `precision` digits of |x| are round(|x| * 10^k) for k = precision - 1 - e.
 * 10^k is exact for 0 <= k <= 22, so the product is off from the exact one
 * by at most half an ulp; unless its fraction is that close to one half,
 * rounding it gives the correctly rounded digits, which is what glibc
 * prints. Anything else goes to snprintf.
 */
#include "notifd/lib/number_format.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const double pow10_exact[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

size_t number_format_i64(char *out, int64_t v)
{
    char digits[20];
    size_t n = 0;
    /* Negated as unsigned so INT64_MIN works too. */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    size_t at = 0;
    if (v < 0)
        out[at++] = '-';
    while (n > 0)
        out[at++] = digits[--n];
    out[at] = '\0';
    return at;
}

/* floor(log10(a)) without log10, by comparison with powers of ten, for
 * the a the fast path can take (1e-5 <= a < 1e15); below that -5, which
 * sends a to snprintf. The negative powers are rounded, so near one of
 * them the result may be one off: the digit count check in
 * number_format_g catches that, as it did log10's. */
static int decimal_exponent(double a)
{
    static const double neg_pow10[] = {1e-1, 1e-2, 1e-3, 1e-4};
    if (a >= 1.0) {
        int e = 0;
        while (e < 22 && a >= pow10_exact[e + 1])
            e++;
        return e;
    }
    for (int i = 0; i < 4; i++)
        if (a >= neg_pow10[i])
            return -(i + 1);
    return -5;
}

static size_t slow_g(char *out, double x, int precision)
{
    int n = snprintf(out, NUMBER_FORMAT_MAX, "%.*g", precision, x);
    return n < 0 ? 0 : (size_t)n;
}

size_t number_format_g(char *out, double x, int precision)
{
    if (precision < 1 || precision > 15 || !isfinite(x))
        return slow_g(out, x, precision);
    if (x == 0.0) {
        if (signbit(x)) {
            memcpy(out, "-0", 3);
            return 2;
        }
        memcpy(out, "0", 2);
        return 1;
    }
    const double a = fabs(x);
    const int e = decimal_exponent(a);
    /* %g writes the fixed form for exponents -4 .. precision-1. */
    if (e < -4 || e >= precision)
        return slow_g(out, x, precision);
    const int k = precision - 1 - e;
    if (k < 0 || k > 22)
        return slow_g(out, x, precision);
    const double y = a * pow10_exact[k];
    double m = floor(y);
    const double frac = y - m;
    /* The product may be off by half an ulp: too close to a tie to tell.
     * y * 2^-52 is at least y's ulp (y is normal here): a wider margin
     * only sends a few more values to snprintf. */
    if (fabs(frac - 0.5) <= y * 0x1p-52)
        return slow_g(out, x, precision);
    if (frac > 0.5)
        m += 1.0;
    /* log10 may be one off near a power of ten, and rounding may carry
     * into another digit: then the digits are not `precision` long. */
    if (m < pow10_exact[precision - 1] || m >= pow10_exact[precision])
        return slow_g(out, x, precision);

    char d[16];
    uint64_t u = (uint64_t)m;
    for (int i = precision - 1; i >= 0; i--) {
        d[i] = (char)('0' + u % 10);
        u /= 10;
    }
    int nd = precision; /* significant digits once trailing zeros go */
    while (nd > 1 && d[nd - 1] == '0')
        nd--;

    size_t at = 0;
    if (x < 0)
        out[at++] = '-';
    if (e >= 0) {
        /* e + 1 integer digits, all among the `precision` (e < precision). */
        memcpy(out + at, d, (size_t)e + 1);
        at += (size_t)e + 1;
        if (nd > e + 1) {
            out[at++] = '.';
            memcpy(out + at, d + e + 1, (size_t)(nd - e - 1));
            at += (size_t)(nd - e - 1);
        }
    } else {
        out[at++] = '0';
        out[at++] = '.';
        for (int i = 0; i < -e - 1; i++)
            out[at++] = '0';
        memcpy(out + at, d, (size_t)nd);
        at += (size_t)nd;
    }
    out[at] = '\0';
    return at;
}
