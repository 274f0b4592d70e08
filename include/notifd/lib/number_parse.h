/*
 * number_parse.h - a whole byte string (not NUL-terminated) as a finite
 * double, the way Redis hands back the numbers notifd stored.
 *
 * Pure, no allocation. Plain decimals ("12", "-0.53125") take a fast path
 * with the same, correctly rounded result as strtod; anything else
 * (exponents, long mantissas) goes to strtod. False for an empty string,
 * anything but [+-]digits[.digits][e[+-]digits] (no blanks, no hex), NaN or
 * infinity, or more than 63 bytes.
 */
#ifndef NOTIFD_NUMBER_PARSE_H
#define NOTIFD_NUMBER_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool number_parse(const char *s, size_t len, double *out);

/* A whole byte string of 1..max_digits decimal digits (max_digits <= 18, so
 * no overflow) as an integer; false for anything else (signs, blanks). */
bool number_parse_digits(const char *s, size_t len, size_t max_digits, int64_t *out);

#endif
