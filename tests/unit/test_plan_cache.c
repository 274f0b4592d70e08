/*
 * test_plan_cache.c - unit tests for src/core/plan_cache.c: a plan is
 * served only to its own member and only within the TTL; forget, clear and
 * a colliding newcomer drop it; long member ids are never cached.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/plan_cache.h"

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
    plan_cache_put(c, "ann", 3, 1000, &p);
    assert_true(plan_cache_get(c, "ann", 3, 1000, 500, &out));
    assert_int_equal(out.version, 3);
    assert_true(plan_cache_get(c, "ann", 3, 1499, 500, &out));
    assert_false(plan_cache_get(c, "ann", 3, 1500, 500, &out)); /* expired */
    assert_false(plan_cache_get(c, "ann", 3, 999, 500, &out));  /* clock went back */
    assert_false(plan_cache_get(c, "bob", 3, 1000, 500, &out));
    assert_false(plan_cache_get(c, "an", 2, 1000, 500, &out));
    plan_cache_free(c);
}

static void test_forget_clear_and_overwrite(void **state)
{
    (void)state;
    plan_cache_t *c = plan_cache_new(1); /* one slot: every member collides */
    plan_t a = plan_v(1), b = plan_v(2), out;
    plan_cache_put(c, "a", 1, 0, &a);
    plan_cache_put(c, "b", 1, 0, &b);
    assert_false(plan_cache_get(c, "a", 1, 0, 10, &out)); /* b took the slot */
    assert_true(plan_cache_get(c, "b", 1, 0, 10, &out));
    assert_int_equal(out.version, 2);
    plan_cache_forget(c, "a", 1); /* not there: b stays */
    assert_true(plan_cache_get(c, "b", 1, 0, 10, &out));
    plan_cache_forget(c, "b", 1);
    assert_false(plan_cache_get(c, "b", 1, 0, 10, &out));
    plan_cache_put(c, "b", 1, 0, &b);
    plan_cache_clear(c);
    assert_false(plan_cache_get(c, "b", 1, 0, 10, &out));
    plan_cache_free(c);
}

static void test_long_ids_and_null_cache(void **state)
{
    (void)state;
    plan_cache_t *c = plan_cache_new(8);
    char id[PLAN_CACHE_MEMBER_MAX + 1];
    memset(id, 'x', sizeof id);
    plan_t p = plan_v(1), out;
    plan_cache_put(c, id, sizeof id, 0, &p);
    assert_false(plan_cache_get(c, id, sizeof id, 0, 10, &out));
    plan_cache_put(c, id, PLAN_CACHE_MEMBER_MAX, 0, &p);
    assert_true(plan_cache_get(c, id, PLAN_CACHE_MEMBER_MAX, 0, 10, &out));
    plan_cache_free(c);
    assert_null(plan_cache_new(0));
    assert_false(plan_cache_get(NULL, "a", 1, 0, 10, &out));
    plan_cache_put(NULL, "a", 1, 0, &p); /* no crash */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_within_ttl_only),
        cmocka_unit_test(test_forget_clear_and_overwrite),
        cmocka_unit_test(test_long_ids_and_null_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
