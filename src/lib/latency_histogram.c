/*
 * latency_histogram.c - log-linear latency histogram (see
 * latency_histogram.h for the layout and its error bound).
 *
 * Index arithmetic: a value v >= 128 has its most significant bit at
 * position m (7..63). Shifting it right by m - 7 leaves its top eight bits,
 * a number in [128, 256); the bucket is (m - 6) * 128 + (top - 128). For
 * m = 7 the shift is 0 and the index is v itself, so the exact buckets
 * 0..127 and the log-linear ones join without a gap or overlap.
 */
#include "notifd/lib/latency_histogram.h"

#include <string.h>

void latency_histogram_reset(latency_histogram_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

static unsigned msb_index(uint64_t v) { return 63u - (unsigned)__builtin_clzll(v); }

size_t latency_histogram_bucket_index(uint64_t value)
{
    if (value < LATENCY_HIST_SUB_BUCKETS)
        return (size_t)value;
    unsigned m = msb_index(value);
    unsigned shift = m - LATENCY_HIST_SUB_BITS;
    uint64_t top = value >> shift; /* in [128, 256) */
    return (size_t)(shift + 1) * LATENCY_HIST_SUB_BUCKETS + (size_t)(top - LATENCY_HIST_SUB_BUCKETS);
}

uint64_t latency_histogram_bucket_lowest(size_t index)
{
    if (index < LATENCY_HIST_SUB_BUCKETS)
        return (uint64_t)index;
    size_t shift = index / LATENCY_HIST_SUB_BUCKETS - 1;
    uint64_t top = (uint64_t)(index % LATENCY_HIST_SUB_BUCKETS) + LATENCY_HIST_SUB_BUCKETS;
    return top << shift;
}

uint64_t latency_histogram_bucket_highest(size_t index)
{
    if (index < LATENCY_HIST_SUB_BUCKETS)
        return (uint64_t)index;
    size_t shift = index / LATENCY_HIST_SUB_BUCKETS - 1;
    /* lowest + width - 1, written so the very last bucket ends at
     * UINT64_MAX without overflowing. */
    return latency_histogram_bucket_lowest(index) + ((((uint64_t)1) << shift) - 1);
}

void latency_histogram_record_n(latency_histogram_t *h, uint64_t value, uint64_t count)
{
    if (count == 0)
        return;
    h->counts[latency_histogram_bucket_index(value)] += count;
    h->total += count;
    h->sum += (double)value * (double)count;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

void latency_histogram_merge(latency_histogram_t *dst, const latency_histogram_t *src)
{
    if (src->total == 0)
        return;
    for (size_t i = 0; i < LATENCY_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t latency_histogram_quantile(const latency_histogram_t *h, double q)
{
    if (h->total == 0)
        return 0;
    if (!(q > 0.0))
        return h->min;
    if (q >= 1.0)
        return h->max;
    /* The rank of the wanted sample, 1-based: ceil(q * total), at least 1. */
    double want = q * (double)h->total;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < LATENCY_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t lo = latency_histogram_bucket_lowest(i);
            uint64_t hi = latency_histogram_bucket_highest(i);
            uint64_t mid = lo + (hi - lo) / 2;
            if (mid < h->min)
                mid = h->min;
            if (mid > h->max)
                mid = h->max;
            return mid;
        }
    }
    return h->max;
}

double latency_histogram_mean(const latency_histogram_t *h)
{
    return h->total ? h->sum / (double)h->total : 0.0;
}
