"""Hostile stored state: values in Redis that notifd did not write the way
it writes them (out of range, hex, blanks, huge exponents, weeks from the
future) are treated as missing, counted in
notifd_stored_invalid_total{field=...}, and never crash the daemon or
distort the present. Also the config checks that keep plans bounded."""
import calendar
import json
import os
import subprocess
import tempfile
import unittest

from harness import NotifdTestCase, wait_for
from opsutil import http_request, parse_exposition, sample

MONDAY = calendar.timegm((2026, 11, 23, 0, 0, 0))  # a Monday, 00:00 UTC
NOON = MONDAY + 12 * 3600
WEEK = 7 * 86400
# Local week index (calendar.h): weeks since Monday 1970-01-05 00:00.
THIS_WEEK = (MONDAY - 4 * 86400) // WEEK


def cands():
    return [{"id": "a", "score": 0.5}, {"id": "b", "score": 0.3}]


class HostileStoreCase(NotifdTestCase):
    def decide(self, member, opp, ts=NOON, channel="push"):
        r = self.client().request({"op": "decide", "member": member, "channel": channel,
                                   "opportunity": opp, "ts": ts, "candidates": cands()})
        self.assertTrue(r["ok"], r)
        return r

    def alive(self):
        self.assertIsNone(self.notifd.proc.poll(), "notifd died")
        self.assertTrue(self.notifd.health().get("redis", {}).get("ready"))

    def invalid(self, field):
        status, _, body = http_request(self.notifd.admin_port, "/metrics")
        self.assertEqual(status, 200)
        return sample(parse_exposition(body), "notifd_stored_invalid_total", field=field) or 0

    def set_plan(self, member, **fields):
        plan = {"version": 3, "action": -1, "computed_at": MONDAY, "valid_until": 0,
                "source": "test", "push_per_week": 2, "email_per_week": 1}
        plan.update(fields)
        args = []
        for k, v in plan.items():
            args += [k, v]
        self.redis.command("HSET", "t:plan:{%s}" % member, *args)


class FirstWeekTest(HostileStoreCase):
    """Row 1: an out-of-range first_week crashed every decide of the member."""

    def test_out_of_range_first_week_is_missing_and_counted(self):
        for i, poison in enumerate(["-9223372036854775808", "1e308", "-1e308",
                                    "9223372036854775807"]):
            m = "fw%d" % i
            self.redis.command("HSET", "t:week:{%s}" % m, "push:first_week", poison,
                               "push:%d:opp" % (THIS_WEEK - 1), 4)
            before = self.invalid("week")
            self.decide(m, "o1")
            self.decide(m, "o2", ts=NOON + 3600)
            self.alive()
            self.assertGreaterEqual(self.invalid("week") - before, 1, poison)
            self.assertIn("stored value out of range, treated as missing",
                          self.notifd.log_text())
            # Missing: the member's first week is this one, as for a new member.
            got = self.redis.command("HGET", "t:week:{%s}" % m, "push:first_week")
            self.assertEqual(int(got), THIS_WEEK, poison)

    def test_weeks_from_the_future_leave_the_present_alone(self):
        m = "future"
        self.redis.command("HSET", "t:week:{%s}" % m,
                           "push:first_week", THIS_WEEK - 3, "push:ewma", 9,
                           "push:ewma_week", THIS_WEEK + 10,
                           "push:%d:opp" % THIS_WEEK, 2,
                           "push:%d:opp" % (THIS_WEEK + 3), 50,
                           "push:%d:sent" % (THIS_WEEK + 3), 40)
        self.decide(m, "o1")
        self.alive()
        h = dict(zip(*[iter(self.redis.command("HGETALL", "t:week:{%s}" % m))] * 2))
        self.assertEqual(int(h["push:%d:opp" % THIS_WEEK]), 3)  # counted, not erased
        self.assertEqual(h["push:%d:opp" % (THIS_WEEK + 3)], "50")  # not deleted
        self.assertEqual(h["push:ewma"], "9")  # not refolded from absent weeks
        self.assertEqual(int(h["push:first_week"]), THIS_WEEK - 3)


