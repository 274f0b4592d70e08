/*
 * test_stored_fields.c - the stored fields' parsers and ranges, and the
 * decide's read of the member, week and sent state built on them: what is
 * out of range is missing and counted, never cast into something else.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "notifd/core/calendar.h"
#include "notifd/core/plan.h"
#include "notifd/core/stored_fields.h"
#include "notifd/core/stored_read.h"

#define S(lit) lit, sizeof(lit) - 1

static void test_every_field_has_a_name_and_a_finite_range(void **state)
{
    (void)state;
    for (int f = 0; f < STORED_FIELD_COUNT; f++) {
        const stored_field_spec_t *s = stored_field_spec((stored_field_t)f);
        assert_non_null(s);
        assert_string_equal(stored_field_name((stored_field_t)f), s->name);
        assert_true(isfinite(s->min) && isfinite(s->max) && s->min < s->max);
        /* Every value fits an int64_t exactly. */
        assert_true(fabs(s->min) <= 9007199254740992.0 && fabs(s->max) <= 9007199254740992.0);
        for (int g = 0; g < f; g++)
            assert_string_not_equal(stored_field_name((stored_field_t)g), s->name);
    }
    assert_null(stored_field_spec(STORED_FIELD_COUNT));
    assert_string_equal(stored_field_name((stored_field_t)-1), "invalid");
}

static void test_week_and_time_ranges_cover_every_request_ts(void **state)
{
    (void)state;
    const stored_field_spec_t *w = stored_field_spec(STORED_WEEK);
    assert_true(w->min <= (double)calendar_week_index(0, STORED_TZ_MIN));
    assert_true(w->max >= (double)calendar_week_index(99999999999, STORED_TZ_MAX));
    assert_true(stored_field_spec(STORED_TIME)->max == STORED_TIME_MAX);
}

