/*
 * test_features.c - unit tests for the member feature hash (src/core/
 * features.c): parsing HGETALL field/value pairs (lengths, not NULs; unknown
 * and bad fields), decay by half-life, and the decayed exposure that turns
 * decayed visit counts into a rate per day.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "notifd/core/features.h"

#define DAY 86400.0
#define HALF_LIFE (28.0 * DAY)
#define T0 1700000000

static const char *const channels[] = {"push", "email", "in_app"};

/* Parses NUL-terminated pairs {field, value, field, value, ...}. */
static int parse_pairs(member_features_t *f, const char *const *kv, size_t n_pairs)
{
    const char *fields[64], *values[64];
    size_t flens[64], vlens[64];
    for (size_t i = 0; i < n_pairs; i++) {
        fields[i] = kv[2 * i];
        values[i] = kv[2 * i + 1];
        flens[i] = strlen(fields[i]);
        vlens[i] = strlen(values[i]);
    }
    features_init(f);
    return features_parse_hash(f, channels, 3, fields, flens, values, vlens, n_pairs);
}

static void test_parses_channel_counts_and_flags(void **state)
{
    (void)state;
    const char *kv[] = {"push_sent", "12.5", "push_delivered", "12", "push_open", "3",
                        "push_click", "1", "push_dismiss", "2.25", "push_unsub_n", "0.5",
                        "push_unsub", "1", "push_last_sent", "1700000100",
                        "email_open", "4", "email_unsub", "0"};
    member_features_t f;
    assert_int_equal(parse_pairs(&f, kv, 10), 0);
    assert_int_equal(f.n_channels, 3);
    assert_float_equal(f.ch[0].sent, 12.5, 0);
    assert_float_equal(f.ch[0].delivered, 12, 0);
    assert_float_equal(f.ch[0].open, 3, 0);
    assert_float_equal(f.ch[0].click, 1, 0);
    assert_float_equal(f.ch[0].dismiss, 2.25, 0);
    assert_float_equal(f.ch[0].unsub_n, 0.5, 0);
    assert_true(f.ch[0].unsub);
    assert_int_equal(f.ch[0].last_sent, 1700000100);
    assert_int_equal(f.ch[0].has, FEATURES_HAS_UNSUB | FEATURES_HAS_LAST_SENT);
    assert_float_equal(f.ch[1].open, 4, 0);
    assert_false(f.ch[1].unsub);
    assert_int_equal(f.ch[1].has, FEATURES_HAS_UNSUB);
}

static void test_parses_member_wide_fields(void **state)
{
    (void)state;
    const char *kv[] = {"visit_org", "7.5", "visit_attr", "2", "last_visit", "1700000001",
                        "first_seen", "1600000000", "updated_at", "1700000002",
                        "tz_offset_min", "-300"};
    member_features_t f;
    assert_int_equal(parse_pairs(&f, kv, 6), 0);
    assert_float_equal(f.visit_org, 7.5, 0);
    assert_float_equal(f.visit_attr, 2, 0);
    assert_int_equal(f.last_visit, 1700000001);
    assert_int_equal(f.first_seen, 1600000000);
    assert_int_equal(f.updated_at, 1700000002);
    assert_int_equal(f.tz_offset_min, -300);
    assert_int_equal(f.has, FEATURES_HAS_LAST_VISIT | FEATURES_HAS_FIRST_SEEN |
                                FEATURES_HAS_UPDATED_AT | FEATURES_HAS_TZ);
}

static void test_missing_fields_are_zero_and_unflagged(void **state)
{
    (void)state;
    member_features_t f;
    assert_int_equal(parse_pairs(&f, NULL, 0), 0);
    assert_int_equal(f.n_channels, 3);
    assert_int_equal(f.has, 0);
    assert_int_equal(f.ch[2].has, 0);
    assert_float_equal(f.ch[2].sent, 0, 0);
    assert_false(f.ch[2].unsub);
}

