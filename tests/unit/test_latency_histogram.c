/*
 * test_latency_histogram.c - unit tests for the latency histogram that
 * notifd-bench reports its percentiles from (src/lib/latency_histogram.c):
 * the bucket layout is gap-free and monotonic, small values are exact,
 * quantiles stay within 1% of the exact sorted-sample quantile on skewed
 * data, merging equals recording everything in one histogram, and the
 * extremes (empty, 0, UINT64_MAX) behave.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/lib/latency_histogram.h"

static latency_histogram_t *new_hist(void)
{
    latency_histogram_t *h = malloc(sizeof *h);
    assert_non_null(h);
    latency_histogram_reset(h);
    return h;
}

/* A deterministic generator for the tests (splitmix64). */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void test_buckets_cover_every_value_without_gaps(void **state)
{
    (void)state;
    assert_int_equal(latency_histogram_bucket_lowest(0), 0);
    for (size_t i = 0; i + 1 < LATENCY_HIST_BUCKETS; i++) {
        uint64_t hi = latency_histogram_bucket_highest(i);
        assert_true(latency_histogram_bucket_lowest(i) <= hi);
        assert_int_equal(latency_histogram_bucket_lowest(i + 1), hi + 1);
        assert_int_equal(latency_histogram_bucket_index(latency_histogram_bucket_lowest(i)), i);
        assert_int_equal(latency_histogram_bucket_index(hi), i);
    }
    assert_int_equal(latency_histogram_bucket_highest(LATENCY_HIST_BUCKETS - 1), UINT64_MAX);
    assert_int_equal(latency_histogram_bucket_index(UINT64_MAX), LATENCY_HIST_BUCKETS - 1);
}

static void test_bucket_width_is_within_one_percent_of_its_values(void **state)
{
    (void)state;
    for (size_t i = LATENCY_HIST_SUB_BUCKETS; i < LATENCY_HIST_BUCKETS; i++) {
        double lo = (double)latency_histogram_bucket_lowest(i);
        double width = (double)latency_histogram_bucket_highest(i) - lo + 1.0;
        assert_true(width / lo <= 1.0 / 128.0 + 1e-12);
    }
}

static void test_small_values_are_exact(void **state)
{
    (void)state;
    latency_histogram_t *h = new_hist();
    for (uint64_t v = 0; v < 100; v++)
        latency_histogram_record(h, v);
    assert_int_equal(h->total, 100);
    assert_int_equal(latency_histogram_quantile(h, 0.5), 49);
    assert_int_equal(latency_histogram_quantile(h, 0.99), 98);
    assert_int_equal(latency_histogram_quantile(h, 0.0), 0);
    assert_int_equal(latency_histogram_quantile(h, 1.0), 99);
    assert_true(latency_histogram_mean(h) > 49.49 && latency_histogram_mean(h) < 49.51);
    free(h);
}

static void test_quantiles_within_one_percent_of_exact_on_skewed_data(void **state)
{
    (void)state;
    enum { N = 200000 };
    uint64_t *samples = malloc(N * sizeof *samples);
    assert_non_null(samples);
    latency_histogram_t *h = new_hist();
    uint64_t s = 42;
    for (int i = 0; i < N; i++) {
        /* Log-uniform from 1 us to 1 s in nanoseconds, with a heavy tail:
         * the shape of real latencies. */
        double u = (double)(next_u64(&s) >> 11) / 9007199254740992.0;
        uint64_t v = (uint64_t)(1000.0 * pow(1e6, u * u));
        samples[i] = v;
        latency_histogram_record(h, v);
    }
    qsort(samples, N, sizeof *samples, cmp_u64);
    const double qs[] = {0.01, 0.5, 0.9, 0.99, 0.999, 0.9999};
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        size_t rank = (size_t)(qs[k] * N + 0.999999); /* ceil, 1-based */
        double exact = (double)samples[rank - 1];
        double got = (double)latency_histogram_quantile(h, qs[k]);
        assert_true(got >= exact * 0.99 && got <= exact * 1.01);
    }
    assert_int_equal(latency_histogram_quantile(h, 0.0), samples[0]);
    assert_int_equal(latency_histogram_quantile(h, 1.0), samples[N - 1]);
    free(samples);
    free(h);
}

static void test_merge_equals_recording_into_one(void **state)
{
    (void)state;
    latency_histogram_t *a = new_hist(), *b = new_hist(), *all = new_hist();
    uint64_t s = 7;
    for (int i = 0; i < 50000; i++) {
        uint64_t v = next_u64(&s) % 5000000u;
        latency_histogram_record(i % 3 ? a : b, v);
        latency_histogram_record(all, v);
    }
    latency_histogram_merge(a, b);
    assert_int_equal(a->total, all->total);
    assert_int_equal(a->min, all->min);
    assert_int_equal(a->max, all->max);
    assert_memory_equal(a->counts, all->counts, sizeof a->counts);
    assert_int_equal(latency_histogram_quantile(a, 0.999), latency_histogram_quantile(all, 0.999));
    free(a);
    free(b);
    free(all);
}

static void test_empty_and_extreme_values(void **state)
{
    (void)state;
    latency_histogram_t *h = new_hist();
    assert_int_equal(latency_histogram_quantile(h, 0.5), 0);
    assert_true(latency_histogram_mean(h) == 0.0);
    latency_histogram_record(h, UINT64_MAX);
    latency_histogram_record(h, 0);
    assert_int_equal(h->total, 2);
    assert_int_equal(latency_histogram_quantile(h, 0.5), 0);
    /* The top bucket's midpoint, within 0.4% of the sample; p100 is exact. */
    assert_true((double)latency_histogram_quantile(h, 0.99) >= 0.996 * (double)UINT64_MAX);
    assert_int_equal(latency_histogram_quantile(h, 1.0), UINT64_MAX);
    latency_histogram_record_n(h, 1000, 0); /* a count of 0 records nothing */
    assert_int_equal(h->total, 2);
    free(h);
}

static void test_quantile_is_clamped_to_the_exact_extremes(void **state)
{
    (void)state;
    latency_histogram_t *h = new_hist();
    /* One value in a wide bucket: its midpoint would not be the value. */
    latency_histogram_record_n(h, 1000003, 10);
    assert_int_equal(latency_histogram_quantile(h, 0.5), 1000003);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_cover_every_value_without_gaps),
        cmocka_unit_test(test_bucket_width_is_within_one_percent_of_its_values),
        cmocka_unit_test(test_small_values_are_exact),
        cmocka_unit_test(test_quantiles_within_one_percent_of_exact_on_skewed_data),
        cmocka_unit_test(test_merge_equals_recording_into_one),
        cmocka_unit_test(test_empty_and_extreme_values),
        cmocka_unit_test(test_quantile_is_clamped_to_the_exact_extremes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
