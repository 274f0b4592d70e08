/*
 * test_calendar.c - unit tests for local ISO weeks, days and quiet hours
 * (src/core/calendar.c): week boundaries at Monday 00:00 local in positive
 * and negative time zones, times before 1970, a known date, and quiet
 * windows that wrap midnight with their retry time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "notifd/core/calendar.h"
#include "notifd/lib/rng.h"

/* Monday 2026-11-23 00:00:00 UTC (ISO 2026-W48); Thursday is +3 days. */
#define MON_2026_11_23 INT64_C(1795392000)
#define WEEK_2026_11_23 2968
#define DAY INT64_C(86400)
#define HOUR INT64_C(3600)

static void test_week_starts_at_monday_midnight_utc(void **state)
{
    (void)state;
    const int64_t t = MON_2026_11_23;
    assert_int_equal(calendar_week_index(t, 0), WEEK_2026_11_23);
    assert_int_equal(calendar_week_index(t - 1, 0), WEEK_2026_11_23 - 1);
    assert_int_equal(calendar_week_start(t, 0), t);
    assert_int_equal(calendar_week_start(t - 1, 0), t - 7 * DAY);
    assert_int_equal(calendar_seconds_into_week(t, 0), 0);
}

static void test_sunday_last_second_is_end_of_week(void **state)
{
    (void)state;
    const int64_t t = MON_2026_11_23 - 1; /* Sunday 23:59:59 */
    assert_int_equal(calendar_day_of_week(t, 0), 6);
    assert_int_equal(calendar_seconds_into_week(t, 0), 604799);
    assert_int_equal(calendar_minute_of_day(t, 0), 1439);
}

static void test_week_boundary_in_negative_time_zone(void **state)
{
    (void)state;
    /* UTC-5: Monday 00:00 local is Monday 05:00 UTC. */
    const int tz = -300;
    const int64_t local_monday = MON_2026_11_23 + 5 * HOUR;
    assert_int_equal(calendar_week_start(local_monday, tz), local_monday);
    assert_int_equal(calendar_week_index(local_monday, tz), WEEK_2026_11_23);
    assert_int_equal(calendar_week_index(local_monday - 1, tz), WEEK_2026_11_23 - 1);
    assert_int_equal(calendar_day_of_week(local_monday - 1, tz), 6);
    /* Monday 03:00 UTC is still Sunday 22:00 in UTC-5. */
    assert_int_equal(calendar_day_of_week(MON_2026_11_23 + 3 * HOUR, tz), 6);
    assert_int_equal(calendar_minute_of_day(MON_2026_11_23 + 3 * HOUR, tz), 22 * 60);
}

static void test_week_boundary_in_positive_time_zone(void **state)
{
    (void)state;
    /* UTC+5:30: Monday 00:00 local is Sunday 18:30 UTC. */
    const int tz = 330;
    const int64_t local_monday = MON_2026_11_23 - 5 * HOUR - 30 * 60;
    assert_int_equal(calendar_week_start(local_monday, tz), local_monday);
    assert_int_equal(calendar_week_start(MON_2026_11_23, tz), local_monday);
    assert_int_equal(calendar_week_index(local_monday, tz), WEEK_2026_11_23);
    assert_int_equal(calendar_week_index(local_monday - 1, tz), WEEK_2026_11_23 - 1);
    assert_int_equal(calendar_seconds_into_week(MON_2026_11_23, tz), 5 * HOUR + 30 * 60);
}

static void test_known_date_is_thursday_of_iso_week_48(void **state)
{
    (void)state;
    const int64_t t = MON_2026_11_23 + 3 * DAY + 12 * HOUR; /* 2026-11-26 12:00 */
    int year = 0, week = 0;
    calendar_iso_week(t, 0, &year, &week);
    assert_int_equal(calendar_day_of_week(t, 0), 3);
    assert_int_equal(year, 2026);
    assert_int_equal(week, 48);
}

