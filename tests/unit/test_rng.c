/*
 * test_rng.c - unit tests for the decision PRNG (src/lib/rng.c): the
 * reference xoshiro256** output, determinism of decision seeding (a retried
 * opportunity replays the same draws), separation of inputs, and rough
 * uniformity of rng_next_unit() on a fixed seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/lib/rng.h"

static void test_matches_reference_xoshiro256starstar(void **state)
{
    (void)state;
    /* Hand-derived from the reference algorithm with state {1, 2, 3, 4}:
     * first output rotl(2*5, 7)*9 = 11520; after one step s[1] is 0, so the
     * second output is 0. */
    rng_t r = {{1, 2, 3, 4}};
    assert_int_equal(rng_next_u64(&r), 11520);
    assert_int_equal(rng_next_u64(&r), 0);
}

static void test_same_seed_gives_same_stream(void **state)
{
    (void)state;
    rng_t a, b;
    rng_seed(&a, 12345);
    rng_seed(&b, 12345);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(rng_next_u64(&a), rng_next_u64(&b));
}

static void test_different_seeds_give_different_streams(void **state)
{
    (void)state;
    rng_t a, b;
    rng_seed(&a, 1);
    rng_seed(&b, 2);
    int same = 0;
    for (int i = 0; i < 100; i++)
        same += rng_next_u64(&a) == rng_next_u64(&b);
    assert_int_equal(same, 0);
}

static void test_seed_zero_is_not_stuck(void **state)
{
    (void)state;
    rng_t r;
    rng_seed(&r, 0);
    uint64_t first = rng_next_u64(&r);
    int repeats = 0;
    for (int i = 0; i < 100; i++)
        repeats += rng_next_u64(&r) == first;
    assert_int_not_equal(first, 0);
    assert_int_equal(repeats, 0);
}

static uint64_t decision_first(uint64_t seed, const char *member, const char *opp)
{
    rng_t r;
    rng_seed_decision(&r, seed, member, strlen(member), opp, strlen(opp));
    return rng_next_u64(&r);
}

static void test_retried_decision_replays_same_draws(void **state)
{
    (void)state;
    rng_t a, b;
    rng_seed_decision(&a, 7, "member-1", 8, "opp-42", 6);
    rng_seed_decision(&b, 7, "member-1", 8, "opp-42", 6);
    for (int i = 0; i < 10; i++)
        assert_true(rng_next_unit(&a) == rng_next_unit(&b));
}

/* Golden values, computed once and written down: the streams must not
 * change between releases (a retried opportunity after an upgrade must
 * replay the same coin), which comparing two streams of one build cannot
 * see. A failure here means every decision's draws moved. */
static void test_streams_match_golden_values(void **state)
{
    (void)state;
    rng_t r;
    rng_seed(&r, 12345);
    assert_true(rng_next_u64(&r) == 0xbe6a36374160d49bULL);
    assert_true(rng_next_u64(&r) == 0x214aaa0637a688c6ULL);
    assert_true(rng_next_u64(&r) == 0xf69d16de9954d388ULL);
    rng_seed(&r, 0);
    assert_true(rng_next_u64(&r) == 0x99ec5f36cb75f2b4ULL);
    rng_seed_decision(&r, 7, "member-1", 8, "opp-42", 6);
    assert_true(rng_next_u64(&r) == 0xbdb36e5505539ee6ULL);
    assert_true(rng_next_unit(&r) == 0x1.109b88e4100a4p-1); /* exact hex float */
}

static void test_decision_seed_depends_on_every_input(void **state)
{
    (void)state;
    const uint64_t base = decision_first(7, "member-1", "opp-42");
    assert_int_not_equal(base, decision_first(8, "member-1", "opp-42"));
    assert_int_not_equal(base, decision_first(7, "member-2", "opp-42"));
    assert_int_not_equal(base, decision_first(7, "member-1", "opp-43"));
}

static void test_decision_seed_keeps_field_boundaries(void **state)
{
    (void)state;
    /* Concatenation must not collide: ("ab", "c") vs ("a", "bc"). */
    assert_int_not_equal(decision_first(7, "ab", "c"), decision_first(7, "a", "bc"));
    assert_int_not_equal(decision_first(7, "", "abc"), decision_first(7, "abc", ""));
}

static void test_decision_seed_accepts_empty_null_fields(void **state)
{
    (void)state;
    rng_t a, b;
    rng_seed_decision(&a, 7, NULL, 0, NULL, 0);
    rng_seed_decision(&b, 7, "", 0, "", 0);
    assert_int_equal(rng_next_u64(&a), rng_next_u64(&b));
}

static void test_unit_draws_are_in_range_and_uniform(void **state)
{
    (void)state;
    enum { BINS = 100, DRAWS = 200000 };
    unsigned counts[BINS] = {0};
    rng_t r;
    rng_seed(&r, 2024);
    for (int i = 0; i < DRAWS; i++) {
        double u = rng_next_unit(&r);
        assert_true(u >= 0.0 && u < 1.0);
        counts[(int)(u * BINS)]++;
    }
    /* Chi-square with 99 degrees of freedom: mean 99, sd 14. 160 is over
     * four sd out; a broken generator (e.g. a stuck bit) lands far beyond. */
    const double expected = (double)DRAWS / BINS;
    double chi2 = 0.0;
    for (int b = 0; b < BINS; b++)
        chi2 += (counts[b] - expected) * (counts[b] - expected) / expected;
    assert_true(chi2 < 160.0);
}

static void test_u64_bits_are_balanced(void **state)
{
    (void)state;
    /* Every output bit should be set about half the time; a generator that
     * leaves low or high bits weak fails this. */
    enum { DRAWS = 20000 };
    unsigned ones[64] = {0};
    rng_t r;
    rng_seed(&r, 99);
    for (int i = 0; i < DRAWS; i++) {
        uint64_t x = rng_next_u64(&r);
        for (int b = 0; b < 64; b++)
            ones[b] += (x >> b) & 1u;
    }
    for (int b = 0; b < 64; b++)
        assert_in_range(ones[b], DRAWS / 2 - 600, DRAWS / 2 + 600); /* ~8.5 sd */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference_xoshiro256starstar),
        cmocka_unit_test(test_same_seed_gives_same_stream),
        cmocka_unit_test(test_different_seeds_give_different_streams),
        cmocka_unit_test(test_seed_zero_is_not_stuck),
        cmocka_unit_test(test_retried_decision_replays_same_draws),
        cmocka_unit_test(test_streams_match_golden_values),
        cmocka_unit_test(test_decision_seed_depends_on_every_input),
        cmocka_unit_test(test_decision_seed_keeps_field_boundaries),
        cmocka_unit_test(test_decision_seed_accepts_empty_null_fields),
        cmocka_unit_test(test_unit_draws_are_in_range_and_uniform),
        cmocka_unit_test(test_u64_bits_are_balanced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