static void test_ignores_unknown_fields(void **state)
{
    (void)state;
    const char *kv[] = {"sms_sent", "5", "push_bogus", "1", "push", "3", "push_", "1",
                        "xyz", "1", "push_sent", "2"};
    member_features_t f;
    assert_int_equal(parse_pairs(&f, kv, 6), 0);
    assert_int_equal(f.n_bad, 0);
    assert_float_equal(f.ch[0].sent, 2, 0);
    assert_float_equal(f.ch[1].sent, 0, 0);
}

static void test_values_need_not_be_nul_terminated(void **state)
{
    (void)state;
    /* hiredis hands out buffers with lengths; the bytes after them belong to
     * the next element. */
    const char field_buf[] = "push_sentXXXX";
    const char value_buf[] = "42.5999";
    const char *fields[] = {field_buf};
    const char *values[] = {value_buf};
    size_t flens[] = {9};
    size_t vlens[] = {4};
    member_features_t f;
    features_init(&f);
    assert_int_equal(features_parse_hash(&f, channels, 3, fields, flens, values, vlens, 1), 0);
    assert_float_equal(f.ch[0].sent, 42.5, 0);
}

static void test_bad_numbers_are_missing_and_counted(void **state)
{
    (void)state;
    const char *kv[] = {"push_sent", "abc", "push_open", "1.5x", "push_click", "",
                        "push_dismiss", "nan", "email_sent", "-1", "email_unsub", "2",
                        "tz_offset_min", "900", "first_seen", "inf",
                        "email_open", "3"};
    member_features_t f;
    assert_int_equal(parse_pairs(&f, kv, 9), 8);
    assert_int_equal(f.n_bad, 8);
    assert_float_equal(f.ch[0].sent, 0, 0);
    assert_float_equal(f.ch[0].open, 0, 0);
    assert_float_equal(f.ch[1].sent, 0, 0);
    assert_false(f.ch[1].unsub);
    assert_int_equal(f.ch[1].has, 0);
    assert_int_equal(f.has, 0);
    assert_float_equal(f.ch[1].open, 3, 0);
}

/* The planner and decide read the same fields with the same ranges
 * (stored_fields.h): what one takes as missing the other does too. */
static void test_ranges_are_the_stored_fields_and_counted_per_field(void **state)
{
    (void)state;
    const char *kv[] = {"tz_offset_min", "-840", "push_last_sent", "1e300", "updated_at", "-1",
                        "push_unsub", "0.5", "visit_org", "1e308", "email_open", "2"};
    member_features_t f;
    assert_int_equal(parse_pairs(&f, kv, 6), 5);
    assert_int_equal(f.invalid.n[STORED_TZ_OFFSET], 1);
    assert_int_equal(f.invalid.n[STORED_TIME], 2);
    assert_int_equal(f.invalid.n[STORED_UNSUB], 1);
    assert_int_equal(f.invalid.n[STORED_COUNT], 1);
    assert_int_equal(f.has, 0);
    assert_int_equal(f.ch[0].has, 0);
    assert_float_equal(f.visit_org, 0, 0);
    const char *ok[] = {"tz_offset_min", "-720", "push_last_sent", "99999999999"};
    assert_int_equal(parse_pairs(&f, ok, 2), 0);
    assert_int_equal(f.tz_offset_min, -720);
    assert_true(f.ch[0].last_sent == 99999999999);
}

