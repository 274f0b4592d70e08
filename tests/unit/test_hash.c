/*
 * test_hash.c - golden values of the stable hash (src/lib/hash.c) and of
 * the schedule partition built on it (src/slow/schedule.c).
 *
 * hash.h promises the same values on every machine, build and release:
 * they seed decision coins and place members in experiment arms, cadence
 * phases and planner partitions. Comparing the function with itself in one
 * process cannot see a change between releases, so these literals were
 * computed once and are written down; if one of them fails, the change
 * reshuffles every member and needs a migration, not a new literal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "notifd/lib/hash.h"
#include "notifd/slow/schedule.h"

static void test_mix64_is_splitmix64(void **state)
{
    (void)state;
    /* splitmix64's first output from state 0 is the published 0xe220a8...:
     * hash_mix64 adds the golden gamma and mixes, as splitmix64 does. */
    assert_true(hash_mix64(0) == 0xe220a8397b1dcdafULL);
    assert_true(hash_mix64(1) == 0x910a2dec89025cc1ULL);
}

static void test_bytes_golden_values(void **state)
{
    (void)state;
    assert_true(hash_bytes(0, "", 0) == 0x5b21f68ffa77f14cULL);
    assert_true(hash_bytes(0, "member-1", 8) == 0x333363c96760c014ULL);
    assert_true(hash_bytes(42, "member-1", 8) == 0x1daa18b766bda743ULL);
    assert_true(hash_bytes(hash_bytes(7, "member-1", 8), "opp-42", 6) == 0xef492a0df848d366ULL);
}

static void test_to_unit_golden_value(void **state)
{
    (void)state;
    /* Hex float literals: exact, no decimal rounding in the comparison. */
    assert_true(hash_to_unit(hash_mix64(1)) == 0x1.22145bd91204bp-1);
}

static void test_schedule_partition_golden_values(void **state)
{
    (void)state;
    /* A changed partition moves members between planner leases. */
    assert_int_equal(schedule_partition("member-1", 8), 59);
    assert_int_equal(schedule_partition("m00000000", 9), 20);
    assert_int_equal(schedule_partition("alice", 5), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mix64_is_splitmix64),
        cmocka_unit_test(test_bytes_golden_values),
        cmocka_unit_test(test_to_unit_golden_value),
        cmocka_unit_test(test_schedule_partition_golden_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
