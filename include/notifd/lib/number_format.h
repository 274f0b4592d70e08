/*
 * number_format.h - numbers as text, byte for byte what printf writes, at
 * a fraction of its cost.
 *
 * A decide writes a dozen numbers (its answer's probabilities, the recent
 * scores, the record script's arguments); printf's general machinery for
 * them was a seventh of notifd's instructions per decide. Pure, no
 * allocation.
 */
#ifndef NOTIFD_NUMBER_FORMAT_H
#define NOTIFD_NUMBER_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* Enough for any output of these functions, with the NUL. */
#define NUMBER_FORMAT_MAX 32

/* Writes x exactly as snprintf(out, NUMBER_FORMAT_MAX, "%.*g", precision,
 * x) does (glibc: shortest of fixed and exponent form, trailing zeros
 * dropped, correctly rounded). Doubles whose digits come out unambiguously
 * from one multiplication take a fast path; the rest (exponent form,
 * precision above 15, values within rounding error of a tie) are handed to
 * snprintf. Returns the length. */
size_t number_format_g(char *out, double x, int precision);

/* Writes v in decimal, as "%" PRId64; returns the length. */
size_t number_format_i64(char *out, int64_t v);

#endif