static void test_numbers_parse_exactly_as_strtod(void **state)
{
    (void)state;
    /* Plain decimals take a fast path; it must agree with strtod bit for bit
     * on what the Lua writer produces (%.14g) and on longer forms. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double v = (double)(x >> 11) * 0x1.0p-53 * pow(10.0, (double)(i % 14) - 4);
        char buf[64];
        switch (i % 5) {
        case 0: snprintf(buf, sizeof(buf), "%.14g", v); break;
        case 1: snprintf(buf, sizeof(buf), "%.17g", v); break;
        case 2: snprintf(buf, sizeof(buf), "%.3f", v); break;
        case 3: snprintf(buf, sizeof(buf), "%.0f", v); break;
        default: snprintf(buf, sizeof(buf), "%.6e", v); break;
        }
        const char *fields[] = {"push_sent"};
        const char *values[] = {buf};
        size_t flens[] = {9}, vlens[] = {strlen(buf)};
        member_features_t f;
        features_init(&f);
        assert_int_equal(features_parse_hash(&f, channels, 3, fields, flens, values, vlens, 1),
                         0);
        if (f.ch[0].sent != strtod(buf, NULL))
            fail_msg("\"%s\" parsed as %.17g, strtod says %.17g", buf, f.ch[0].sent,
                     strtod(buf, NULL));
    }
}

static void test_channel_names_may_contain_underscores(void **state)
{
    (void)state;
    const char *kv[] = {"in_app_unsub_n", "1.5", "in_app_last_open", "1700000000"};
    member_features_t f;
    assert_int_equal(parse_pairs(&f, kv, 2), 0);
    assert_float_equal(f.ch[2].unsub_n, 1.5, 0);
    assert_int_equal(f.ch[2].last_open, 1700000000);
    assert_int_equal(f.ch[2].has, FEATURES_HAS_LAST_OPEN);
}

static void test_longest_channel_name_wins_an_ambiguous_field(void **state)
{
    (void)state;
    const char *const names[] = {"x", "x_last"};
    const char *fields[] = {"x_last_sent"};
    const char *values[] = {"9"};
    size_t flens[] = {11}, vlens[] = {1};
    member_features_t f;
    features_init(&f);
    assert_int_equal(features_parse_hash(&f, names, 2, fields, flens, values, vlens, 1), 0);
    assert_float_equal(f.ch[1].sent, 9, 0);
    assert_int_equal(f.ch[0].has, 0);
}

static void test_rejects_invalid_channel_count(void **state)
{
    (void)state;
    member_features_t f;
    features_init(&f);
    assert_int_equal(features_parse_hash(&f, channels, 0, NULL, NULL, NULL, NULL, 0), -1);
    assert_int_equal(features_parse_hash(&f, channels, NOTIFD_MAX_CHANNELS + 1, NULL, NULL,
                                         NULL, NULL, 0),
                     -1);
}

static void fill_counts(member_features_t *f, double v)
{
    features_init(f);
    f->n_channels = 3;
    for (int c = 0; c < 3; c++) {
        f->ch[c].sent = f->ch[c].delivered = f->ch[c].open = v;
        f->ch[c].click = f->ch[c].dismiss = f->ch[c].unsub_n = v;
    }
    f->visit_org = f->visit_attr = v;
    f->updated_at = T0;
    f->has = FEATURES_HAS_UPDATED_AT;
}

static void test_decay_halves_counts_at_one_half_life(void **state)
{
    (void)state;
    member_features_t f;
    fill_counts(&f, 8.0);
    features_decay_to(&f, T0 + (int64_t)HALF_LIFE, HALF_LIFE);
    for (int c = 0; c < 3; c++) {
        assert_float_equal(f.ch[c].sent, 4.0, 1e-12);
        assert_float_equal(f.ch[c].delivered, 4.0, 1e-12);
        assert_float_equal(f.ch[c].open, 4.0, 1e-12);
        assert_float_equal(f.ch[c].click, 4.0, 1e-12);
        assert_float_equal(f.ch[c].dismiss, 4.0, 1e-12);
        assert_float_equal(f.ch[c].unsub_n, 4.0, 1e-12);
    }
    assert_float_equal(f.visit_org, 4.0, 1e-12);
    assert_float_equal(f.visit_attr, 4.0, 1e-12);
    assert_int_equal(f.updated_at, T0 + (int64_t)HALF_LIFE);
}

static void test_decay_in_steps_equals_decay_at_once(void **state)
{
    (void)state;
    /* The writer decays on every update; the reader decays once. They must
     * agree. */
    member_features_t a, b;
    fill_counts(&a, 5.0);
    fill_counts(&b, 5.0);
    for (int i = 1; i <= 10; i++)
        features_decay_to(&a, T0 + i * 3 * (int64_t)DAY, HALF_LIFE);
    features_decay_to(&b, T0 + 30 * (int64_t)DAY, HALF_LIFE);
    assert_float_equal(a.ch[1].open, b.ch[1].open, 1e-12);
    assert_float_equal(a.visit_org, b.visit_org, 1e-12);
}

