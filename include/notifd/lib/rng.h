/*
 * rng.h - a small, fast, seedable pseudo-random generator for decisions.
 *
 * Every random choice notifd makes on the fast path (the pacing coin, the
 * ranker's exploration draw) comes from an rng_t seeded by
 * rng_seed_decision() from (config seed, member, opportunity). A retried
 * opportunity therefore replays the exact same draws and gets the same
 * answer, and a simulation with a fixed seed is reproducible bit for bit.
 *
 * Invariants:
 * - The generator is xoshiro256** (Blackman & Vigna); its state is never all
 *   zero because it is always filled through splitmix64 from a 64-bit seed.
 * - The stream for a given seed is stable across machines, builds and
 *   releases: changing it would change recorded decisions on replay.
 * - An rng_t is plain data owned by the caller (usually on the stack, one
 *   per decision); nothing here allocates or touches global state.
 */
#ifndef NOTIFD_RNG_H
#define NOTIFD_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
} rng_t;

/* Seeds the generator from one 64-bit value (any value, including 0). */
void rng_seed(rng_t *rng, uint64_t seed);

/* Seeds the generator for one decision from the config seed, the member id
 * and the opportunity id (byte strings, not NUL-terminated; NULL with length
 * 0 is allowed). Chained hashing keeps ("ab","c") and ("a","bc") apart. */
void rng_seed_decision(rng_t *rng, uint64_t config_seed, const char *member,
                       size_t member_len, const char *opportunity, size_t opp_len);

/* The next 64 uniformly distributed bits. */
uint64_t rng_next_u64(rng_t *rng);

/* A uniform double in [0, 1) with 53 bits of precision. */
double rng_next_unit(rng_t *rng);

#endif
