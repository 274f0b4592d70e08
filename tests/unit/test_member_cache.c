/*
 * test_member_cache.c - unit tests for src/core/member_cache.c: an entry is
 * served only for its member, channel and config, within its age; the
 * text and sent ids come back byte for byte; an invalidation drops every
 * channel of the member and refuses fills of reads sent before it, but not
 * after; a clear refuses every earlier fill; two members of one set both
 * stay; long ids and oversized sent lists are never cached.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/core/member_cache.h"

static member_cache_key_t key(const char *member, uint64_t channel_key)
{
    return (member_cache_key_t){.member = member, .member_len = strlen(member),
                                .channel_key = channel_key, .generation = 1, .max_recent = 100};
}

static member_snapshot_t snap(int tz, uint32_t sent)
{
    member_snapshot_t s;
    memset(&s, 0, sizeof s);
    s.tz = tz;
    s.open_rate = 0.25;
    s.view.week = 2900;
    s.view.sent_this_week = sent;
    s.view.n_sends = 1;
    s.view.sends[0] = 1234;
    s.view.n_recent = 3; /* not kept: the text holds the list */
    s.scores = "0.5,0.25";
    s.scores_len = 8;
    s.n_sent = 2;
    s.sent_ids[0] = "msg-b";
    s.sent_lens[0] = 5;
    s.sent_ts[0] = 200;
    s.sent_ids[1] = "a";
    s.sent_lens[1] = 1;
    s.sent_ts[1] = 100;
    return s;
}

static void test_round_trip_and_keys(void **state)
{
    (void)state;
    member_cache_t *c = member_cache_new(64);
    member_cache_key_t k = key("ann", 7);
    member_snapshot_t s = snap(-300, 2), out;
    assert_true(member_cache_put(c, &k, member_cache_clock(c), 1000, &s));
    assert_int_equal(member_cache_size(c), 1);
    assert_true(member_cache_get(c, &k, 1500, 1000, &out));
    assert_int_equal(out.tz, -300);
    assert_int_equal(out.view.sent_this_week, 2);
    assert_int_equal(out.view.week, 2900);
    assert_int_equal(out.view.n_sends, 1);
    assert_int_equal(out.view.sends[0], 1234);
    assert_int_equal(out.view.n_recent, 0);
    assert_int_equal(out.scores_len, 8);
    assert_memory_equal(out.scores, "0.5,0.25", 8);
    assert_int_equal(out.n_sent, 2);
    assert_int_equal(out.sent_lens[0], 5);
    assert_memory_equal(out.sent_ids[0], "msg-b", 5);
    assert_memory_equal(out.sent_ids[1], "a", 1);
    assert_true(out.sent_ts[0] == 200 && out.sent_ts[1] == 100);
    /* Too old, clock gone back, another channel, member, config or list. */
    assert_false(member_cache_get(c, &k, 2000, 1000, &out));
    assert_false(member_cache_get(c, &k, 999, 1000, &out));
    member_cache_key_t other = key("ann", 8);
    assert_false(member_cache_get(c, &other, 1500, 1000, &out));
    other = key("bob", 7);
    assert_false(member_cache_get(c, &other, 1500, 1000, &out));
    other = k;
    other.generation = 2;
    assert_false(member_cache_get(c, &other, 1500, 1000, &out));
    other = k;
    other.max_recent = 50;
    assert_false(member_cache_get(c, &other, 1500, 1000, &out));
    /* A put replaces the entry, text and all. */
    s.scores = "0.9";
    s.scores_len = 3;
    s.n_sent = 0;
    assert_true(member_cache_put(c, &k, member_cache_clock(c), 1100, &s));
    assert_int_equal(member_cache_size(c), 1);
    assert_true(member_cache_get(c, &k, 1500, 1000, &out));
    assert_int_equal(out.scores_len, 3);
    assert_memory_equal(out.scores, "0.9", 3);
    assert_int_equal(out.n_sent, 0);
    /* No scores at all is not an empty list. */
    s.scores = NULL;
    assert_true(member_cache_put(c, &k, member_cache_clock(c), 1100, &s));
    assert_true(member_cache_get(c, &k, 1500, 1000, &out));
    assert_null(out.scores);
    member_cache_free(c);
}