static void test_decay_never_inflates_counts_when_now_is_earlier(void **state)
{
    (void)state;
    member_features_t f;
    fill_counts(&f, 3.0);
    features_decay_to(&f, T0 - 1000, HALF_LIFE);
    assert_float_equal(f.ch[0].sent, 3.0, 0);
    assert_int_equal(f.updated_at, T0);
}

static void test_decay_without_updated_at_keeps_counts(void **state)
{
    (void)state;
    member_features_t f;
    fill_counts(&f, 3.0);
    f.has = 0;
    features_decay_to(&f, T0 + 1000000, HALF_LIFE);
    assert_float_equal(f.ch[0].sent, 3.0, 0);
}

static void test_exposure_is_zero_without_first_seen(void **state)
{
    (void)state;
    member_features_t f;
    features_init(&f);
    assert_float_equal(features_exposure_days(&f, T0, HALF_LIFE), 0.0, 0);
    f.first_seen = T0 + 10;
    f.has = FEATURES_HAS_FIRST_SEEN;
    assert_float_equal(features_exposure_days(&f, T0, HALF_LIFE), 0.0, 0);
}

static void test_exposure_of_young_member_is_about_its_age(void **state)
{
    (void)state;
    member_features_t f;
    features_init(&f);
    f.first_seen = T0 - 3600;
    f.has = FEATURES_HAS_FIRST_SEEN;
    /* an hour is 1/672 of a half-life: the decay trims it by ~0.05% */
    double exposure = features_exposure_days(&f, T0, HALF_LIFE);
    assert_true(exposure < 1.0 / 24.0);
    assert_float_equal(exposure, 1.0 / 24.0, 1.0 / 24.0 * 1e-3);
}

static void test_exposure_at_one_half_life_is_half_the_limit(void **state)
{
    (void)state;
    member_features_t f;
    features_init(&f);
    f.first_seen = T0 - (int64_t)HALF_LIFE;
    f.has = FEATURES_HAS_FIRST_SEEN;
    double limit = HALF_LIFE / log(2.0) / DAY;
    assert_float_equal(features_exposure_days(&f, T0, HALF_LIFE), 0.5 * limit, 1e-9);
    f.first_seen = T0 - 100 * (int64_t)HALF_LIFE;
    assert_float_equal(features_exposure_days(&f, T0, HALF_LIFE), limit, 1e-9);
}

static void test_decayed_count_over_exposure_recovers_a_constant_rate(void **state)
{
    (void)state;
    /* A member visiting 0.7 times a day, counted the way the writer does
     * (decay to the event, add 1), at any age: count / exposure is the rate. */
    const int ages[] = {3, 20, 60, 400};
    for (size_t k = 0; k < sizeof(ages) / sizeof(ages[0]); k++) {
        member_features_t f;
        features_init(&f);
        f.n_channels = 1;
        f.first_seen = T0;
        f.updated_at = T0;
        f.has = FEATURES_HAS_FIRST_SEEN | FEATURES_HAS_UPDATED_AT;
        int64_t step = (int64_t)(DAY / 0.7);
        int64_t t = T0;
        int64_t end = T0 + ages[k] * (int64_t)DAY;
        for (t = T0 + step / 2; t < end; t += step) {
            features_decay_to(&f, t, HALF_LIFE);
            f.visit_org += 1.0;
        }
        features_decay_to(&f, end, HALF_LIFE);
        double rate = f.visit_org / features_exposure_days(&f, end, HALF_LIFE);
        assert_float_equal(rate, 0.7, 0.7 * 0.06);
    }
}

