/*
 * test_deadline_list.c - deadlines fire in order, once, not early, and never
 * after removal; on a real libuv loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <uv.h>

#include "notifd/fast/deadline_list.h"

typedef struct fired {
    deadline_entry_t e;
    int id;
    uint64_t at_ns;
} item_t;

static int order[16];
static int n_fired;

static void on_due(deadline_entry_t *e)
{
    item_t *it = (item_t *)((char *)e - offsetof(item_t, e));
    it->at_ns = uv_hrtime();
    order[n_fired++] = it->id;
    assert_false(e->linked); /* unlinked before the callback */
}

static void run(uv_loop_t *loop, deadline_list_t *l)
{
    deadline_list_close(l);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void test_fire_in_due_order_not_early_and_not_after_removal(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    deadline_list_t *l = deadline_list_new(&loop);
    n_fired = 0;
    uint64_t t0 = uv_hrtime();
    item_t a = {.id = 1}, b = {.id = 2}, c = {.id = 3}, d = {.id = 4};
    /* Added out of order: c is due first, then a, then d; b is removed. */
    deadline_list_add(l, &a.e, t0 + 30000000u, on_due);
    deadline_list_add(l, &b.e, t0 + 20000000u, on_due);
    deadline_list_add(l, &c.e, t0 + 10000000u, on_due);
    deadline_list_add(l, &d.e, t0 + 40000000u, on_due);
    deadline_list_remove(l, &b.e);
    deadline_list_remove(l, &b.e); /* twice: a no-op */
    /* Run until all three fired (the list keeps no handle alive when empty). */
    while (n_fired < 3)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(n_fired, 3);
    assert_int_equal(order[0], 3);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[2], 4);
    assert_true(c.at_ns >= c.e.due_ns);
    assert_true(a.at_ns >= a.e.due_ns);
    assert_true(d.at_ns >= d.e.due_ns);
    run(&loop, l);
    assert_int_equal(n_fired, 3);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_removing_the_head_rearms_for_the_next(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    deadline_list_t *l = deadline_list_new(&loop);
    n_fired = 0;
    uint64_t t0 = uv_hrtime();
    item_t a = {.id = 1}, b = {.id = 2};
    deadline_list_add(l, &a.e, t0 + 5000000u, on_due);
    deadline_list_add(l, &b.e, t0 + 15000000u, on_due);
    deadline_list_remove(l, &a.e);
    while (n_fired < 1)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(order[0], 2);
    assert_true(b.at_ns >= b.e.due_ns);
    /* Closing with an entry still linked drops it without its callback. */
    item_t z = {.id = 9};
    deadline_list_add(l, &z.e, uv_hrtime() + 1000000000u, on_due);
    run(&loop, l);
    assert_int_equal(n_fired, 1);
    assert_false(z.e.linked);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_an_entry_already_due_fires_on_the_next_turn(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    deadline_list_t *l = deadline_list_new(&loop);
    n_fired = 0;
    item_t a = {.id = 7};
    deadline_list_add(l, &a.e, uv_hrtime() - 1000000u, on_due);
    assert_int_equal(n_fired, 0); /* never from inside add */
    while (n_fired < 1)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(order[0], 7);
    run(&loop, l);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fire_in_due_order_not_early_and_not_after_removal),
        cmocka_unit_test(test_removing_the_head_rearms_for_the_next),
        cmocka_unit_test(test_an_entry_already_due_fires_on_the_next_turn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
