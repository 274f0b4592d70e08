/*
 * test_keys.c - unit tests for src/core/keys.c: member keys carry the
 * member in braces whatever its bytes, and hash fields are joined and cut
 * short exactly like snprintf("%s%s").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/core/keys.h"

static void test_member_keys_share_the_members_slot(void **state)
{
    (void)state;
    char buf[KEY_MAX];
    size_t n = key_member(buf, "t:", "week", "a\0b", 3, "", 0);
    assert_int_equal(n, 12);
    assert_memory_equal(buf, "t:week:{a\0b}", 12);
    n = key_member(buf, "", "idem", "m1", 2, ":opp-7", 6);
    assert_int_equal(n, 15);
    assert_memory_equal(buf, "idem:{m1}:opp-7", 15);
}

static void test_fields_join_like_snprintf(void **state)
{
    (void)state;
    const char *as[] = {"push", "", "in_app", "a_very_long_channel_name_indeed"};
    const char *bs[] = {"_sent", ":scores", "", "_delivered"};
    const size_t caps[] = {1, 2, 5, 11, 12, 32, 48};
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 4; j++)
            for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
                char want[64], got[64];
                memset(got, 'Z', sizeof got);
                int w = snprintf(want, caps[k], "%s%s", as[i], bs[j]);
                size_t n = key_field(got, caps[k], as[i], bs[j]);
                size_t expect = (size_t)w < caps[k] ? (size_t)w : caps[k] - 1;
                assert_int_equal(n, expect);
                assert_string_equal(got, want);
                assert_int_equal(got[caps[k]], 'Z'); /* nothing past cap */
            }
    char one[1] = {'Z'};
    assert_int_equal(key_field(one, 0, "a", "b"), 0);
    assert_int_equal(one[0], 'Z');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_keys_share_the_members_slot),
        cmocka_unit_test(test_fields_join_like_snprintf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
