"""Global rate limits (limits.global, README "Global rate limits") against
the real binary and a real Redis: two instances on one Redis hold the
configured rate and honour the burst, a limited send is answered
rate_limited with a retry_at (and its retry gets the same answer), tag
limits, shadow mode, a hostile limiter value, and limits.on_error.

Every decide here is for a fresh member with the plain coin at p = 1 and a
cap far away, so only a rate limit can stop a send."""
import calendar
import re
import threading
import time
import unittest
import urllib.request

from harness import PLAIN_COIN, WAIT_SCALE, Client, Notifd, NotifdTestCase, wait_for

MONDAY = calendar.timegm((2026, 11, 23, 0, 0, 0))
TS = MONDAY + 9 * 3600
ALWAYS_SEND = {"fast": {**PLAIN_COIN, "prior_opportunities_per_week": 0.5},
               "slow": {"default_plan": {"push": 20, "email": 20}}}


def with_limits(limits):
    return {**ALWAYS_SEND, "limits": limits}


def decide(member, opp=None, tags=None, channel="push"):
    cand = {"id": "promo", "score": 0.9}
    if tags is not None:
        cand["tags"] = tags
    return {"op": "decide", "id": member, "member": member, "channel": channel,
            "opportunity": opp or "o-" + member, "ts": TS, "candidates": [cand]}


def metrics(notifd):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % notifd.admin_port,
                                timeout=10) as r:
        return r.read().decode()