/* A member is new until something of theirs is stored: a send, any
 * feedback, a visit or a score prior. Each kind alone is history; an empty
 * hash, or one with only a time zone or a first_seen, is not. */
static void test_history_is_any_send_feedback_visit_or_score(void **state)
{
    (void)state;
    member_features_t f;
    features_init(&f);
    f.n_channels = 3;
    assert_false(features_have_history(&f));
    const char *const not_history[] = {"tz_offset_min", "-300", "first_seen", "1700000000",
                                       "updated_at", "1700000000"};
    assert_int_equal(parse_pairs(&f, not_history, 3), 0);
    assert_false(features_have_history(&f));

    const char *const one_each[][2] = {
        {"push_sent", "1"},      {"email_delivered", "0.5"}, {"in_app_open", "1"},
        {"push_click", "1"},     {"email_dismiss", "1"},     {"push_unsub_n", "1"},
        {"email_unsub", "0"},    {"push_last_sent", "1699990000"},
        {"email_last_open", "1699990000"}, {"visit_org", "0.2"}, {"visit_attr", "1"},
        {"last_visit", "1699990000"},
    };
    for (size_t i = 0; i < sizeof one_each / sizeof one_each[0]; i++) {
        features_init(&f);
        f.n_channels = 3;
        const char *const kv[] = {one_each[i][0], one_each[i][1]};
        assert_int_equal(parse_pairs(&f, kv, 1), 0);
        if (!features_have_history(&f))
            fail_msg("%s alone should be history", one_each[i][0]);
    }

    features_init(&f);
    f.n_channels = 3;
    f.ch[1].score_open = 0.2;
    f.ch[1].has |= FEATURES_HAS_SCORE_OPEN;
    assert_true(features_have_history(&f));
    /* A count decayed to nothing, or a bad value, says nothing. */
    features_init(&f);
    f.n_channels = 3;
    const char *const zeros[] = {"push_sent", "0", "visit_org", "nonsense"};
    parse_pairs(&f, zeros, 2);
    assert_false(features_have_history(&f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parses_channel_counts_and_flags),
        cmocka_unit_test(test_parses_member_wide_fields),
        cmocka_unit_test(test_missing_fields_are_zero_and_unflagged),
        cmocka_unit_test(test_ignores_unknown_fields),
        cmocka_unit_test(test_values_need_not_be_nul_terminated),
        cmocka_unit_test(test_bad_numbers_are_missing_and_counted),
        cmocka_unit_test(test_ranges_are_the_stored_fields_and_counted_per_field),
        cmocka_unit_test(test_numbers_parse_exactly_as_strtod),
        cmocka_unit_test(test_channel_names_may_contain_underscores),
        cmocka_unit_test(test_longest_channel_name_wins_an_ambiguous_field),
        cmocka_unit_test(test_rejects_invalid_channel_count),
        cmocka_unit_test(test_decay_halves_counts_at_one_half_life),
        cmocka_unit_test(test_decay_in_steps_equals_decay_at_once),
        cmocka_unit_test(test_decay_never_inflates_counts_when_now_is_earlier),
        cmocka_unit_test(test_decay_without_updated_at_keeps_counts),
        cmocka_unit_test(test_exposure_is_zero_without_first_seen),
        cmocka_unit_test(test_exposure_of_young_member_is_about_its_age),
        cmocka_unit_test(test_exposure_at_one_half_life_is_half_the_limit),
        cmocka_unit_test(test_decayed_count_over_exposure_recovers_a_constant_rate),
        cmocka_unit_test(test_history_is_any_send_feedback_visit_or_score),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