static void test_invalidation_drops_every_channel_and_refuses_older_fills(void **state)
{
    (void)state;
    member_cache_t *c = member_cache_new(64);
    member_cache_key_t push = key("ann", 7), email = key("ann", 8);
    member_snapshot_t s = snap(0, 1), out;
    uint64_t sent_before = member_cache_clock(c); /* a read goes out */
    assert_true(member_cache_put(c, &push, sent_before, 1000, &s));
    assert_true(member_cache_put(c, &email, sent_before, 1000, &s));
    assert_true(member_cache_fresh(c, "ann", 3, sent_before));
    member_cache_invalidate(c, "ann", 3); /* another writer */
    assert_false(member_cache_get(c, &push, 1000, 1000, &out));
    assert_false(member_cache_get(c, &email, 1000, 1000, &out));
    assert_int_equal(member_cache_size(c), 0);
    /* The read sent before the invalidation answers after it: refused. */
    assert_false(member_cache_put(c, &push, sent_before, 1000, &s));
    assert_false(member_cache_fresh(c, "ann", 3, sent_before));
    /* A read sent after it may fill. */
    uint64_t sent_after = member_cache_clock(c);
    assert_true(member_cache_fresh(c, "ann", 3, sent_after));
    assert_true(member_cache_put(c, &push, sent_after, 1000, &s));
    assert_true(member_cache_get(c, &push, 1000, 1000, &out));
    /* A clear refuses every fill of an earlier read, of any member. */
    uint64_t t = member_cache_clock(c);
    member_cache_clear(c);
    assert_int_equal(member_cache_size(c), 0);
    member_cache_key_t bob = key("bob", 7);
    assert_false(member_cache_put(c, &bob, t, 1000, &s));
    assert_true(member_cache_put(c, &bob, member_cache_clock(c), 1000, &s));
    member_cache_free(c);
}

static void test_two_ways_and_limits(void **state)
{
    (void)state;
    /* One set of two ways: every member shares it. */
    member_cache_t *c = member_cache_new(1);
    member_snapshot_t s = snap(0, 1), out;
    member_cache_key_t a = key("a", 7), b = key("b", 7), d = key("d", 7);
    assert_true(member_cache_put(c, &a, 0, 1000, &s));
    assert_true(member_cache_put(c, &b, 0, 1000, &s));
    assert_true(member_cache_get(c, &a, 1000, 1000, &out));
    assert_true(member_cache_get(c, &b, 1000, 1000, &out));
    assert_true(member_cache_put(c, &d, 0, 1000, &s)); /* a newcomer takes a way */
    assert_int_equal(member_cache_size(c), 2);
    assert_true(member_cache_get(c, &d, 1000, 1000, &out));
    assert_false(member_cache_get(c, &a, 1000, 1000, &out) &&
                 member_cache_get(c, &b, 1000, 1000, &out));
    /* Invalidating one member leaves the other of its set. */
    member_cache_invalidate(c, "d", 1);
    assert_false(member_cache_get(c, &d, 1000, 1000, &out));
    assert_int_equal(member_cache_size(c), 1);
    member_cache_free(c);

    c = member_cache_new(8);
    char longid[MEMBER_CACHE_MEMBER_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    member_cache_key_t lk = key(longid, 7);
    assert_false(member_cache_put(c, &lk, 0, 1000, &s));
    s.n_sent = MEMBER_CACHE_SENT_MAX + 1;
    member_cache_key_t ok = key("ok", 7);
    assert_false(member_cache_put(c, &ok, 0, 1000, &s));
    assert_int_equal(member_cache_size(c), 0);
    member_cache_free(c);
    assert_null(member_cache_new(0));
    /* No cache: nothing is ever served, and nothing was invalidated. */
    assert_false(member_cache_get(NULL, &ok, 1000, 1000, &out));
    assert_true(member_cache_fresh(NULL, "ok", 2, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_keys),
        cmocka_unit_test(test_invalidation_drops_every_channel_and_refuses_older_fills),
        cmocka_unit_test(test_two_ways_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