static void test_int_rejects_what_a_cast_would_mangle(void **state)
{
    (void)state;
    stored_invalid_t inv = {{0}};
    int64_t n = 42;
    const char *bad[] = {"-9223372036854775808", "9223372036854775807", "1e308", "-1e308",
                         "1e300", "nan", "inf", "0x20", " 3", "3 ", "", "1.5", "--1", "1e",
                         "+", ".", "165346", "-2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(stored_parse_int(STORED_WEEK, bad[i], strlen(bad[i]), &n, &inv));
    assert_int_equal(n, 42); /* untouched */
    assert_int_equal(inv.n[STORED_WEEK], sizeof bad / sizeof bad[0]);
    assert_true(stored_parse_int(STORED_WEEK, S("2916"), &n, &inv));
    assert_int_equal(n, 2916);
    assert_true(stored_parse_int(STORED_WEEK, S("-1"), &n, &inv));
    assert_int_equal(n, -1);
    assert_true(stored_parse_int(STORED_WEEK, S("3e3"), &n, NULL)); /* exponent: fine here */
    assert_int_equal(n, 3000);
    assert_false(stored_parse_int(STORED_WEEK, NULL, 0, &n, NULL));
}

static void test_counts_are_non_negative_and_bounded(void **state)
{
    (void)state;
    stored_invalid_t inv = {{0}};
    int64_t n;
    double x;
    assert_false(stored_parse_int(STORED_WEEK_SENT, S("-5"), &n, &inv));
    assert_false(stored_parse_int(STORED_WEEK_SENT, S("4294967296000"), &n, &inv));
    assert_false(stored_parse_int(STORED_WEEK_SENT, S("2.5"), &n, &inv));
    assert_int_equal(inv.n[STORED_WEEK_SENT], 3);
    assert_true(stored_parse_int(STORED_WEEK_SENT, S("7"), &n, &inv));
    assert_int_equal(n, 7);
    /* Week opportunity counters are HINCRBY's: integers. */
    assert_false(stored_parse_real(STORED_WEEK_OPP, S("2.5"), &x, &inv));
    assert_true(stored_parse_real(STORED_WEEK_OPP, S("12"), &x, &inv));
    assert_false(stored_parse_real(STORED_COUNT, S("-0.5"), &x, &inv));
    assert_false(stored_parse_real(STORED_COUNT, S("1e308"), &x, &inv));
    assert_true(stored_parse_real(STORED_COUNT, S("3.25"), &x, &inv));
    assert_true(x == 3.25);
    assert_true(stored_parse_real(STORED_COUNT, S("-0"), &x, &inv));
    assert_false(signbit(x));
}

static void test_flag_is_exactly_0_or_1(void **state)
{
    (void)state;
    stored_invalid_t inv = {{0}};
    bool b = true;
    assert_false(stored_parse_flag(STORED_UNSUB, S("0.5"), &b, &inv));
    assert_false(stored_parse_flag(STORED_UNSUB, S("2"), &b, &inv));
    assert_false(stored_parse_flag(STORED_UNSUB, S("-1"), &b, &inv));
    assert_true(b);
    assert_int_equal(inv.n[STORED_UNSUB], 3);
    assert_true(stored_parse_flag(STORED_UNSUB, S("0"), &b, &inv));
    assert_false(b);
    assert_true(stored_parse_flag(STORED_UNSUB, S("1"), &b, &inv));
    assert_true(b);
    /* Not a flag field: refused and counted. */
    assert_false(stored_parse_flag(STORED_COUNT, S("1"), &b, &inv));
    assert_int_equal(inv.n[STORED_COUNT], 1);
}

static void test_tz_is_minus_720_to_840(void **state)
{
    (void)state;
    int64_t n;
    assert_false(stored_parse_int(STORED_TZ_OFFSET, S("-840"), &n, NULL));
    assert_false(stored_parse_int(STORED_TZ_OFFSET, S("841"), &n, NULL));
    assert_false(stored_parse_int(STORED_TZ_OFFSET, S("60.5"), &n, NULL));
    assert_true(stored_parse_int(STORED_TZ_OFFSET, S("-720"), &n, NULL));
    assert_int_equal(n, -720);
    assert_true(stored_parse_int(STORED_TZ_OFFSET, S("840"), &n, NULL));
    assert_int_equal(n, 840);
}

static void test_per_week_is_a_plain_decimal_up_to_the_configured_max(void **state)
{
    (void)state;
    stored_invalid_t inv = {{0}};
    double x;
    const char *bad[] = {"1e308", "0x20", " 3", "3 ", "1e1", "101", "-1", "nan", "", "3,5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(stored_parse_per_week(bad[i], strlen(bad[i]), 100, &x, &inv));
    assert_int_equal(inv.n[STORED_PLAN_PER_WEEK], sizeof bad / sizeof bad[0]);
    assert_true(stored_parse_per_week(S("100"), 100, &x, &inv));
    assert_true(x == 100);
    assert_true(stored_parse_per_week(S("3.5"), 100, &x, &inv));
    assert_true(x == 3.5);
    /* The configured max never goes above the field's own limit. */
    assert_false(stored_parse_per_week(S("1001"), INFINITY, &x, NULL));
    assert_false(stored_parse_per_week(S("1001"), NAN, &x, NULL));
}

static void test_version_and_plan_times(void **state)
{
    (void)state;
    int64_t n;
    assert_false(stored_parse_int(STORED_PLAN_VERSION, S("1e300"), &n, NULL));
    assert_false(stored_parse_int(STORED_PLAN_VERSION, S("9007199254740992"), &n, NULL));
    assert_false(stored_parse_int(STORED_PLAN_VERSION, S("-1"), &n, NULL));
    assert_true(stored_parse_int(STORED_PLAN_VERSION, S("9007199254740991"), &n, NULL));
    assert_true(n == 9007199254740991LL);
    assert_false(stored_parse_int(STORED_PLAN_TIME, S("1e300"), &n, NULL));
    assert_false(stored_parse_int(STORED_PLAN_TIME, S("-5"), &n, NULL));
    assert_true(stored_parse_int(STORED_PLAN_TIME, S("1795392000.7"), &n, NULL));
    assert_true(n == 1795392000);
}

static void test_balance_is_within_its_limit(void **state)
{
    (void)state;
    double x;
    assert_true(stored_parse_real(STORED_BALANCE, S("-2"), &x, NULL) && x == -2.0);
    assert_true(stored_parse_real(STORED_BALANCE, S("0.5"), &x, NULL) && x == 0.5);
    assert_false(stored_parse_real(STORED_BALANCE, S("2.5"), &x, NULL));
    assert_false(stored_parse_real(STORED_BALANCE, S("-1e308"), &x, NULL));
    assert_false(stored_parse_real(STORED_BALANCE, S("nan"), &x, NULL));
}

/* ---- plan_parse_hash ---------------------------------------------------- */

static bool parse_plan(plan_t *p, const char *const *kv, size_t n_pairs, stored_invalid_t *inv)
{
    static const char *const names[] = {"push", "email", "in_app"};
    const char *f[16], *v[16];
    size_t fl[16], vl[16];
    for (size_t i = 0; i < n_pairs; i++) {
        f[i] = kv[2 * i];
        fl[i] = strlen(f[i]);
        v[i] = kv[2 * i + 1];
        vl[i] = strlen(v[i]);
    }
    return plan_parse_hash(p, names, 3, 100, f, fl, v, vl, n_pairs, inv);
}

static void test_plan_with_an_unusable_per_week_or_valid_until_is_no_plan(void **state)
{
    (void)state;
    stored_invalid_t inv = {{0}};
    plan_t p;
    const char *ok[] = {"version", "3", "action", "-1", "valid_until", "1800000000",
                        "push_per_week", "2", "email_per_week", "1"};
    assert_true(parse_plan(&p, ok, 5, &inv));
    assert_int_equal(stored_invalid_total(&inv), 0);
    assert_int_equal(p.action, -1);
    const char *hex[] = {"push_per_week", "0x20", "email_per_week", "1"};
    assert_false(parse_plan(&p, hex, 2, &inv)); /* not: push unplanned, so unpaced */
    assert_int_equal(inv.n[STORED_PLAN_PER_WEEK], 1);
    const char *eternal[] = {"valid_until", "1e300", "push_per_week", "2"};
    assert_false(parse_plan(&p, eternal, 2, &inv));
    assert_int_equal(inv.n[STORED_PLAN_TIME], 1);
    const char *ver[] = {"version", "1e300", "action", "5000", "push_per_week", "2"};
    assert_true(parse_plan(&p, ver, 3, &inv)); /* missing version and action: still a plan */
    assert_int_equal(p.version, 0);
    assert_int_equal(p.action, -1);
    assert_int_equal(inv.n[STORED_PLAN_VERSION], 1);
    assert_int_equal(inv.n[STORED_PLAN_ACTION], 1);
}

/* ---- stored_read -------------------------------------------------------- */

static void test_member_read_treats_out_of_range_as_missing(void **state)
{
    (void)state;
    stored_invalid_t inv = {{0}};
    stored_member_t m;
    const char *v[STORED_MEMBER_FIELDS] = {"-840", "0.5", "1e308", "1", "-5", "nan"};
    size_t l[STORED_MEMBER_FIELDS];
    for (int i = 0; i < STORED_MEMBER_FIELDS; i++)
        l[i] = strlen(v[i]);
    stored_read_member(v, l, &m, &inv);
    assert_int_equal(m.tz_offset_min, 0);
    assert_false(m.unsubscribed);
    assert_true(m.open_rate == -1.0); /* no usable sends */
    assert_int_equal(inv.n[STORED_TZ_OFFSET], 1);
    assert_int_equal(inv.n[STORED_UNSUB], 1);
    assert_int_equal(inv.n[STORED_COUNT], 3);

    const char *good[STORED_MEMBER_FIELDS] = {"60", "1", "30", "1", "10", NULL};
    for (int i = 0; i < STORED_MEMBER_FIELDS; i++)
        l[i] = good[i] ? strlen(good[i]) : 0;
    memset(&inv, 0, sizeof inv);
    stored_read_member(good, l, &m, &inv);
    assert_int_equal(m.tz_offset_min, 60);
    assert_true(m.unsubscribed);
    assert_true(m.open_rate == 1.0); /* opens outran sends: still a rate */
    assert_int_equal(stored_invalid_total(&inv), 0);
}

static void week(stored_week_t *w, const char *f, const char *v, stored_invalid_t *inv)
{
    stored_read_week_field(w, "push", 4, f, strlen(f), v, v ? strlen(v) : 0, inv);
}

static void test_week_read_keeps_the_present_and_counts_the_hostile(void **state)
{
    (void)state;
    stored_invalid_t inv = {{0}};
    member_view_t view = {.week = 100, .max_recent = 8};
    stored_week_t w = {.view = &view};
    week(&w, "push:first_week", "-9223372036854775808", &inv);
    week(&w, "push:ewma", "1e308", &inv);
    week(&w, "push:ewma_week", "99", &inv);
    week(&w, "push:100:sent", "-5", &inv);
    week(&w, "push:100:opp", "4", &inv);
    week(&w, "push:99:opp", "6", &inv);
    week(&w, "push:99:sent", "1", &inv);   /* the weeks a period looks back on */
    week(&w, "push:98:sent", "2", &inv);
    week(&w, "push:97:sent", "3", &inv);   /* folded: deleted, not read */
    week(&w, "push:bal", "-0.75", &inv);
    week(&w, "push:103:opp", "50", &inv);  /* the future: ignored, not deleted */
    week(&w, "push:103:sent", "40", &inv);
    week(&w, "push:90:opp", "1", &inv);    /* folded long ago: deleted */
    week(&w, "push:1e308:opp", "1", &inv); /* no week */
    week(&w, "push:scores", "0.5,1e308,x,0.25", &inv);
    week(&w, "push:sends", "1795400000,-1,1e300,1795300000", &inv);
    week(&w, "email:100:sent", "-5", &inv); /* another channel's */
    week(&w, "push:frobs", "1", &inv);      /* not ours */
    week(&w, "push:first_frac", NULL, &inv);
    assert_false(view.history.have_first_week);
    assert_false(view.history.have_ewma);
    assert_true(view.history.have_ewma_week);
    assert_int_equal(view.sent_this_week, 0);
    assert_true(view.history.counts[2] == 4 && view.history.counts[1] == 6);
    assert_int_equal(view.history.sent_before[0], 1);
    assert_int_equal(view.history.sent_before[1], 2);
    assert_true(view.history.have_balance && view.history.balance == -0.75);
    assert_int_equal(w.n_stale, 2);
    assert_string_equal(w.stale[0], "push:97:sent");
    assert_string_equal(w.stale[1], "push:90:opp");
    assert_int_equal(view.n_recent, 2);
    assert_true(view.recent[0] == 0.5 && view.recent[1] == 0.25);
    assert_int_equal(view.n_sends, 2);
    assert_true(view.sends[1] == 1795300000);
    assert_int_equal(inv.n[STORED_WEEK], 2);
    assert_int_equal(inv.n[STORED_EWMA], 1);
    assert_int_equal(inv.n[STORED_WEEK_SENT], 1);
    assert_int_equal(inv.n[STORED_SCORE], 2);
    assert_int_equal(inv.n[STORED_SEND_TIME], 2);
    assert_int_equal(inv.n[STORED_FIRST_FRAC], 1);
    assert_int_equal(stored_invalid_total(&inv), 9);
}

static void test_sent_time(void **state)
{
    (void)state;
    double x = -1;
    assert_false(stored_read_sent_time(S("1e300"), &x, NULL));
    assert_false(stored_read_sent_time(S("-1"), &x, NULL));
    assert_true(x == -1);
    assert_true(stored_read_sent_time(S("1795400000"), &x, NULL));
    assert_true(x == 1795400000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field_has_a_name_and_a_finite_range),
        cmocka_unit_test(test_week_and_time_ranges_cover_every_request_ts),
        cmocka_unit_test(test_int_rejects_what_a_cast_would_mangle),
        cmocka_unit_test(test_counts_are_non_negative_and_bounded),
        cmocka_unit_test(test_flag_is_exactly_0_or_1),
        cmocka_unit_test(test_tz_is_minus_720_to_840),
        cmocka_unit_test(test_per_week_is_a_plain_decimal_up_to_the_configured_max),
        cmocka_unit_test(test_version_and_plan_times),
        cmocka_unit_test(test_balance_is_within_its_limit),
        cmocka_unit_test(test_plan_with_an_unusable_per_week_or_valid_until_is_no_plan),
        cmocka_unit_test(test_member_read_treats_out_of_range_as_missing),
        cmocka_unit_test(test_week_read_keeps_the_present_and_counts_the_hostile),
        cmocka_unit_test(test_sent_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
