/*
 * test_member_overlay.c - unit tests for src/core/member_overlay.c: a
 * decision sees exactly the effects recorded after its read, applied as a
 * serial run would have left the member's state; entries are dropped once
 * nothing in flight needs them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "notifd/core/member_overlay.h"

static member_view_t view(int channel, int64_t week)
{
    member_view_t v;
    memset(&v, 0, sizeof v);
    v.channel = channel;
    v.week = week;
    v.max_recent = 3;
    return v;
}

static void test_apply_counts_sends_scores_and_ewma(void **state)
{
    (void)state;
    member_view_t v = view(0, 100);
    v.recent[0] = 0.5;
    v.recent[1] = 0.4;
    v.recent[2] = 0.3;
    v.n_recent = 3;
    overlay_effect_t e = {.channel = 0, .week = 100, .counted_opp = true, .sent = true,
                          .have_score = true, .score = 0.9, .store_ewma = true, .ewma = 7.5,
                          .store_ewma_week = true, .ewma_week = 99};
    overlay_apply(&e, &v, NULL, 0, NULL);
    assert_true(v.history.counts[2] == 1.0);
    assert_int_equal(v.sent_this_week, 1);
    assert_int_equal(v.n_recent, 3); /* the oldest fell off: max_recent is 3 */
    assert_true(v.recent[0] == 0.9 && v.recent[1] == 0.5 && v.recent[2] == 0.4);
    assert_true(v.history.have_ewma && v.history.ewma == 7.5);
    assert_true(v.history.have_ewma_week && v.history.ewma_week == 99);

    /* Last week's effect counts in slot 1 and is not this week's send. */
    overlay_effect_t old = {.channel = 0, .week = 99, .counted_opp = true, .sent = true};
    overlay_apply(&old, &v, NULL, 0, NULL);
    assert_true(v.history.counts[1] == 1.0);
    assert_int_equal(v.sent_this_week, 1);

    /* Another channel's effect changes nothing of this channel. */
    overlay_effect_t other = {.channel = 1, .week = 100, .counted_opp = true, .sent = true,
                              .have_score = true, .score = 5};
    overlay_apply(&other, &v, NULL, 0, NULL);
    assert_true(v.history.counts[2] == 1.0);
    assert_int_equal(v.sent_this_week, 1);
    assert_true(v.recent[0] == 0.9);

    /* Nor does a record made when the channels were in another order (a
     * reload between two decisions in flight): same index, other name. */
    v.channel_key = 0x1111;
    overlay_effect_t reordered = {.channel = 0, .channel_key = 0x2222, .week = 100,
                                  .counted_opp = true, .sent = true};
    overlay_apply(&reordered, &v, NULL, 0, NULL);
    assert_int_equal(v.sent_this_week, 1);
    reordered.channel_key = 0x1111;
    overlay_apply(&reordered, &v, NULL, 0, NULL);
    assert_int_equal(v.sent_this_week, 2);
}

/* A send's time joins its channel's send times (for the rolling cap), newest
 * first; a full list drops its oldest; another channel's send does not join. */
static void test_sends_join_the_channel_send_times(void **state)
{
    (void)state;
    member_view_t v = view(0, 100);
    v.sends[0] = 1000;
    v.n_sends = 1;
    overlay_effect_t e = {.channel = 0, .week = 100, .ts = 2000, .sent = true};
    overlay_apply(&e, &v, NULL, 0, NULL);
    assert_int_equal(v.n_sends, 2);
    assert_true(v.sends[0] == 2000 && v.sends[1] == 1000);

    overlay_effect_t skip = {.channel = 0, .week = 100, .ts = 2500, .counted_opp = true};
    overlay_apply(&skip, &v, NULL, 0, NULL);
    overlay_effect_t other = {.channel = 1, .week = 100, .ts = 3000, .sent = true};
    overlay_apply(&other, &v, NULL, 0, NULL);
    assert_int_equal(v.n_sends, 2);

    for (int i = 0; i < DECISION_MAX_RECENT_SENDS; i++)
        overlay_push_send(&v, 10000 + i);
    assert_int_equal(v.n_sends, DECISION_MAX_RECENT_SENDS);
    assert_true(v.sends[0] == 10000 + DECISION_MAX_RECENT_SENDS - 1);
    assert_true(v.sends[DECISION_MAX_RECENT_SENDS - 1] == 10000);
}

static void test_first_week_is_set_once(void **state)
{
    (void)state;
    member_view_t v = view(0, 10);
    overlay_effect_t a = {.channel = 0, .week = 10, .set_first_week = true, .first_week = 10,
                          .first_fraction = 0.25};
    overlay_effect_t b = {.channel = 0, .week = 10, .set_first_week = true, .first_week = 11,
                          .first_fraction = 0.9};
    overlay_apply(&a, &v, NULL, 0, NULL);
    overlay_apply(&b, &v, NULL, 0, NULL);
    assert_true(v.history.have_first_week);
    assert_int_equal(v.history.first_week, 10);
    assert_true(v.history.first_fraction == 0.25);
}

