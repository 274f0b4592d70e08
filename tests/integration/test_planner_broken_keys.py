"""The planner's schedule keys as hostile input, against a real
redis-server and the real binary: a due set, cadence set, cursor or lease
of the wrong type or holding garbage costs at most its own partition, never
the pass, and never a decide.

Every test runs passes with planner_run and explicit `ts`, the timer off.
"""
import unittest

from harness import NotifdTestCase, wait_for
from opsutil import http_request, parse_exposition, sample
from test_planner import (DAY, PREFIX, T0, WEEK, RedisPipe, cadence_key, member, plan_key,
                          sched_key)

import gen_members

MEMBERS = 80


def partition(m):
    return gen_members.schedule_partition(m.encode())


class BrokenPartitionKeysTest(NotifdTestCase):
    overrides = {"planner": {"enabled": False}}

    def setUp(self):
        super().setUp()
        self.pipe = RedisPipe(self.redis)
        self.addCleanup(self.pipe.close)
        self.pipe.load_members(MEMBERS, due=T0)
        self.members = [member(i) for i in range(MEMBERS)]
        self.victim = self.members[0]
        self.bad = partition(self.victim)
        self.inside = [m for m in self.members if partition(m) == self.bad]
        self.outside = [m for m in self.members if partition(m) != self.bad]
        self.assertGreater(len({partition(m) for m in self.outside}), 10)

    def key(self, kind, n=None):
        return "%s%s:%d" % (PREFIX, kind, self.bad if n is None else n)

    def run_pass(self, ts):
        r = self.client().request({"op": "planner_run", "ts": ts})
        self.assertTrue(r["ok"], r)
        return r

    def versions(self, members):
        return [v for v in self.pipe.run([["HGET", plan_key(m), "version"] for m in members])]

    def partitions_failed_metric(self):
        status, _, body = http_request(self.notifd.admin_port, "/metrics")
        self.assertEqual(status, 200)
        return sample(parse_exposition(body), "notifd_planner_partitions_failed_total")

    def decide(self, m, opp, ts):
        return self.client().request({"op": "decide", "member": m, "channel": "push",
                                      "opportunity": opp, "ts": ts,
                                      "candidates": [{"id": "c1", "score": 0.5}]})

    def test_a_due_set_of_the_wrong_type_fails_its_partition_and_no_other(self):
        self.pipe.run([["DEL", self.key("sched")], ["SET", self.key("sched"), "oops"]])
        r = self.run_pass(T0 + 60)
        self.assertEqual(r["partitions_failed"], 1)
        self.assertEqual((r["planned"], r["failed"]), (len(self.outside), 0))
        self.assertEqual(set(self.versions(self.outside)), {"1"})
        self.assertEqual(set(self.versions(self.inside)), {None})
        self.assertEqual(self.partitions_failed_metric(), 1)
        self.assertIn("a key of it is broken", self.notifd.log_text())

        # Decides and feedback for a member of the broken partition answer
        # (on the default plan: it has none); their ZADD into the due set
        # fails on the side.
        d = self.decide(self.victim, "o1", T0 + 120)
        self.assertTrue(d["ok"], d)
        self.assertEqual(d["plan"]["source"], "default")
        newcomer = next(m for m in ("f%04d" % i for i in range(10000))
                        if partition(m) == self.bad)
        f = self.client().request({"op": "feedback", "member": newcomer, "channel": "push",
                                   "event": "delivered", "ts": T0 + 120})
        self.assertTrue(f["ok"], f)
        self.assertEqual(self.redis.command("GET", self.key("sched")), "oops")

        # Each pass counts it again; once the key is fixed, the partition's
        # members are planned as they turn up again.
        again = self.run_pass(T0 + 180)
        self.assertEqual((again["partitions_failed"], again["planned"]), (1, 0))
        self.assertEqual(self.partitions_failed_metric(), 2)
        self.pipe.run([["DEL", self.key("sched")]])
        self.assertTrue(self.decide(self.victim, "o2", T0 + 240)["ok"])
        wait_for(lambda: self.redis.command("ZSCORE", sched_key(self.victim), self.victim),
                 what="the victim due again")
        fixed = self.run_pass(T0 + 300)
        self.assertEqual((fixed["partitions_failed"], fixed["planned"]), (0, 1))
        self.assertEqual(self.versions([self.victim]), ["1"])

    def test_a_cadence_set_of_the_wrong_type_fails_its_cadence_walk_only(self):
        self.assertEqual(self.run_pass(T0 + 60)["planned"], MEMBERS)
        self.pipe.run([["DEL", self.key("cadence")], ["SET", self.key("cadence"), "oops"]])
        # A newcomer of the broken partition, due: its due walk still runs.
        newcomer = next(m for m in ("n%04d" % i for i in range(10000))
                        if partition(m) == self.bad)
        self.pipe.run([["HSET", "%smember:{%s}" % (PREFIX, newcomer), "updated_at", str(T0),
                        "first_seen", str(T0)],
                       ["ZADD", sched_key(newcomer), str(T0), newcomer]])
        r = self.run_pass(T0 + 60 + WEEK)  # a whole cadence: every phase came round
        self.assertEqual(r["partitions_failed"], 1)
        self.assertEqual(set(self.versions(self.outside)), {"2"})
        self.assertEqual(set(self.versions(self.inside)), {"1"})  # its cadence is broken
        self.assertEqual(self.versions([newcomer]), ["1"])
        self.assertEqual(r["planned"], len(self.outside) + 1)
        # replan stores the plan; the cadence set refusing the member after
        # that does not fail it.
        rp = self.client().request({"op": "replan", "member": self.victim, "ts": T0 + 90 + WEEK})
        self.assertTrue(rp["ok"], rp)
        self.assertEqual(self.versions([self.victim]), ["2"])
        # The cursor did not move: once the set is back, the partition's
        # cadence is walked in full.
        self.assertEqual(self.redis.command("GET", self.key("cursor")), str(T0 + 60))
        self.pipe.run([["DEL", self.key("cadence")]] +
                      [["ZADD", cadence_key(m), repr(gen_members.cadence_phase(m.encode())), m]
                       for m in self.inside])
        fixed = self.run_pass(T0 + 120 + WEEK)
        self.assertEqual(fixed["partitions_failed"], 0)
        self.assertEqual(set(self.versions(self.inside)), {"2"})

    def test_cursors_that_are_not_times_are_walked_as_if_absent_and_replaced(self):
        t1 = T0 + 60
        self.assertEqual(self.run_pass(t1)["planned"], MEMBERS)
        parts = sorted({partition(m) for m in self.members})[:3]
        garbage = [["SET", self.key("cursor", parts[0]), "oops"],
                   # far in the future: trusted, it would hide the cadence
                   ["SET", self.key("cursor", parts[1]), "999999999999999"],
                   ["DEL", self.key("cursor", parts[2])],
                   ["HSET", self.key("cursor", parts[2]), "a", "b"]]
        self.pipe.run(garbage)
        t2 = t1 + WEEK
        r = self.run_pass(t2)
        self.assertEqual(r["partitions_failed"], 0)
        self.assertEqual(r["planned"], MEMBERS)
        self.assertEqual(set(self.versions(self.members)), {"2"})
        for n in parts:
            self.assertEqual(self.redis.command("GET", self.key("cursor", n)), str(t2))

    def test_lease_keys_that_never_expire_are_taken_over(self):
        parts = sorted({partition(m) for m in self.members})[:2]
        self.pipe.run([["SET", self.key("lease", parts[0]), "garbage"],
                       ["HSET", self.key("lease", parts[1]), "a", "b"]])
        r = self.run_pass(T0 + 60)
        self.assertEqual((r["planned"], r["partitions_skipped"]), (MEMBERS, 0))
        self.assertEqual(r["partitions_failed"], 0)
        self.assertEqual(set(self.versions(self.members)), {"1"})
        for n in parts:  # released like any lease of ours
            self.assertEqual(self.redis.command("EXISTS", self.key("lease", n)), 0)

    def test_a_live_lease_of_another_instance_is_still_respected(self):
        self.pipe.run([["SET", self.key("lease"), "other:1:x", "PX", "60000"]])
        r = self.run_pass(T0 + 60)
        self.assertEqual(r["partitions_skipped"], 1)
        self.assertEqual(set(self.versions(self.inside)), {None})
        self.assertEqual(set(self.versions(self.outside)), {"1"})

    def test_redis_refusing_writes_still_fails_the_pass_not_64_partitions(self):
        # Only a key of the wrong type is one partition's problem; Redis
        # refusing every write (out of memory) is an outage, answered so.
        self.redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.redis.command("CONFIG", "SET", "maxmemory", "1")
        try:
            r = self.client().request({"op": "planner_run", "ts": T0 + 60})
        finally:
            self.redis.command("CONFIG", "SET", "maxmemory", "0")
        self.assertFalse(r["ok"], r)
        self.assertEqual(r["error"]["code"], "unavailable")
        self.assertIn("OOM", r["error"]["message"])
        self.assertEqual(self.run_pass(T0 + 120)["planned"], MEMBERS)

    def test_a_due_time_that_never_comes_is_moved_by_the_next_decide(self):
        stuck = self.victim
        self.pipe.run([["ZADD", sched_key(stuck), "+inf", stuck]])
        self.assertEqual(self.run_pass(T0 + 60)["planned"], MEMBERS - 1)
        self.assertEqual(self.versions([stuck]), [None])
        # It has no plan, so a decide asks for one: its due time moves to
        # the decide's ts (never later), and the next pass plans it.
        ts = T0 + 2 * DAY
        self.assertEqual(self.decide(stuck, "o1", ts)["plan"]["source"], "default")
        wait_for(lambda: self.redis.command("ZSCORE", sched_key(stuck), stuck) == str(ts),
                 what="the due time moved to the decide's ts")
        r = self.run_pass(ts + 60)
        self.assertEqual(r["planned"], 1)
        self.assertEqual(self.versions([stuck]), ["1"])
        # A member due earlier keeps its time.
        other = self.outside[0]
        self.pipe.run([["DEL", plan_key(other)], ["ZADD", sched_key(other), str(T0), other]])
        self.assertTrue(self.decide(other, "o2", ts)["ok"])
        self.assertTrue(self.decide(other, "o3", ts + 1)["ok"])
        self.assertEqual(self.redis.command("ZSCORE", sched_key(other), other), str(T0))


if __name__ == "__main__":
    unittest.main()