class FractionBalanceTest(HostileStoreCase):
    """A fractional plan's balance (`<ch>:bal`) out of range is missing (0):
    never a chance above its bound, and rewritten at the next fold."""

    def test_unusable_balance_is_missing_counted_and_replaced(self):
        for i, poison in enumerate(["1e308", "-1e308", "nan", "3", "x"]):
            m = "bal%d" % i
            self.set_plan(m, push_per_week=0.5, valid_until=MONDAY + 30 * 86400)
            self.redis.command("HSET", "t:week:{%s}" % m, "push:bal", poison,
                               "push:first_week", THIS_WEEK - 2, "push:ewma", 10,
                               "push:ewma_week", THIS_WEEK - 2,
                               "push:%d:opp" % (THIS_WEEK - 1), 10)
            before = self.invalid("balance")
            r = self.decide(m, "o1")
            self.alive()
            self.assertEqual(self.invalid("balance") - before, 1, poison)
            # Week W-1 folds from 0: it owed 0.5 and sent nothing.
            got = self.redis.command("HGET", "t:week:{%s}" % m, "push:bal")
            self.assertEqual(float(got), 0.5, (poison, r))
            self.assertLess(r["p_send"], 0.2, (poison, r))


class RecordScriptTest(HostileStoreCase):
    """The record scripts read the week's counters too: what decide took as
    missing they must take as missing (0), not fail on every decide."""

    def test_unusable_opportunity_counter_restarts_at_one(self):
        for i, (poison, push) in enumerate([("1e308", 0), ("abc", 0), ("-7", 0), ("2.5", 0),
                                            ("1e308", 100), ("abc", 100), ("-7", 100)]):
            m = "opp%d" % i
            self.set_plan(m, push_per_week=push)
            opp = "push:%d:opp" % THIS_WEEK
            self.redis.command("HSET", "t:week:{%s}" % m, opp, poison)
            r = self.decide(m, "o1")
            self.assertNotEqual(r["reason"], "degraded", (poison, r))
            self.assertEqual(r["send"], push > 0, (poison, r))
            # A skip restarts it with a follow-up HSET (src/fast/decide_skip.c),
            # answered before the decide is.
            self.assertEqual(self.redis.command("HGET", "t:week:{%s}" % m, opp), "1", poison)
            self.assertNotEqual(self.decide(m, "o2", ts=NOON + 60)["reason"], "degraded")

    def test_unusable_sent_counter_restarts_at_one(self):
        m = "sent"
        self.set_plan(m, push_per_week=100)
        sent = "push:%d:sent" % THIS_WEEK
        self.redis.command("HSET", "t:week:{%s}" % m, sent, "-5")
        self.assertTrue(self.decide(m, "o1")["send"])
        self.assertEqual(self.redis.command("HGET", "t:week:{%s}" % m, sent), "1")


    def test_a_sent_time_out_of_range_is_no_send_to_the_read_and_the_script(self):
        # A sent-set score no send can have (beyond 1e11 s, or negative) is
        # missing to decide's read; the record script must not take it as a
        # recent send, or each decide would pick a message, have the script
        # refuse it, and fall to the next.
        ids = [c["id"] for c in cands()]
        for i, poison in enumerate(["5e11", "-5"]):
            m = "ts%d" % i
            self.set_plan(m, push_per_week=100)
            for cid in ids:
                self.redis.command("ZADD", "t:sent:{%s}" % m, poison, cid)
            first = self.decide(m, "o1")
            self.assertTrue(first["send"], (poison, first))
            # The best message (the higher score), not the next one down.
            self.assertEqual(first["message"], "a", poison)
            self.assertEqual(float(self.redis.command("ZSCORE", "t:sent:{%s}" % m, "a")), NOON)


