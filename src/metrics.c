/*
 * metrics.c - counters and latency histograms (see metrics.h).
 */
#include "notifd/metrics.h"

#include <stdatomic.h>
#include <stdlib.h>

#define LATENCY_BUCKETS 15

/* Upper bounds in seconds; the last bucket is +Inf. Dense below 1 ms, where
 * the decide latency goal lives. */
static const double latency_bounds[LATENCY_BUCKETS - 1] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1.0,
};

typedef struct histogram {
    _Atomic uint64_t buckets[LATENCY_BUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
} histogram_t;

struct metrics {
    _Atomic uint64_t requests[OP_COUNT + 1][2];
    _Atomic uint64_t errors[PROTO_ERROR_COUNT];
    histogram_t request_seconds[OP_COUNT + 1];
};

metrics_t *metrics_create(void) { return calloc(1, sizeof(metrics_t)); }

void metrics_free(metrics_t *m) { free(m); }

static void histogram_observe(histogram_t *h, double seconds)
{
    int b = 0;
    while (b < LATENCY_BUCKETS - 1 && seconds > latency_bounds[b])
        b++;
    atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)(seconds * 1e9), memory_order_relaxed);
}

void metrics_observe_request(void *mp, op_id_t op, bool ok, proto_error_t code, double seconds)
{
    metrics_t *m = mp;
    if (m == NULL)
        return;
    atomic_fetch_add_explicit(&m->requests[op][ok ? 0 : 1], 1, memory_order_relaxed);
    if (!ok)
        atomic_fetch_add_explicit(&m->errors[code], 1, memory_order_relaxed);
    histogram_observe(&m->request_seconds[op], seconds);
}
