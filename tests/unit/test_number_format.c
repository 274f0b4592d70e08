/*
 * test_number_format.c - unit tests for src/lib/number_format.c: every
 * output must equal glibc's snprintf byte for byte, over random bit
 * patterns, random short decimals, values around powers of ten and ties,
 * and the edge cases (zeros, extremes, integers).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/lib/number_format.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void check_g(double x, int precision)
{
    char want[64], got[NUMBER_FORMAT_MAX];
    int n = snprintf(want, sizeof want, "%.*g", precision, x);
    memset(got, 'Z', sizeof got);
    size_t len = number_format_g(got, x, precision);
    if (len != (size_t)n || strcmp(got, want) != 0)
        fail_msg("%%.%dg of %a: want \"%s\", got \"%s\"", precision, x, want, got);
}

static const int precisions[] = {1, 2, 3, 5, 6, 10, 15, 17};

static void check_all_precisions(double x)
{
    for (size_t i = 0; i < sizeof precisions / sizeof precisions[0]; i++) {
        check_g(x, precisions[i]);
        check_g(-x, precisions[i]);
    }
}

static void test_edge_cases(void **state)
{
    (void)state;
    const double xs[] = {0.0, 1.0, 0.5, 0.25, 0.1, 0.05, 1e-4, 1e-5, 9.99995e-5, 1e5,
                         99999.5, 99999.4, 123456.0, 1e15, 999999999999999.0, 1e16,
                         1e22, 1e23, 1e-300, 5e-324, 1.7976931348623157e308, 2.5, 3.5,
                         0.125, 0.0417, 6.0, 1.5, 0.88155, 0.000123456789, 4503599627370495.5};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
        check_all_precisions(xs[i]);
    check_g(-0.0, 5);
    check_g(INFINITY, 15);
    check_g(-INFINITY, 15);
    check_g(NAN, 15);
}

static void test_random_bit_patterns(void **state)
{
    (void)state;
    for (int i = 0; i < 40000; i++) {
        uint64_t bits = next_u64();
        double x;
        memcpy(&x, &bits, sizeof x);
        if (!isfinite(x))
            continue;
        check_all_precisions(x);
    }
}

static void test_values_in_the_fixed_range(void **state)
{
    (void)state;
    /* The fast path's domain: magnitudes 1e-5 .. 1e16, full mantissas. */
    for (int i = 0; i < 60000; i++) {
        double mant = (double)(next_u64() >> 11) / 9007199254740992.0; /* [0, 1) */
        int e = (int)(next_u64() % 22) - 6;
        check_all_precisions(mant * pow(10.0, e));
    }
}

static void test_short_decimals_and_ties(void **state)
{
    (void)state;
    /* Decimals with few digits, halves of the last printed digit, and
     * neighbours of powers of ten: where rounding is decided. */
    for (int i = 0; i < 25000; i++) {
        int digits = 1 + (int)(next_u64() % 16);
        int scale = (int)(next_u64() % 20) - 4;
        double m = (double)(next_u64() % 10000000000000000ull) / pow(10.0, 16 - digits);
        double x = floor(m) * pow(10.0, scale - digits) * 1.0;
        check_all_precisions(x);
        check_all_precisions(x + 0.5 * pow(10.0, scale - digits));
        check_all_precisions(nextafter(x, 0.0));
        check_all_precisions(nextafter(x, INFINITY));
    }
    for (int e = -6; e <= 17; e++) {
        double p = pow(10.0, e);
        check_all_precisions(p);
        check_all_precisions(nextafter(p, 0.0));
        check_all_precisions(nextafter(p, INFINITY));
    }
}

static void check_i64(int64_t v)
{
    char want[32], got[NUMBER_FORMAT_MAX];
    int n = snprintf(want, sizeof want, "%" PRId64, v);
    size_t len = number_format_i64(got, v);
    assert_int_equal(len, (size_t)n);
    assert_string_equal(got, want);
}

static void test_integers(void **state)
{
    (void)state;
    const int64_t vs[] = {0, 1, -1, 9, 10, -10, 99, 100, 1795392000, -1795392000,
                          INT64_MAX, INT64_MIN, INT64_MIN + 1, 1000000000000000000};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++)
        check_i64(vs[i]);
    for (int i = 0; i < 100000; i++)
        check_i64((int64_t)next_u64() >> (next_u64() % 64));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_random_bit_patterns),
        cmocka_unit_test(test_values_in_the_fixed_range),
        cmocka_unit_test(test_short_decimals_and_ties),
        cmocka_unit_test(test_integers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