class FeedbackScriptTest(HostileStoreCase):
    """The feedback script adds to the member's decayed counts: a count or
    time decide and the planner take as missing, it takes as missing too."""

    def feedback(self, member, event="open", ts=NOON):
        r = self.client().request({"op": "feedback", "member": member, "channel": "push",
                                   "event": event, "ts": ts})
        self.assertTrue(r["ok"], r)

    def test_unusable_count_starts_again_from_the_event(self):
        for i, poison in enumerate(["abc", "1e308", "-5", "nan"]):
            m = "fc%d" % i
            self.redis.command("HSET", "t:member:{%s}" % m, "updated_at", NOON,
                               "push_open", poison)
            self.feedback(m)
            self.assertEqual(float(self.redis.command("HGET", "t:member:{%s}" % m,
                                                      "push_open")), 1.0, poison)

    def test_unusable_updated_at_is_missing(self):
        for i, poison in enumerate(["1e300", "-1e300", "abc"]):
            m = "fu%d" % i
            self.redis.command("HSET", "t:member:{%s}" % m, "updated_at", poison,
                               "push_open", 2, "push_last_open", "1e300")
            self.feedback(m)
            h = dict(zip(*[iter(self.redis.command("HGETALL", "t:member:{%s}" % m))] * 2))
            self.assertEqual(int(h["updated_at"]), NOON, poison)
            self.assertEqual(float(h["push_open"]), 3.0, poison)  # counted as now
            self.assertEqual(int(h["push_last_open"]), NOON, poison)

    def test_a_send_with_unusable_member_counts_records_normally(self):
        m = "fs"
        self.set_plan(m, push_per_week=100)
        self.redis.command("HSET", "t:member:{%s}" % m, "updated_at", "1e300",
                           "push_sent", "-5", "push_last_sent", "1e300")
        self.assertTrue(self.decide(m, "o1")["send"])
        h = dict(zip(*[iter(self.redis.command("HGETALL", "t:member:{%s}" % m))] * 2))
        self.assertEqual(float(h["push_sent"]), 1.0)
        self.assertEqual(int(h["push_last_sent"]), NOON)
        self.assertEqual(int(h["updated_at"]), NOON)


class MemberHashTest(HostileStoreCase):
    """Row 12: one parser and one range per stored field."""

    overrides = {"fast": {"quiet_hours": {"start": "22:00", "end": "08:00"}}}

    def test_unsub_flag_other_than_0_or_1_is_missing(self):
        for i, poison in enumerate(["0.5", "2", "-1", "1e308"]):
            m = "un%d" % i
            self.redis.command("HSET", "t:member:{%s}" % m, "push_unsub", poison)
            before = self.invalid("unsub")
            r = self.decide(m, "o1")
            self.assertNotEqual(r["reason"], "unsubscribed", poison)
            self.assertEqual(self.invalid("unsub") - before, 1, poison)
        self.redis.command("HSET", "t:member:{un-yes}", "push_unsub", "1")
        self.assertEqual(self.decide("un-yes", "o1")["reason"], "unsubscribed")

    def test_negative_weekly_sent_count_is_missing(self):
        m = "neg"
        self.set_plan(m, push_per_week=14)
        self.redis.command("HSET", "t:week:{%s}" % m, "push:%d:sent" % THIS_WEEK, "-5")
        before = self.invalid("week_sent")
        reasons = {self.decide(m, "o%d" % i, ts=NOON + i)["reason"] for i in range(3)}
        self.assertNotIn("cap_reached", reasons)
        self.assertGreaterEqual(self.invalid("week_sent") - before, 1)

    def test_tz_offset_outside_minus_720_840_is_missing(self):
        # -840 would make 12:00 UTC 22:00 the day before: quiet hours.
        self.redis.command("HSET", "t:member:{tz}", "tz_offset_min", "-840")
        before = self.invalid("tz_offset_min")
        self.assertNotEqual(self.decide("tz", "o1")["reason"], "quiet_hours")
        self.assertEqual(self.invalid("tz_offset_min") - before, 1)
        self.redis.command("HSET", "t:member:{tz2}", "tz_offset_min", "-720")
        # -720: 12:00 UTC is 00:00 local, quiet.
        self.assertEqual(self.decide("tz2", "o1")["reason"], "quiet_hours")

    def test_feedback_tz_offset_has_the_same_range_as_the_stored_field(self):
        c = self.client()
        fb = {"op": "feedback", "member": "f", "channel": "push", "event": "open", "ts": NOON}
        r = c.request(dict(fb, tz_offset_min=-840))
        self.assertFalse(r["ok"], r)
        self.assertEqual(r["error"]["code"], "bad_request")
        self.assertIn("-720..840", r["error"]["message"])
        self.assertTrue(c.request(dict(fb, tz_offset_min=-720))["ok"])
        self.assertTrue(c.request(dict(fb, tz_offset_min=840))["ok"])


