/*
 * test_number_parse.c - number_parse() agrees with strtod on every form
 * notifd writes (integers, %.5g scores, %.17g reals), bit for bit, and
 * rejects what is not one whole finite number.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/lib/number_parse.h"
#include "notifd/lib/rng.h"

static void expect_same_as_strtod(const char *text)
{
    double got = 0.0;
    assert_true(number_parse(text, strlen(text), &got));
    double want = strtod(text, NULL);
    if (memcmp(&got, &want, sizeof got) != 0)
        fail_msg("\"%s\": %.17g, strtod %.17g", text, got, want);
}

static void test_agrees_with_strtod_on_what_notifd_writes(void **state)
{
    (void)state;
    static const char *const fixed[] = {"0", "-0", "12", "-300", "3.1415", "0.53125",
                                        "1795392000", "1.2346e-05", "9007199254740993",
                                        "0.1", "123456789012345", "1234567890123456",
                                        "+7", "1e22", "4.9406564584124654e-324"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        expect_same_as_strtod(fixed[i]);
    rng_t rng;
    rng_seed(&rng, 11);
    char buf[64];
    for (int i = 0; i < 200000; i++) {
        double x = rng_next_unit(&rng) * pow(10.0, (int)(rng_next_unit(&rng) * 24) - 12);
        if (i & 1)
            x = -x;
        switch (i % 5) {
        case 0: snprintf(buf, sizeof buf, "%.5g", x); break;
        case 1: snprintf(buf, sizeof buf, "%.17g", x); break;
        case 2: snprintf(buf, sizeof buf, "%.15g", x); break;
        case 3: snprintf(buf, sizeof buf, "%.6f", x); break;
        default: snprintf(buf, sizeof buf, "%.0f", x); break;
        }
        expect_same_as_strtod(buf);
    }
}

static void test_rejects_what_is_not_one_finite_number(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "-", ".", "1.2.3", "12x", " 1", "1 ", "nan", "inf",
                                      "1e400", "0x10", "--1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v = 42.0;
        if (number_parse(bad[i], strlen(bad[i]), &v))
            fail_msg("\"%s\" parsed as %.17g", bad[i], v);
        assert_true(v == 42.0);
    }
    /* Only len bytes are read: "12" out of "123". */
    double v = 0.0;
    assert_true(number_parse("123", 2, &v));
    assert_true(v == 12.0);
    char longnum[80];
    memset(longnum, '1', sizeof longnum - 1);
    longnum[sizeof longnum - 1] = '\0';
    assert_false(number_parse(longnum, strlen(longnum), &v));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agrees_with_strtod_on_what_notifd_writes),
        cmocka_unit_test(test_rejects_what_is_not_one_finite_number),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
