/*
 * number_parse.c - numbers stored as text in Redis, parsed fast (see
 * number_parse.h).
 */
#include "notifd/lib/number_parse.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * Clinger's fast path for the plain decimals the writer produces
 * ("12", "-300", "3.1415"): with at most 15 significant digits the digits
 * form an exact integer below 2^53 and 10^k (k <= 22) is exact too, so one
 * division gives the correctly rounded result, the same as strtod, at a
 * fraction of its cost (the planner parses ~30 fields per member, a
 * decide up to fast.quality_history recent scores). Anything
 * else (exponents, long mantissas) returns false and goes to strtod.
 */
static bool parse_plain_decimal(const char *s, size_t len, double *out)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t i = 0;
    bool negative = false;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        negative = s[i++] == '-';
    uint64_t mantissa = 0;
    int digits = 0, frac_digits = 0;
    bool seen_point = false, seen_digit = false;
    for (; i < len; i++) {
        char ch = s[i];
        if (ch >= '0' && ch <= '9') {
            seen_digit = true;
            if (mantissa == 0 && ch == '0') {
                if (seen_point)
                    frac_digits++;
                continue; /* leading zeros are not significant */
            }
            if (++digits > 15)
                return false;
            mantissa = mantissa * 10 + (uint64_t)(ch - '0');
            if (seen_point)
                frac_digits++;
        } else if (ch == '.' && !seen_point) {
            seen_point = true;
        } else {
            return false;
        }
    }
    if (!seen_digit || frac_digits > 22)
        return false;
    double v = (double)mantissa / pow10[frac_digits];
    *out = negative ? -v : v;
    return true;
}

bool number_parse_digits(const char *s, size_t len, size_t max_digits, int64_t *out)
{
    if (len == 0 || len > max_digits || max_digits > 18)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool number_parse(const char *s, size_t len, double *out)
{
    if (parse_plain_decimal(s, len, out))
        return true;
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return false;
    /* Decimal only: strtod would also take leading blanks and hex. */
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-' || s[i] == '+' ||
              s[i] == 'e' || s[i] == 'E'))
            return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end = NULL;
    double v = strtod(buf, &end);
    if (end != buf + len || !isfinite(v))
        return false;
    *out = v;
    return true;
}