class StoredPlanTest(HostileStoreCase):
    """Rows 9 and 12: the stored plan's numbers."""

    def test_per_week_must_be_a_plain_decimal_within_max_per_week(self):
        for i, poison in enumerate(["1e308", "0x20", " 3", "3 ", "101", "-1", "nan", "1e1"]):
            m = "pw%d" % i
            self.set_plan(m, push_per_week=poison)
            before = self.invalid("plan_per_week")
            r = self.decide(m, "o1")
            # Not a usable plan: the default plan, and the planner is asked.
            self.assertEqual(r["plan"]["source"], "default", (poison, r))
            self.assertEqual(r["plan"]["per_week"]["push"], 0.5, poison)
            self.assertEqual(self.invalid("plan_per_week") - before, 1, poison)
        self.set_plan("pw-ok", push_per_week="3.5")
        r = self.decide("pw-ok", "o1")
        self.assertEqual((r["plan"]["source"], r["plan"]["per_week"]["push"]), ("test", 3.5))

    def test_huge_version_is_missing(self):
        self.set_plan("ver", version="1e300")
        before = self.invalid("plan_version")
        r = self.decide("ver", "o1")
        self.assertEqual(r["plan"]["source"], "test")
        self.assertEqual(r["plan"]["version"], 0)
        self.assertEqual(self.invalid("plan_version") - before, 1)

    def test_unreadable_valid_until_does_not_make_a_plan_eternal(self):
        for i, poison in enumerate(["1e300", "-1e300", "-5"]):
            m = "vu%d" % i
            self.set_plan(m, valid_until=poison, push_per_week=7)
            before = self.invalid("plan_time")
            r = self.decide(m, "o1")
            self.assertEqual(r["plan"]["source"], "default", (poison, r))
            self.assertEqual(self.invalid("plan_time") - before, 1, poison)


class ConfigBoundsTest(unittest.TestCase):
    """Row 9: plans are bounded by slow.max_per_week, and an experiment arm
    cannot leave a planned channel unplanned (and so unpaced)."""

    def check(self, cfg):
        from harness import NOTIFD_BIN
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(dict({"redis": {"host": "127.0.0.1", "port": 6379}}, **cfg), f)
        self.addCleanup(os.unlink, f.name)
        return subprocess.run([NOTIFD_BIN, "-c", f.name, "--check-config"],
                              capture_output=True, text=True, timeout=10)

    def test_an_arm_that_leaves_push_out_is_rejected(self):
        r = self.check({"experiments": {"slow": {"salt": "s", "arms": [
            {"name": "email_only", "share": 0.5,
             "set": {"slow.actions": {"email": [0, 1, 2]}}}]}}})
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("experiments.slow.arms[0].set.slow.actions", r.stderr)
        self.assertIn("push", r.stderr)

    def test_an_arm_that_keeps_every_planned_channel_is_accepted(self):
        r = self.check({"experiments": {"slow": {"salt": "s", "arms": [
            {"name": "more", "share": 0.5,
             "set": {"slow.actions": {"push": [0, 1, 20], "email": [0, 1]}}}]}}})
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_actions_and_default_plan_within_max_per_week(self):
        r = self.check({"slow": {"actions": {"push": [0, 1, 150], "email": [0, 1]}}})
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("slow.actions", r.stderr)
        self.assertIn("max_per_week", r.stderr)
        r = self.check({"slow": {"max_per_week": 200,
                                 "actions": {"push": [0, 1, 150], "email": [0, 1]}}})
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.check({"slow": {"max_per_week": 10, "default_plan": {"push": 12}}})
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("slow.default_plan.push", r.stderr)
        r = self.check({"slow": {"max_per_week": 0}})
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("slow.max_per_week", r.stderr)


if __name__ == "__main__":
    unittest.main()
