/*
 * latency_histogram.h - a fixed-size log-linear histogram of latencies
 * (or any non-negative 64-bit values), in the manner of HdrHistogram.
 *
 * Values are bucketed by their top bits: every power-of-two range
 * [2^k, 2^(k+1)) is split into LATENCY_HIST_SUB_BUCKETS equal buckets, and
 * values below LATENCY_HIST_SUB_BUCKETS each get a bucket of their own. A
 * bucket's width is therefore at most 1/128 of the values it holds, and a
 * quantile reported as the middle of its bucket is within 0.4% of the true
 * sample (0 error below 128). Recording is a shift, a count-leading-zeros
 * and an increment: cheap enough for every response of a load generator.
 *
 * Invariants:
 * - Pure: no I/O, no allocation, no globals. The struct is about 60 KB;
 *   callers keep it in static storage or on the heap, not on a small stack.
 * - Every uint64_t value has a bucket; nothing is clamped or dropped.
 * - Histograms with the same layout merge by adding counts, so per-thread
 *   or per-connection histograms combine exactly.
 * - Quantiles are "the smallest recorded value v such that at least q of
 *   all samples are <= v", reported as the bucket's midpoint clamped to the
 *   exact min and max seen, so p0 is the minimum and p100 the maximum.
 */
#ifndef NOTIFD_LATENCY_HISTOGRAM_H
#define NOTIFD_LATENCY_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

#define LATENCY_HIST_SUB_BITS 7
#define LATENCY_HIST_SUB_BUCKETS (1u << LATENCY_HIST_SUB_BITS) /* 128 */
/* Octaves 7..63 each add SUB_BUCKETS buckets after the first 128 exact ones. */
#define LATENCY_HIST_BUCKETS ((64 - LATENCY_HIST_SUB_BITS + 1) * LATENCY_HIST_SUB_BUCKETS)

typedef struct latency_histogram {
    uint64_t total;       /* samples recorded */
    uint64_t min, max;    /* exact; min is UINT64_MAX while empty */
    double sum;           /* for the mean */
    uint64_t counts[LATENCY_HIST_BUCKETS];
} latency_histogram_t;

/* Empties the histogram. */
void latency_histogram_reset(latency_histogram_t *h);

/* Records `count` samples of `value`. */
void latency_histogram_record_n(latency_histogram_t *h, uint64_t value, uint64_t count);
static inline void latency_histogram_record(latency_histogram_t *h, uint64_t value)
{
    latency_histogram_record_n(h, value, 1);
}

/* Adds every sample of `src` to `dst`. */
void latency_histogram_merge(latency_histogram_t *dst, const latency_histogram_t *src);

/* The q-quantile (q in [0, 1]; 0.99 for p99); 0 when empty. */
uint64_t latency_histogram_quantile(const latency_histogram_t *h, double q);

/* Mean of the recorded values (exact up to double rounding); 0 when empty. */
double latency_histogram_mean(const latency_histogram_t *h);

/* The bucket layout, exposed for tests and exporters: the index of a value's
 * bucket, and the inclusive range [lowest, highest] one bucket covers. */
size_t latency_histogram_bucket_index(uint64_t value);
uint64_t latency_histogram_bucket_lowest(size_t index);
uint64_t latency_histogram_bucket_highest(size_t index);

#endif
