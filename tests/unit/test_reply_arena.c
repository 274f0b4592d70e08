/*
 * test_reply_arena.c - unit tests for src/store/reply_arena.c: replies read by a
 * real hiredis reader into the arena keep their contents until the arena
 * starts over (at the next top-level reply in PER_REPLY mode, at a reset in
 * MANUAL mode), nested replies are whole, and a reply larger than a block
 * gets its own block, which a reset frees again past keep_bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "notifd/store/reply_arena.h"

static redisReply *next_reply(redisReader *r)
{
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_non_null(reply);
    return reply;
}

static int blocks(const reply_arena_t *a)
{
    int n = 0;
    for (const reply_arena_block_t *b = a->first; b != NULL; b = b->next)
        n++;
    return n;
}

static void test_nested_reply_is_built_whole(void **state)
{
    (void)state;
    reply_arena_t a;
    reply_arena_init(&a, REPLY_ARENA_PER_REPLY, 4096, 0);
    redisReader *r = redisReaderCreate();
    reply_arena_attach(r, &a);
    const char in[] = "*4\r\n$5\r\nhello\r\n:42\r\n$-1\r\n*2\r\n+OK\r\n-ERR no\r\n";
    redisReaderFeed(r, in, sizeof in - 1);
    redisReply *x = next_reply(r);
    assert_int_equal(x->type, REDIS_REPLY_ARRAY);
    assert_int_equal(x->elements, 4);
    assert_string_equal(x->element[0]->str, "hello");
    assert_int_equal(x->element[0]->len, 5);
    assert_int_equal(x->element[1]->integer, 42);
    assert_int_equal(x->element[2]->type, REDIS_REPLY_NIL);
    assert_int_equal(x->element[3]->elements, 2);
    assert_int_equal(x->element[3]->element[0]->type, REDIS_REPLY_STATUS);
    assert_string_equal(x->element[3]->element[0]->str, "OK");
    assert_int_equal(x->element[3]->element[1]->type, REDIS_REPLY_ERROR);
    assert_string_equal(x->element[3]->element[1]->str, "ERR no");
    assert_true(a.first != NULL && a.first->used > 0);
    redisReaderFree(r); /* freeObject is a no-op: the arena still owns it all */
    reply_arena_free(&a);
    assert_null(a.first);
}

static void test_per_reply_mode_starts_over_with_each_reply(void **state)
{
    (void)state;
    reply_arena_t a;
    reply_arena_init(&a, REPLY_ARENA_PER_REPLY, 4096, 0);
    redisReader *r = redisReaderCreate();
    reply_arena_attach(r, &a);
    const char in[] = "$3\r\none\r\n$3\r\ntwo\r\n";
    redisReaderFeed(r, in, sizeof in - 1);
    redisReply *one = next_reply(r);
    assert_string_equal(one->str, "one");
    size_t used = a.first->used;
    redisReply *two = next_reply(r);
    /* The second reply reused the first one's memory. */
    assert_ptr_equal(two, one);
    assert_string_equal(two->str, "two");
    assert_int_equal(a.first->used, used);
    redisReaderFree(r);
    reply_arena_free(&a);
}

static void test_a_partial_reply_survives_until_complete(void **state)
{
    (void)state;
    reply_arena_t a;
    reply_arena_init(&a, REPLY_ARENA_PER_REPLY, 4096, 0);
    redisReader *r = redisReaderCreate();
    reply_arena_attach(r, &a);
    const char part1[] = "*2\r\n$1\r\na\r\n";
    const char part2[] = "$1\r\nb\r\n";
    redisReaderFeed(r, part1, sizeof part1 - 1);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_null(reply); /* not complete yet */
    redisReaderFeed(r, part2, sizeof part2 - 1);
    redisReply *x = next_reply(r);
    assert_int_equal(x->elements, 2);
    assert_string_equal(x->element[0]->str, "a");
    assert_string_equal(x->element[1]->str, "b");
    redisReaderFree(r);
    reply_arena_free(&a);
}

static void test_manual_mode_keeps_replies_until_reset(void **state)
{
    (void)state;
    reply_arena_t a;
    reply_arena_init(&a, REPLY_ARENA_MANUAL, 4096, 0);
    redisReader *r = redisReaderCreate();
    reply_arena_attach(r, &a);
    const char in[] = "$3\r\none\r\n$3\r\ntwo\r\n";
    redisReaderFeed(r, in, sizeof in - 1);
    redisReply *one = next_reply(r);
    redisReply *two = next_reply(r);
    assert_ptr_not_equal(one, two);
    assert_string_equal(one->str, "one");
    assert_string_equal(two->str, "two");
    reply_arena_reset(&a);
    assert_int_equal(a.first->used, 0);
    redisReaderFree(r);
    reply_arena_free(&a);
}

static void test_a_huge_reply_gets_its_own_block_freed_past_keep(void **state)
{
    (void)state;
    reply_arena_t a;
    reply_arena_init(&a, REPLY_ARENA_PER_REPLY, 1024, 2048);
    redisReader *r = redisReaderCreate();
    reply_arena_attach(r, &a);
    enum { BIG = 10000 };
    static char in[BIG + 64];
    int at = snprintf(in, sizeof in, "$%d\r\n", BIG);
    memset(in + at, 'x', BIG);
    at += BIG;
    memcpy(in + at, "\r\n$2\r\nok\r\n", 10);
    redisReaderFeed(r, in, (size_t)at + 10);
    redisReply *big = next_reply(r);
    assert_int_equal(big->len, BIG);
    assert_int_equal(big->str[BIG - 1], 'x');
    assert_int_equal(big->str[BIG], '\0');
    assert_true(blocks(&a) >= 2);
    /* The next reply starts over: past keep_bytes, only the first block stays. */
    redisReply *ok = next_reply(r);
    assert_string_equal(ok->str, "ok");
    assert_int_equal(blocks(&a), 1);
    redisReaderFree(r);
    reply_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nested_reply_is_built_whole),
        cmocka_unit_test(test_per_reply_mode_starts_over_with_each_reply),
        cmocka_unit_test(test_a_partial_reply_survives_until_complete),
        cmocka_unit_test(test_manual_mode_keeps_replies_until_reset),
        cmocka_unit_test(test_a_huge_reply_gets_its_own_block_freed_past_keep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
