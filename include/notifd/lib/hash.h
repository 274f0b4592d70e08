/*
 * hash.h - stable 64-bit hashing of byte strings.
 *
 * Stable means the same on every machine, build and release: these values
 * seed decision coins (a retried opportunity must get the same answer), put
 * members into experiment arms and planner partitions, so changing the
 * function would reshuffle all of them. It is not a cryptographic hash.
 */
#ifndef NOTIFD_HASH_H
#define NOTIFD_HASH_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64's finaliser: a bijective mix of a 64-bit value. */
uint64_t hash_mix64(uint64_t x);

/* Hash of `len` bytes, chained from `seed` so several fields can be combined:
 * h = hash_bytes(hash_bytes(seed, a, alen), b, blen). */
uint64_t hash_bytes(uint64_t seed, const void *data, size_t len);

/* A uniform double in [0, 1) from a hash value (the top 53 bits). */
double hash_to_unit(uint64_t h);

#endif