static void test_sent_message_is_seen_by_dedup_on_any_channel(void **state)
{
    (void)state;
    member_view_t v = view(1, 10);
    ranker_candidate_t c[2] = {{.id = "m1", .id_len = 2}, {.id = "m2", .id_len = 2}};
    double last_sent[2] = {NAN, 50};
    overlay_effect_t e = {.channel = 0, .week = 10, .sent = true, .ts = 1000, .msg = "m1",
                          .msg_len = 2};
    overlay_apply(&e, &v, c, 2, last_sent);
    assert_true(last_sent[0] == 1000);
    assert_true(last_sent[1] == 50);
    /* A skip (sent false) marks nothing. */
    overlay_effect_t skip = {.channel = 0, .week = 10, .ts = 2000, .msg = "m2", .msg_len = 2};
    overlay_apply(&skip, &v, c, 2, last_sent);
    assert_true(last_sent[1] == 50);
}

/* Three decisions of one member in flight: reads at 10, 20, 30; records
 * at 25 (the first) and 35 (the second). Each sees exactly the records its
 * read could not. */
static void test_each_read_sees_only_later_records(void **state)
{
    (void)state;
    overlay_table_t *t = overlay_table_new();
    assert_non_null(t);
    overlay_member_t *m1 = overlay_join(t, "ann", 3, 10);
    overlay_member_t *m2 = overlay_join(t, "ann", 3, 20);
    overlay_member_t *m3 = overlay_join(t, "ann", 3, 30);
    assert_ptr_equal(m1, m2);
    assert_ptr_equal(m2, m3);
    assert_int_equal(overlay_table_members(t), 1);

    /* First decision: nothing recorded after its read. */
    member_view_t v1 = view(0, 5);
    overlay_apply_since(m1, 10, &v1, NULL, 0, NULL);
    assert_int_equal(v1.sent_this_week, 0);
    overlay_effect_t e1 = {.seq = 25, .channel = 0, .week = 5, .counted_opp = true, .sent = true,
                           .msg = "x", .msg_len = 1};
    assert_true(overlay_add(m1, &e1));
    overlay_leave(t, m1, 10);

    /* Second: its read (20) came before record 25: it must see it. */
    member_view_t v2 = view(0, 5);
    overlay_apply_since(m2, 20, &v2, NULL, 0, NULL);
    assert_int_equal(v2.sent_this_week, 1);
    assert_true(v2.history.counts[2] == 1.0);
    overlay_effect_t e2 = {.seq = 35, .channel = 0, .week = 5, .counted_opp = true};
    assert_true(overlay_add(m2, &e2));
    overlay_leave(t, m2, 20);
    /* Read 20 is done. Read 30 came after record 25 (Redis showed it to
     * that read), so only record 35 is kept. */
    assert_int_equal(overlay_member_effects(m3), 1);

    /* Third: its read (30) saw record 25 in Redis; only 35 is added. */
    member_view_t v3 = view(0, 5);
    overlay_apply_since(m3, 30, &v3, NULL, 0, NULL);
    assert_int_equal(v3.sent_this_week, 0);
    assert_true(v3.history.counts[2] == 1.0);
    overlay_leave(t, m3, 30);
    assert_int_equal(overlay_table_members(t), 0);

    /* Nothing in flight: a new decision starts a fresh entry. */
    overlay_member_t *m4 = overlay_join(t, "ann", 3, 40);
    assert_int_equal(overlay_member_effects(m4), 0);
    overlay_leave(t, m4, 40);
    overlay_table_free(t);
}

static void test_members_are_kept_apart(void **state)
{
    (void)state;
    overlay_table_t *t = overlay_table_new();
    overlay_member_t *a = overlay_join(t, "a", 1, 1);
    overlay_member_t *b = overlay_join(t, "b", 1, 2);
    assert_ptr_not_equal(a, b);
    overlay_effect_t e = {.seq = 3, .channel = 0, .week = 1, .sent = true};
    overlay_add(a, &e);
    member_view_t vb = view(0, 1);
    overlay_apply_since(b, 2, &vb, NULL, 0, NULL);
    assert_int_equal(vb.sent_this_week, 0);
    assert_int_equal(overlay_table_members(t), 2);
    /* Freeing with entries still in flight releases everything (LSan). */
    overlay_table_free(t);
}

/* A decision that leaves out of order (it failed before deciding) must not
 * take another's read position with it. */
static void test_leave_out_of_order_keeps_needed_effects(void **state)
{
    (void)state;
    overlay_table_t *t = overlay_table_new();
    overlay_member_t *m = overlay_join(t, "m", 1, 10);
    overlay_join(t, "m", 1, 20);
    overlay_effect_t e = {.seq = 15, .channel = 0, .week = 1, .sent = true};
    overlay_add(m, &e);
    overlay_leave(t, m, 20); /* the later one fails first */
    assert_int_equal(overlay_member_effects(m), 1); /* read 10 is still in flight */
    overlay_leave(t, m, 10);
    assert_int_equal(overlay_table_members(t), 0);
    overlay_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_counts_sends_scores_and_ewma),
        cmocka_unit_test(test_sends_join_the_channel_send_times),
        cmocka_unit_test(test_first_week_is_set_once),
        cmocka_unit_test(test_sent_message_is_seen_by_dedup_on_any_channel),
        cmocka_unit_test(test_each_read_sees_only_later_records),
        cmocka_unit_test(test_members_are_kept_apart),
        cmocka_unit_test(test_leave_out_of_order_keeps_needed_effects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
