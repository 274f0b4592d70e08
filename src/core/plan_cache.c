/*
 * plan_cache.c - see plan_cache.h.
 */
#include "notifd/core/plan_cache.h"

#include <stdlib.h>
#include <string.h>

#include "notifd/lib/hash.h"

typedef struct slot {
    uint64_t stored_ms;
    uint64_t generation;       /* the config the plan was parsed under */
    uint8_t len;               /* 0: empty */
    char member[PLAN_CACHE_MEMBER_MAX];
    plan_t plan;
} slot_t;

struct plan_cache {
    size_t n;
    slot_t slots[];
};

plan_cache_t *plan_cache_new(size_t slots)
{
    if (slots == 0)
        return NULL;
    plan_cache_t *c = calloc(1, sizeof *c + slots * sizeof(slot_t));
    if (c != NULL)
        c->n = slots;
    return c;
}

void plan_cache_free(plan_cache_t *c) { free(c); }

static slot_t *slot_of(const plan_cache_t *c, const char *member, size_t len)
{
    return (slot_t *)&c->slots[hash_bytes(0x706c616e, member, len) % c->n];
}

static bool holds(const slot_t *s, const char *member, size_t len)
{
    return s->len == len && len > 0 && memcmp(s->member, member, len) == 0;
}

bool plan_cache_get(const plan_cache_t *c, const char *member, size_t len, uint64_t generation,
                    uint64_t now_ms, uint64_t ttl_ms, plan_t *out)
{
    if (c == NULL || len == 0 || len > PLAN_CACHE_MEMBER_MAX)
        return false;
    const slot_t *s = slot_of(c, member, len);
    if (!holds(s, member, len) || s->generation != generation || now_ms < s->stored_ms ||
        now_ms - s->stored_ms >= ttl_ms)
        return false;
    *out = s->plan;
    return true;
}

void plan_cache_put(plan_cache_t *c, const char *member, size_t len, uint64_t generation,
                    uint64_t now_ms, const plan_t *plan)
{
    if (c == NULL || len == 0 || len > PLAN_CACHE_MEMBER_MAX)
        return;
    slot_t *s = slot_of(c, member, len);
    s->stored_ms = now_ms;
    s->generation = generation;
    s->len = (uint8_t)len;
    memcpy(s->member, member, len);
    s->plan = *plan;
}

void plan_cache_forget(plan_cache_t *c, const char *member, size_t len)
{
    if (c == NULL || len == 0 || len > PLAN_CACHE_MEMBER_MAX)
        return;
    slot_t *s = slot_of(c, member, len);
    if (holds(s, member, len))
        s->len = 0;
}

void plan_cache_clear(plan_cache_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        c->slots[i].len = 0;
}