static void test_iso_week_belongs_to_year_of_its_thursday(void **state)
{
    (void)state;
    int year = 0, week = 0;
    calendar_iso_week(INT64_C(1609459200), 0, &year, &week); /* Fri 2021-01-01 */
    assert_int_equal(year, 2020);
    assert_int_equal(week, 53);
    calendar_iso_week(INT64_C(1735516800), 0, &year, &week); /* Mon 2024-12-30 */
    assert_int_equal(year, 2025);
    assert_int_equal(week, 1);
}

static void test_epoch_and_earlier_use_floor_division(void **state)
{
    (void)state;
    /* 1970-01-01 was a Thursday, in the week of Monday 1969-12-29. */
    assert_int_equal(calendar_week_index(0, 0), -1);
    assert_int_equal(calendar_day_of_week(0, 0), 3);
    assert_int_equal(calendar_week_start(0, 0), -3 * DAY);
    assert_int_equal(calendar_day_of_week(-1, 0), 2);
    assert_int_equal(calendar_minute_of_day(-1, 0), 1439);
    assert_int_equal(calendar_week_index(4 * DAY, 0), 0);
}

static void test_out_of_range_time_zone_is_clamped(void **state)
{
    (void)state;
    assert_int_equal(calendar_week_start(MON_2026_11_23, 100000),
                     calendar_week_start(MON_2026_11_23, 14 * 60));
    assert_int_equal(calendar_minute_of_day(MON_2026_11_23, -100000),
                     calendar_minute_of_day(MON_2026_11_23, -14 * 60));
}

static void test_week_functions_agree_for_random_times_and_zones(void **state)
{
    (void)state;
    rng_t r;
    rng_seed(&r, 31337);
    for (int i = 0; i < 20000; i++) {
        /* Years 1900..2100, offsets in whole quarter hours within +-14 h. */
        const int64_t ts = (int64_t)(rng_next_u64(&r) % (200 * 366 * 86400ull)) - 70 * 366 * DAY;
        const int tz = (int)(rng_next_u64(&r) % 113) * 15 - 14 * 60;
        const int64_t start = calendar_week_start(ts, tz);
        assert_true(start <= ts && ts < start + 7 * DAY);
        assert_int_equal(calendar_seconds_into_week(ts, tz), ts - start);
        assert_int_equal(calendar_day_of_week(start, tz), 0);
        assert_int_equal(calendar_minute_of_day(start, tz), 0);
        assert_int_equal(calendar_week_index(start + 7 * DAY, tz),
                         calendar_week_index(ts, tz) + 1);
    }
}

static const quiet_hours_t night = {true, 22 * 60, 8 * 60}; /* 22:00-08:00 */

static void test_quiet_hours_before_midnight_retry_next_morning(void **state)
{
    (void)state;
    int64_t retry = 0;
    const int64_t t = MON_2026_11_23 + 23 * HOUR; /* Mon 23:00 UTC */
    assert_true(calendar_in_quiet_hours(&night, t, 0, &retry));
    assert_int_equal(retry, MON_2026_11_23 + DAY + 8 * HOUR);
}

static void test_quiet_hours_after_midnight_retry_same_morning(void **state)
{
    (void)state;
    int64_t retry = 0;
    const int64_t t = MON_2026_11_23 + 8 * HOUR - 1; /* 07:59:59 */
    assert_true(calendar_in_quiet_hours(&night, t, 0, &retry));
    assert_int_equal(retry, MON_2026_11_23 + 8 * HOUR);
}

static void test_quiet_hours_edges_are_start_inclusive_end_exclusive(void **state)
{
    (void)state;
    int64_t retry = 0;
    assert_false(calendar_in_quiet_hours(&night, MON_2026_11_23 + 8 * HOUR, 0, &retry));
    assert_false(calendar_in_quiet_hours(&night, MON_2026_11_23 + 22 * HOUR - 1, 0, &retry));
    assert_true(calendar_in_quiet_hours(&night, MON_2026_11_23 + 22 * HOUR, 0, &retry));
    assert_int_equal(retry, MON_2026_11_23 + DAY + 8 * HOUR);
}

