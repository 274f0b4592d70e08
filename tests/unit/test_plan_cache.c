/*
 * test_plan_cache.c - unit tests for src/core/plan_cache.c: a plan is
 * served only to its own member and only within the TTL; forget, clear and
 * a colliding newcomer drop it; long member ids are never cached; a plan
 * parsed under one config generation is never served under another.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/core/plan_cache.h"

#define GEN 1 /* the config generation of most tests */

static plan_t plan_v(int64_t version)
{
    plan_t p;
    memset(&p, 0, sizeof p);
    p.version = version;
    p.planned_mask = 1;
    p.per_week[0] = (double)version;
    return p;
}

static void test_hit_within_ttl_only(void **state)
{
    (void)state;
    plan_cache_t *c = plan_cache_new(64);
    plan_t p = plan_v(3), out;
    plan_cache_put(c, "ann", 3, GEN, 1000, &p);
    assert_true(plan_cache_get(c, "ann", 3, GEN, 1000, 500, &out));
    assert_int_equal(out.version, 3);
    assert_true(plan_cache_get(c, "ann", 3, GEN, 1499, 500, &out));
    assert_false(plan_cache_get(c, "ann", 3, GEN, 1500, 500, &out)); /* expired */
    assert_false(plan_cache_get(c, "ann", 3, GEN, 999, 500, &out));  /* clock went back */
    assert_false(plan_cache_get(c, "bob", 3, GEN, 1000, 500, &out));
    assert_false(plan_cache_get(c, "an", 2, GEN, 1000, 500, &out));
    plan_cache_free(c);
}

static void test_forget_clear_and_overwrite(void **state)
{
    (void)state;
    plan_cache_t *c = plan_cache_new(1); /* one slot: every member collides */
    plan_t a = plan_v(1), b = plan_v(2), out;
    plan_cache_put(c, "a", 1, GEN, 0, &a);
    plan_cache_put(c, "b", 1, GEN, 0, &b);
    assert_false(plan_cache_get(c, "a", 1, GEN, 0, 10, &out)); /* b took the slot */
    assert_true(plan_cache_get(c, "b", 1, GEN, 0, 10, &out));
    assert_int_equal(out.version, 2);
    plan_cache_forget(c, "a", 1); /* not there: b stays */
    assert_true(plan_cache_get(c, "b", 1, GEN, 0, 10, &out));
    plan_cache_forget(c, "b", 1);
    assert_false(plan_cache_get(c, "b", 1, GEN, 0, 10, &out));
    plan_cache_put(c, "b", 1, GEN, 0, &b);
    plan_cache_clear(c);
    assert_false(plan_cache_get(c, "b", 1, GEN, 0, 10, &out));
    plan_cache_free(c);
}

static void test_long_ids_and_null_cache(void **state)
{
    (void)state;
    plan_cache_t *c = plan_cache_new(8);
    char id[PLAN_CACHE_MEMBER_MAX + 1];
    memset(id, 'x', sizeof id);
    plan_t p = plan_v(1), out;
    plan_cache_put(c, id, sizeof id, GEN, 0, &p);
    assert_false(plan_cache_get(c, id, sizeof id, GEN, 0, 10, &out));
    plan_cache_put(c, id, PLAN_CACHE_MEMBER_MAX, GEN, 0, &p);
    assert_true(plan_cache_get(c, id, PLAN_CACHE_MEMBER_MAX, GEN, 0, 10, &out));
    plan_cache_free(c);
    assert_null(plan_cache_new(0));
    assert_false(plan_cache_get(NULL, "a", 1, GEN, 0, 10, &out));
    plan_cache_put(NULL, "a", 1, GEN, 0, &p); /* no crash */
}

/* A plan's per_week is indexed by the channel order of the config it was
 * parsed under: after a reload (a new generation) it must not be served,
 * even when it was stored after the reload by a decide of the old one. */
static void a_plan_is_served_only_under_its_own_generation(void **state)
{
    (void)state;
    plan_cache_t *c = plan_cache_new(64);
    plan_t p = plan_v(5), out;
    plan_cache_put(c, "ann", 3, 1, 1000, &p);
    assert_true(plan_cache_get(c, "ann", 3, 1, 1000, 500, &out));
    assert_false(plan_cache_get(c, "ann", 3, 2, 1000, 500, &out));
    assert_false(plan_cache_get(c, "ann", 3, 0, 1000, 500, &out));
    /* Stored again under generation 2: now only generation 2 sees it. */
    p = plan_v(6);
    plan_cache_put(c, "ann", 3, 2, 1001, &p);
    assert_true(plan_cache_get(c, "ann", 3, 2, 1001, 500, &out));
    assert_int_equal(out.version, 6);
    assert_false(plan_cache_get(c, "ann", 3, 1, 1001, 500, &out));
    plan_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_within_ttl_only),
        cmocka_unit_test(test_forget_clear_and_overwrite),
        cmocka_unit_test(test_long_ids_and_null_cache),
        cmocka_unit_test(a_plan_is_served_only_under_its_own_generation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
