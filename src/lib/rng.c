/*
 * rng.c - xoshiro256** seeded through splitmix64 (see rng.h).
 *
 * xoshiro256** is fast (a few shifts and multiplies), passes BigCrush, and
 * has a 2^256 period, far more than any decision or simulation needs. Its
 * state must not be all zero; filling it with four splitmix64 outputs
 * guarantees that: splitmix64 mixes four distinct counter values with a
 * bijection, so the four words are distinct and at most one of them is 0.
 */
#include "notifd/lib/rng.h"

#include "notifd/lib/hash.h"

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_seed(rng_t *rng, uint64_t seed)
{
    /* hash_mix64 is splitmix64's step (add the golden gamma, then mix), so
     * feeding it seed, seed+gamma, ... walks the splitmix64 sequence. */
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        rng->s[i] = hash_mix64(x);
        x += 0x9e3779b97f4a7c15ull;
    }
}

void rng_seed_decision(rng_t *rng, uint64_t config_seed, const char *member,
                       size_t member_len, const char *opportunity, size_t opp_len)
{
    uint64_t h = hash_bytes(config_seed, member, member_len);
    h = hash_bytes(h, opportunity, opp_len);
    rng_seed(rng, h);
}

uint64_t rng_next_u64(rng_t *rng)
{
    uint64_t *s = rng->s;
    const uint64_t result = rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double rng_next_unit(rng_t *rng)
{
    /* The top 53 bits are the best ones of xoshiro256** and fill a double's
     * mantissa exactly, so every value is a multiple of 2^-53 below 1. */
    return (double)(rng_next_u64(rng) >> 11) * 0x1.0p-53;
}
