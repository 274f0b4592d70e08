/*
 * hash.c - stable 64-bit hashing (see hash.h).
 *
 * FNV-1a over the bytes, with the length folded in so "ab"+"c" and "a"+"bc"
 * differ when fields are chained, then splitmix64's finaliser, which fixes
 * FNV's weak avalanche in the high bits that hash_to_unit() uses.
 */
#include "notifd/lib/hash.h"

uint64_t hash_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t hash_bytes(uint64_t seed, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ hash_mix64(seed);
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    h ^= (uint64_t)len;
    return hash_mix64(h);
}

double hash_to_unit(uint64_t h) { return (double)(h >> 11) * 0x1.0p-53; }