def metric(notifd, name, **labels):
    """The value of one series (0 when it is absent)."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in metrics(notifd).splitlines():
        m = re.match(r'^(\w+)\{([^}]*)\} (\S+)$', line)
        if m and m.group(1) == name and ",".join(sorted(m.group(2).split(","))) == want:
            return float(m.group(3))
    return 0.0


class BurstTest(NotifdTestCase):
    # One send a minute after a burst of 10: a burst right after idle gets
    # exactly 10 sends.
    overrides = with_limits({"global": {"push": {"per_second": 1 / 60, "burst": 10}}})

    def test_a_burst_after_idle_sends_exactly_burst_then_limits_with_retry_at(self):
        c = self.client()
        before = time.time()
        replies = c.pipeline([decide("b%02d" % i) for i in range(30)])
        sent = [r for r in replies if r["send"]]
        limited = [r for r in replies if not r["send"]]
        self.assertEqual(len(sent), 10, replies)
        for r in limited:
            self.assertEqual(r["reason"], "rate_limited", r)
            self.assertEqual(r["p_send"], 0, r)
            self.assertIsNone(r["message"], r)
            # The 11th send conforms one emission interval (60 s) after the
            # first: retry_at is Redis's clock, not the request's ts.
            self.assertGreaterEqual(r["retry_at"], int(before) + 59, r)
            self.assertLessEqual(r["retry_at"], int(time.time()) + 61, r)
        # A retry of a limited opportunity gets its stored answer, as a
        # cap stop's does; nothing more is counted.
        first = limited[0]
        again = c.request(decide(first["id"]))
        self.assertTrue(again.get("duplicate"), again)
        self.assertEqual(again["retry_at"], first["retry_at"])
        self.assertEqual(again["reason"], "rate_limited")
        # No send recorded for a limited member; the opportunity counted.
        week = self.redis.command("HGETALL", "t:week:{%s}" % first["id"])
        fields = dict(zip(week[0::2], week[1::2]))
        self.assertFalse(any(k.endswith(":sent") for k in fields), fields)
        self.assertTrue(any(k.endswith(":opp") for k in fields), fields)
        self.assertEqual(self.redis.command("EXISTS", "t:sent:{%s}" % first["id"]), 0)
        # The limiter key: P limit:<channel>, a TAT in us, with a TTL.
        tat = float(self.redis.command("GET", "t:limit:push"))
        self.assertGreater(tat, before * 1e6)
        self.assertGreater(self.redis.command("PTTL", "t:limit:push"), 0)
        # Metrics: the stops, and the reason in decisions_total.
        wait_for(lambda: metric(self.notifd, "notifd_rate_limited_total", channel="push",
                                tag="", shadow="false") == 20, what="rate_limited_total 20")
        self.assertEqual(metric(self.notifd, "notifd_decisions_total", channel="push",
                                mode="hierarchical", reason="rate_limited"), 20)
        # Another channel is not limited.
        e = c.pipeline([decide("e%02d" % i, channel="email") for i in range(15)])
        self.assertTrue(all(r["send"] for r in e), e)


class TagLimitTest(NotifdTestCase):
    overrides = with_limits({"global": {"push": {
        "per_second": 1000, "burst": 1000,
        "tags": {"promo": {"per_second": 0.001, "burst": 3},
                 "digest": {"per_second": 0.001, "burst": 1}}}}})

    def test_a_tag_limit_stops_only_messages_carrying_the_tag(self):
        c = self.client()
        promo = c.pipeline([decide("p%02d" % i, tags=["weekly", "promo", 7])
                            for i in range(8)])
        self.assertEqual([r["send"] for r in promo], [True] * 3 + [False] * 5, promo)
        self.assertTrue(all(r["reason"] == "rate_limited" for r in promo[3:]), promo)
        untagged = c.pipeline([decide("u%02d" % i, tags=["weekly"]) for i in range(8)])
        self.assertTrue(all(r["send"] for r in untagged), untagged)
        # Both tags: both limiters must allow it ("digest" allows one).
        both = c.pipeline([decide("d%02d" % i, tags=["digest", "promo"]) for i in range(2)])
        self.assertFalse(any(r["send"] for r in both), both)
        digest = c.pipeline([decide("g%02d" % i, tags=["digest"]) for i in range(2)])
        self.assertEqual([r["send"] for r in digest], [True, False], digest)
        self.assertIsNotNone(self.redis.command("GET", "t:limit:push:promo"))
        wait_for(lambda: metric(self.notifd, "notifd_rate_limited_total", channel="push",
                                tag="promo", shadow="false") == 7,
                 what="promo limited 5 + 2")


class ShadowTest(NotifdTestCase):
    overrides = with_limits({"shadow": True,
                             "global": {"push": {"per_second": 0.001, "burst": 5}}})

    def test_shadow_mode_sends_everything_and_counts_what_it_would_stop(self):
        c = self.client()
        replies = c.pipeline([decide("s%02d" % i) for i in range(20)])
        self.assertTrue(all(r["send"] for r in replies), replies)
        wait_for(lambda: metric(self.notifd, "notifd_rate_limited_total", channel="push",
                                tag="", shadow="true") == 15, what="15 shadow stops")
        self.assertEqual(metric(self.notifd, "notifd_rate_limited_total", channel="push",
                                tag="", shadow="false"), 0)


class PerLimitShadowTest(NotifdTestCase):
    # The channel limit is enforced; its tag's is only counted.
    overrides = with_limits({"global": {"push": {
        "per_second": 0.001, "burst": 4,
        "tags": {"promo": {"per_second": 0.001, "burst": 1, "shadow": True}}}}})

    def test_a_shadow_tag_limit_beside_an_enforced_channel_limit(self):
        c = self.client()
        replies = c.pipeline([decide("q%02d" % i, tags=["promo"]) for i in range(6)])
        self.assertEqual([r["send"] for r in replies], [True] * 4 + [False] * 2, replies)
        wait_for(lambda: metric(self.notifd, "notifd_rate_limited_total", channel="push",
                                tag="promo", shadow="true") >= 3, what="shadow tag stops")


class HostileLimiterTest(NotifdTestCase):
    overrides = with_limits({"global": {"push": {"per_second": 0.001, "burst": 2}}})

    def test_a_limiter_value_that_is_no_time_is_reset_not_obeyed(self):
        c = self.client()
        for i, junk in enumerate(["garbage", "nan", "inf", "-5", "1e300", "", "0x7fffffff" * 3]):
            self.redis.command("SET", "t:limit:push", junk)
            r = c.request(decide("h%02d" % i))
            self.assertTrue(r["ok"], r)
            self.assertTrue(r["send"], (junk, r))
            # Reset to a plausible TAT: now + one emission interval.
            tat = float(self.redis.command("GET", "t:limit:push"))
            self.assertLess(abs(tat / 1e6 - 1000 - time.time()), 30, (junk, tat))
        wait_for(lambda: metric(self.notifd, "notifd_rate_limit_errors_total", channel="push",
                                tag="", action="reset") == 7, what="7 resets")
        # A TAT far in the future that a clock step could leave is reset too
        # (no limiter holds a TAT beyond now + 2 * burst * T + 60 s).
        self.redis.command("SET", "t:limit:push", "%d" % int((time.time() + 86400 * 365) * 1e6))
        self.assertTrue(c.request(decide("far"))["send"])


class FailOpenTest(NotifdTestCase):
    overrides = with_limits({"global": {"push": {"per_second": 0.001, "burst": 1}}})

    def test_a_limiter_redis_cannot_read_fails_open_by_default(self):
        self.redis.command("HSET", "t:limit:push", "x", "1")  # WRONGTYPE for GET
        c = self.client()
        replies = c.pipeline([decide("o%02d" % i) for i in range(5)])
        self.assertTrue(all(r["send"] for r in replies), replies)
        wait_for(lambda: metric(self.notifd, "notifd_rate_limit_errors_total", channel="push",
                                tag="", action="open") == 5, what="5 open errors")
        # The key is not ours to repair: it is left as found.
        self.assertEqual(self.redis.command("TYPE", "t:limit:push"), "hash")


class FailClosedTest(NotifdTestCase):
    overrides = with_limits({"on_error": "closed",
                             "global": {"push": {"per_second": 1000, "burst": 1000}}})

    def test_a_limiter_redis_cannot_read_fails_closed_when_configured(self):
        self.redis.command("HSET", "t:limit:push", "x", "1")
        c = self.client()
        now = time.time()
        replies = c.pipeline([decide("c%02d" % i) for i in range(3)])
        for r in replies:
            self.assertFalse(r["send"], r)
            self.assertEqual(r["reason"], "rate_limited", r)
            self.assertLessEqual(abs(r["retry_at"] - (now + 1)), 3, r)
        wait_for(lambda: metric(self.notifd, "notifd_rate_limit_errors_total", channel="push",
                                tag="", action="closed") == 3, what="3 closed errors")
        self.redis.command("DEL", "t:limit:push")
        self.assertTrue(c.request(decide("c-after"))["send"])


class RedisDownTest(NotifdTestCase):
    # Redis gone: no limit can be checked, the decide degrades before the
    # record (fast.on_store_error), whatever limits.on_error says. With
    # "skip" nothing is sent; with "default_plan" a degraded send is not
    # rate limited (README, Failure modes).
    overrides = with_limits({"on_error": "closed",
                             "global": {"push": {"per_second": 0.001, "burst": 1}}})

    def test_a_dead_redis_degrades_the_decide_before_any_limit(self):
        c = self.client()
        self.assertTrue(c.request(decide("z0"))["send"])
        self.redis.stop()
        wait_for(lambda: not self.notifd.health()["redis"]["ready"], what="redis not ready")
        r = c.request(decide("z1"))
        self.assertEqual(r["reason"], "degraded", r)
        self.assertFalse(r["send"], r)
        self.assertTrue(r.get("degraded"), r)
        self.assertNotIn("retry_at", r)


class DefaultPlanRedisDownTest(NotifdTestCase):
    # on_store_error "default_plan" decides without Redis: a send no limit
    # could check goes with on_error "open", and is answered rate_limited
    # (degraded, retry_at a second away) with "closed".
    overrides = with_limits({"global": {"push": {"per_second": 0.001, "burst": 1},
                                        "email": {"per_second": 0.001, "burst": 1,
                                                  "shadow": True}}})
    overrides["fast"] = {**overrides["fast"], "on_store_error": "default_plan"}

    def test_a_degraded_default_plan_send_fails_open_or_closed(self):
        c = self.client()
        self.assertTrue(c.request(decide("y0"))["send"])
        self.assertEqual(c.request(decide("y1"))["reason"], "rate_limited")
        self.redis.stop()
        wait_for(lambda: not self.notifd.health()["redis"]["ready"], what="redis not ready")
        r = c.request(decide("y2"))
        self.assertTrue(r.get("degraded"), r)
        self.assertTrue(r["send"], r)
        # The same, closed (a reload: the config is read without Redis).
        import copy
        import signal
        closed = copy.deepcopy(self.notifd.config)
        closed["limits"]["on_error"] = "closed"
        self.notifd.write_config(closed)
        self.notifd.signal(signal.SIGHUP)
        wait_for(lambda: self.notifd.health()["config_generation"] == 2, what="reload")
        now = time.time()
        r = c.request(decide("y3"))
        self.assertTrue(r.get("degraded"), r)
        self.assertFalse(r["send"], r)
        self.assertEqual(r["reason"], "rate_limited", r)
        self.assertLessEqual(abs(r["retry_at"] - (now + 1)), 2, r)
        # A shadow limit stops nothing, closed or not.
        r = c.request(decide("y4", channel="email"))
        self.assertTrue(r["send"], r)
        wait_for(lambda: metric(self.notifd, "notifd_rate_limit_errors_total", channel="push",
                                tag="", action="closed") == 1, what="one closed error")


class TwoInstancesRateTest(NotifdTestCase):
    """Two instances under load hold the configured rate within 5% over
    10 s of wall time."""
    RATE, BURST, SECONDS = 100, 20, 10.0
    overrides = with_limits({"global": {"push": {"per_second": RATE, "burst": BURST}}})

    def test_two_instances_hold_the_rate_together(self):
        other = Notifd(self.redis.port, self.overrides)
        self.addCleanup(other.close)
        other.start()
        sends = {0: [], 1: []}  # answer times of sends
        offered = {0: 0, 1: 0}
        stop_at = time.time() + self.SECONDS + 1.0
        start = time.time()

        def load(k, port):
            c = Client(port, timeout=30 * WAIT_SCALE)
            n = 0
            while time.time() < stop_at:
                batch = [decide("r%d-%06d" % (k, n + i)) for i in range(40)]
                n += len(batch)
                replies = c.pipeline(batch)
                now = time.time()
                for r in replies:
                    if not r["ok"]:
                        raise AssertionError(r)
                    if r["send"]:
                        sends[k].append(now)
                    else:
                        assert r["reason"] == "rate_limited", r
                time.sleep(0.02)
            offered[k] = n
            c.close()

        threads = [threading.Thread(target=load, args=(k, p))
                   for k, p in enumerate([self.notifd.port, other.port])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        end = time.time()
        every = sorted(sends[0] + sends[1])
        # The window: from 1 s in (the burst spent) to the end of the load.
        lo, hi = start + 1.0, start + 1.0 + self.SECONDS
        in_window = sum(1 for t in every if lo <= t < hi)
        achieved = in_window / self.SECONDS
        total_rate = (len(every) - self.BURST) / (end - start)
        print("\nrate limit %d/s burst %d: two instances, offered %d decides (%.0f/s), "
              "sent %d; %.1f/s over the 10 s window, %.1f/s over the whole run (%.1f s), "
              "per instance %d + %d" %
              (self.RATE, self.BURST, offered[0] + offered[1],
               (offered[0] + offered[1]) / (end - start), len(every), achieved, total_rate,
               end - start, len(sends[0]), len(sends[1])))
        # The load must exceed the rate severalfold, on both instances.
        self.assertGreater(offered[0] + offered[1], 3 * self.RATE * self.SECONDS)
        self.assertGreater(len(sends[0]), 0)
        self.assertGreater(len(sends[1]), 0)
        self.assertLess(abs(achieved - self.RATE), 0.05 * self.RATE, achieved)
        self.assertLess(abs(total_rate - self.RATE), 0.05 * self.RATE, total_rate)


class ReloadTest(NotifdTestCase):
    overrides = with_limits({"global": {"push": {"per_second": 0.001, "burst": 1}}})

    def generation(self):
        return self.notifd.health()["config_generation"]

    def test_sighup_keeps_the_limits_on_a_bad_file_and_applies_a_good_one(self):
        import copy
        import signal
        c = self.client()
        self.assertEqual([r["send"] for r in c.pipeline([decide("x1"), decide("x2")])],
                         [True, False])
        bad = copy.deepcopy(self.notifd.config)
        bad["limits"]["global"]["push"]["burst"] = -1
        self.notifd.write_config(bad)
        self.notifd.signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in self.notifd.log_text(), what="rejection logged")
        self.assertIn("limits.global.push.burst", self.notifd.log_text())
        self.assertEqual(self.generation(), 1)
        self.assertEqual(c.request(decide("x3"))["reason"], "rate_limited")
        # A good file without the limit: sends go again; a tag appears in
        # the metrics' labels once its limit is configured.
        good = copy.deepcopy(self.notifd.config)
        good["limits"]["global"] = {"push": {"tags": {"promo": {"per_second": 1000,
                                                                "burst": 1000}}}}
        self.notifd.write_config(good)
        self.notifd.signal(signal.SIGHUP)
        wait_for(lambda: self.generation() == 2, what="generation 2")
        self.assertTrue(c.request(decide("x4"))["send"])
        wait_for(lambda: 'tag="promo"' in metrics(self.notifd), what="promo label")


class ConfigTest(unittest.TestCase):
    def check(self, limits):
        n = Notifd(1, {"limits": limits})
        try:
            n.write_config()
            import subprocess
            from harness import NOTIFD_BIN
            p = subprocess.run([NOTIFD_BIN, "--check-config", "-c", n.config_path],
                               capture_output=True, text=True, timeout=30)
            return p.returncode, p.stdout + p.stderr
        finally:
            n.close()

    def test_check_config_covers_the_limits(self):
        rc, out = self.check({"global": {"push": {"per_second": 5, "burst": 10,
                                                  "tags": {"promo": {"per_second": 1,
                                                                     "burst": 2}}}},
                              "on_error": "closed", "shadow": False})
        self.assertEqual(rc, 0, out)
        for bad, says in [
            ({"global": {"pus": {"per_second": 5, "burst": 1}}}, "limits.global.pus"),
            ({"global": {"push": {"per_second": 0, "burst": 1}}}, "limits.global.push.per_second"),
            ({"global": {"push": {"per_second": 5}}}, "limits.global.push"),
            ({"global": {"push": {"per_second": 5, "burst": 0}}}, "limits.global.push.burst"),
            ({"global": {"push": {"per_second": 5, "burst": 1, "brust": 2}}}, "brust"),
            ({"global": {"push": {"tags": {"a b": {"per_second": 1, "burst": 1}}}}}, "a b"),
            ({"on_error": "maybe"}, "limits.on_error"),
            ({"shadow": "yes"}, "limits.shadow"),
        ]:
            rc, out = self.check(bad)
            self.assertNotEqual(rc, 0, (bad, out))
            self.assertIn(says, out, (bad, out))


if __name__ == "__main__":
    unittest.main()