static void test_quiet_hours_follow_member_time_zone(void **state)
{
    (void)state;
    int64_t retry = 0;
    /* 04:00 UTC is 23:00 in UTC-5: quiet until 08:00 local = 13:00 UTC. */
    const int64_t t = MON_2026_11_23 + 4 * HOUR;
    assert_true(calendar_in_quiet_hours(&night, t, -300, &retry));
    assert_int_equal(retry, MON_2026_11_23 + 13 * HOUR);
    /* The same instant is 13:00 in UTC+9: not quiet. */
    assert_false(calendar_in_quiet_hours(&night, t, 9 * 60, &retry));
}

static void test_quiet_hours_without_wrap(void **state)
{
    (void)state;
    const quiet_hours_t lunch = {true, 12 * 60, 13 * 60 + 30};
    int64_t retry = 0;
    assert_true(calendar_in_quiet_hours(&lunch, MON_2026_11_23 + 12 * HOUR, 0, &retry));
    assert_int_equal(retry, MON_2026_11_23 + 13 * HOUR + 30 * 60);
    assert_false(calendar_in_quiet_hours(&lunch, MON_2026_11_23 + 11 * HOUR, 0, &retry));
    assert_false(calendar_in_quiet_hours(&lunch, MON_2026_11_23 + 23 * HOUR, 0, &retry));
}

static void test_quiet_hours_off_when_disabled_empty_or_invalid(void **state)
{
    (void)state;
    int64_t retry = 77;
    const int64_t t = MON_2026_11_23 + 23 * HOUR;
    const quiet_hours_t disabled = {false, 22 * 60, 8 * 60};
    const quiet_hours_t empty = {true, 600, 600};
    const quiet_hours_t invalid = {true, 22 * 60, 1440};
    assert_false(calendar_in_quiet_hours(&disabled, t, 0, &retry));
    assert_false(calendar_in_quiet_hours(&empty, t, 0, &retry));
    assert_false(calendar_in_quiet_hours(&invalid, t, 0, &retry));
    assert_false(calendar_in_quiet_hours(NULL, t, 0, &retry));
    assert_int_equal(retry, 77); /* untouched when not quiet */
    assert_false(calendar_quiet_hours_valid(&invalid));
    assert_true(calendar_quiet_hours_valid(&night));
}

static void test_quiet_hours_accept_null_retry(void **state)
{
    (void)state;
    assert_true(calendar_in_quiet_hours(&night, MON_2026_11_23 + 23 * HOUR, 0, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_week_starts_at_monday_midnight_utc),
        cmocka_unit_test(test_sunday_last_second_is_end_of_week),
        cmocka_unit_test(test_week_boundary_in_negative_time_zone),
        cmocka_unit_test(test_week_boundary_in_positive_time_zone),
        cmocka_unit_test(test_known_date_is_thursday_of_iso_week_48),
        cmocka_unit_test(test_iso_week_belongs_to_year_of_its_thursday),
        cmocka_unit_test(test_epoch_and_earlier_use_floor_division),
        cmocka_unit_test(test_out_of_range_time_zone_is_clamped),
        cmocka_unit_test(test_week_functions_agree_for_random_times_and_zones),
        cmocka_unit_test(test_quiet_hours_before_midnight_retry_next_morning),
        cmocka_unit_test(test_quiet_hours_after_midnight_retry_same_morning),
        cmocka_unit_test(test_quiet_hours_edges_are_start_inclusive_end_exclusive),
        cmocka_unit_test(test_quiet_hours_follow_member_time_zone),
        cmocka_unit_test(test_quiet_hours_without_wrap),
        cmocka_unit_test(test_quiet_hours_off_when_disabled_empty_or_invalid),
        cmocka_unit_test(test_quiet_hours_accept_null_retry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
