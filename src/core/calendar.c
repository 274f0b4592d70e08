/*
 * calendar.c - local weeks, days and quiet hours (see calendar.h).
 *
 * Everything reduces to one shift: local seconds = ts + offset, and the
 * epoch of local weeks is Monday 1970-01-05 00:00 local, four days after the
 * unix epoch (a Thursday). Fixed offsets mean no DST tables are needed; the
 * member feature store carries the member's current offset.
 */
#include "notifd/core/calendar.h"

#include "notifd/core/types.h"

/* Seconds from the unix epoch (Thursday) to the first Monday, 1970-01-05. */
#define MONDAY_EPOCH_S (4 * (int64_t)NOTIFD_SECONDS_PER_DAY)

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

static int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

static int64_t tz_seconds(int tz_offset_min)
{
    if (tz_offset_min > CALENDAR_TZ_MAX_MIN)
        tz_offset_min = CALENDAR_TZ_MAX_MIN;
    if (tz_offset_min < -CALENDAR_TZ_MAX_MIN)
        tz_offset_min = -CALENDAR_TZ_MAX_MIN;
    return (int64_t)tz_offset_min * 60;
}

/* Local seconds measured from Monday 1970-01-05 00:00 local. */
static int64_t local_since_monday_epoch(int64_t ts, int tz_offset_min)
{
    return ts + tz_seconds(tz_offset_min) - MONDAY_EPOCH_S;
}

int64_t calendar_week_index(int64_t ts, int tz_offset_min)
{
    return floor_div(local_since_monday_epoch(ts, tz_offset_min), NOTIFD_SECONDS_PER_WEEK);
}

int64_t calendar_week_start(int64_t ts, int tz_offset_min)
{
    return calendar_week_index(ts, tz_offset_min) * NOTIFD_SECONDS_PER_WEEK + MONDAY_EPOCH_S -
           tz_seconds(tz_offset_min);
}

int64_t calendar_seconds_into_week(int64_t ts, int tz_offset_min)
{
    return floor_mod(local_since_monday_epoch(ts, tz_offset_min), NOTIFD_SECONDS_PER_WEEK);
}

int calendar_day_of_week(int64_t ts, int tz_offset_min)
{
    return (int)(calendar_seconds_into_week(ts, tz_offset_min) / NOTIFD_SECONDS_PER_DAY);
}

int calendar_minute_of_day(int64_t ts, int tz_offset_min)
{
    return (int)(floor_mod(ts + tz_seconds(tz_offset_min), NOTIFD_SECONDS_PER_DAY) / 60);
}

/* Civil year of a day count since 1970-01-01, and the day of that year
 * (0-based). Howard Hinnant's days_from_civil inverse, valid for all int64
 * day counts we can reach. */
static void civil_year_from_days(int64_t z, int64_t *year, int *day_of_year)
{
    z += 719468;
    const int64_t era = floor_div(z, 146097);
    const int64_t doe = z - era * 146097;                                 /* [0, 146096] */
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    const int64_t doy_mar = doe - (365 * yoe + yoe / 4 - yoe / 100);      /* from March 1 */
    const int64_t mp = (5 * doy_mar + 2) / 153;
    const int64_t month = mp < 10 ? mp + 3 : mp - 9; /* 1..12 */
    int64_t y = yoe + era * 400 + (month <= 2);
    /* Day of year from January 1: March-based day plus Jan+Feb, or minus the
     * days from January 1 to March 1 of the next civil year. */
    const bool leap = (y % 4 == 0 && y % 100 != 0) || floor_mod(y, 400) == 0;
    const int64_t jan_feb = 31 + (leap ? 29 : 28);
    int64_t doy = month >= 3 ? doy_mar + jan_feb : doy_mar - 306;
    *year = y;
    *day_of_year = (int)doy;
}

void calendar_iso_week(int64_t ts, int tz_offset_min, int *iso_year, int *iso_week)
{
    /* An ISO week belongs to the year of its Thursday, and its number is
     * the count of Thursdays of that year up to and including it. */
    const int64_t local_days =
        floor_div(ts + tz_seconds(tz_offset_min), NOTIFD_SECONDS_PER_DAY);
    const int64_t thursday = local_days - calendar_day_of_week(ts, tz_offset_min) + 3;
    int64_t year;
    int doy;
    civil_year_from_days(thursday, &year, &doy);
    if (iso_year)
        *iso_year = (int)year;
    if (iso_week)
        *iso_week = doy / 7 + 1;
}

bool calendar_quiet_hours_valid(const quiet_hours_t *qh)
{
    return qh->start_min >= 0 && qh->start_min < CALENDAR_MINUTES_PER_DAY &&
           qh->end_min >= 0 && qh->end_min < CALENDAR_MINUTES_PER_DAY;
}

bool calendar_in_quiet_hours(const quiet_hours_t *qh, int64_t ts, int tz_offset_min,
                             int64_t *retry_at)
{
    if (qh == NULL || !qh->enabled || qh->start_min == qh->end_min ||
        !calendar_quiet_hours_valid(qh))
        return false;

    const int64_t tz_s = tz_seconds(tz_offset_min);
    const int64_t local = ts + tz_s;
    const int64_t second_of_day = floor_mod(local, NOTIFD_SECONDS_PER_DAY);
    const int64_t start_s = (int64_t)qh->start_min * 60, end_s = (int64_t)qh->end_min * 60;
    const int64_t midnight = local - second_of_day;

    int64_t end_local; /* local second at which this quiet window ends */
    if (qh->start_min < qh->end_min) {
        if (second_of_day < start_s || second_of_day >= end_s)
            return false;
        end_local = midnight + end_s;
    } else if (second_of_day >= start_s) {
        end_local = midnight + NOTIFD_SECONDS_PER_DAY + end_s; /* ends tomorrow */
    } else if (second_of_day < end_s) {
        end_local = midnight + end_s; /* the part after midnight */
    } else {
        return false;
    }
    if (retry_at)
        *retry_at = end_local - tz_s;
    return true;
}
