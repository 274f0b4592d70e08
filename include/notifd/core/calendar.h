/*
 * calendar.h - weeks, days and quiet hours in a member's local time.
 *
 * The fast policy counts sends per ISO week (Monday 00:00 to the next Monday
 * 00:00 in the member's time zone), shapes pacing by day of week, and keeps
 * quiet hours in local time. All of it is computed from the request's `ts`,
 * never from the wall clock, so a simulation can replay any week.
 *
 * Invariants:
 * - Times are int64_t unix seconds; a time zone is a fixed offset in minutes
 *   east of UTC (e.g. -300 for UTC-5). Offsets outside +-14 h (a corrupt
 *   member feature) are clamped to +-840 minutes rather than trusted.
 * - Everything uses floor division, so times before 1970 and negative
 *   offsets behave like any other (week index -1 is the week before the one
 *   starting Monday 1970-01-05 local). Results are exact for any ts within
 *   +-2^62 seconds.
 * - Week index w covers [calendar_week_start, +604800): consecutive weeks
 *   have consecutive indices, in every time zone, so the index is a good key
 *   for weekly counters.
 */
#ifndef NOTIFD_CALENDAR_H
#define NOTIFD_CALENDAR_H

#include <stdbool.h>
#include <stdint.h>

#define CALENDAR_TZ_MAX_MIN (14 * 60)
#define CALENDAR_MINUTES_PER_DAY 1440

/* Local weeks since the one starting Monday 1970-01-05 00:00 local (index 0);
 * earlier weeks are negative. */
int64_t calendar_week_index(int64_t ts, int tz_offset_min);

/* Unix seconds of Monday 00:00 local of the week containing ts. */
int64_t calendar_week_start(int64_t ts, int tz_offset_min);

/* Seconds since Monday 00:00 local, in [0, 604800). */
int64_t calendar_seconds_into_week(int64_t ts, int tz_offset_min);

/* Local day of week: 0 = Monday ... 6 = Sunday. */
int calendar_day_of_week(int64_t ts, int tz_offset_min);

/* Minutes since local midnight, in [0, 1440). */
int calendar_minute_of_day(int64_t ts, int tz_offset_min);

/* ISO 8601 week-numbering year and week (1..53) of ts in local time, e.g.
 * 2026-11-26 is in 2026-W48. For logs and reports; counters use the index. */
void calendar_iso_week(int64_t ts, int tz_offset_min, int *iso_year, int *iso_week);

/* Quiet hours: a daily window [start_min, end_min) of local minutes in which
 * nothing is sent. start_min > end_min wraps midnight (22:00-08:00 is
 * {true, 1320, 480}); start_min == end_min or !enabled means no window. */
typedef struct quiet_hours {
    bool enabled;
    int start_min, end_min;
} quiet_hours_t;

/* True when the fields are usable: both minutes in [0, 1440). Config
 * validation calls this; the functions below treat invalid windows as off. */
bool calendar_quiet_hours_valid(const quiet_hours_t *qh);

/* True when ts falls inside the quiet window in the member's time zone; then
 * *retry_at (if not NULL) is set to the unix second the window ends, i.e. the
 * first second at which a send is allowed again. Untouched when false. */
bool calendar_in_quiet_hours(const quiet_hours_t *qh, int64_t ts, int tz_offset_min,
                             int64_t *retry_at);

#endif
