"""Feedback survives Redis outages (docs/feedback-queue.md): accepted while
Redis is down or stalled, answered {"recorded": false, "queued": true},
spooled, and applied once, in order, when Redis is back; refused
(`unavailable`) only when the spool is full. Counts are checked in Redis."""
import os
import signal
import threading
import time
import unittest
import urllib.request

from harness import Client, Notifd, NotifdTestCase, Redis, wait_for

NOON = 1795392000 + 12 * 3600


def fb(member, event="open", **extra):
    # One ts for every event: the decayed counts stay exact integers.
    return {"op": "feedback", "member": member, "channel": "push", "event": event,
            "ts": NOON, **extra}


class FeedbackQueueTest(NotifdTestCase):
    overrides = {"redis": {"timeout_ms": 300}}

    def stats(self, notifd=None):
        return (notifd or self.notifd).request({"op": "stats"})["feedback_queue"]

    def drained(self, notifd=None):
        s = self.stats(notifd)
        return (s["queue_depth"] == 0 and s["spool_segments"] == 0 and not s["replaying"]
                and s)

    def opens(self, member):
        v = self.redis.command("HGET", "t:member:{%s}" % member, "push_open")
        return None if v is None else float(v)

    def assert_queued(self, r):
        self.assertEqual((r.get("ok"), r.get("recorded"), r.get("queued")), (True, False, True), r)

    def test_feedback_while_redis_is_down_is_queued_and_applied_once_in_order(self):
        c = self.client()
        self.redis.stop()
        wait_for(lambda: not self.notifd.health()["redis"]["ready"], what="redis not ready")
        members = ["d%d" % i for i in range(20)]
        for _ in range(3):
            for r in c.pipeline([fb(m) for m in members]):
                self.assert_queued(r)
        # Order matters: unsubscribe then resubscribe leaves the member subscribed.
        self.assert_queued(c.request(fb("order", "unsubscribe")))
        self.assert_queued(c.request(fb("order", "resubscribe")))
        # Spilled to the spool while Redis stays away.
        wait_for(lambda: self.stats()["spooled"] == 62, what="the queue spooled")
        self.assertGreater(self.stats()["spool_bytes"], 0)
        self.redis.start()
        s = wait_for(self.drained, timeout=15, what="the queue replayed")
        self.assertEqual((s["queued"], s["replayed"], s["dead_lettered"], s["refused"]),
                         (62, 62, 0, 0), s)
        for m in members:
            self.assertEqual(self.opens(m), 3.0, m)
        url = "http://127.0.0.1:%d/metrics" % self.notifd.admin_port
        metrics = dict(l.split(" ", 1) for l in urllib.request.urlopen(url, timeout=5).read()
                       .decode().splitlines() if l.startswith("notifd_feedback_"))
        self.assertEqual(float(metrics["notifd_feedback_queued_total"]), 62)
        self.assertEqual(float(metrics["notifd_feedback_replayed_total"]), 62)
        self.assertEqual(self.redis.command("HGET", "t:member:{order}", "push_unsub"), "0")
        self.assertIsNone(self.redis.command("HGET", "t:optout:{order}", "push"))
        # Back to normal: recorded at once.
        r = c.request(fb("after"))
        self.assertEqual((r["ok"], r["recorded"]), (True, True), r)
        self.assertEqual(self.opens("after"), 1.0)

    def test_a_stall_of_redis_loses_and_doubles_nothing(self):
        """SIGSTOP for 4 s mid-run: every event sent during the stall is
        applied once after it (the in-flight ones too: Redis runs what it
        had already received when it wakes, the replay finds their ids)."""
        sent = {}
        answers = []
        stop = threading.Event()
        errors = []

        def producer():
            try:
                cl = Client(self.notifd.port, timeout=30)
                i = 0
                while not stop.is_set():
                    m = "s%d" % (i % 25)
                    # Half with a producer event_id, half without.
                    r = cl.request(fb(m, event_id="e-%d" % i) if i % 2 else fb(m))
                    answers.append(r)
                    sent[m] = sent.get(m, 0) + 1
                    i += 1
                    time.sleep(0.005)
                cl.close()
            except Exception as e:  # asserted below
                errors.append(e)

        t = threading.Thread(target=producer, daemon=True)
        t.start()
        time.sleep(0.5)
        self.redis.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(4)
        finally:
            self.redis.proc.send_signal(signal.SIGCONT)
        time.sleep(1)
        stop.set()
        t.join(30)
        self.assertEqual(errors, [])
        self.assertTrue(all(r.get("ok") for r in answers),
                        [r for r in answers if not r.get("ok")][:3])
        queued = sum(1 for r in answers if r.get("queued"))
        self.assertGreater(queued, 50)  # the stall did queue feedback
        s = wait_for(self.drained, timeout=20, what="the queue replayed")
        self.assertEqual(s["queued"], queued, s)
        self.assertEqual(s["dead_lettered"], 0, s)
        for m, n in sent.items():
            self.assertEqual(self.opens(m), float(n), m)

    def test_sigterm_spools_the_queue_and_the_next_run_applies_it(self):
        c = self.client()
        self.redis.stop()
        wait_for(lambda: not self.notifd.health()["redis"]["ready"], what="redis not ready")
        for r in c.pipeline([fb("t%d" % (i % 7)) for i in range(70)]):
            self.assert_queued(r)
        c.close()
        # Whatever the 100 ms spill had not written yet, the stop writes.
        self.notifd.stop()
        self.assertEqual(self.notifd.proc.returncode, 0)
        spool = os.path.join(self.notifd.dir, "var", "feedback-spool")
        self.assertTrue([f for f in os.listdir(spool) if f.startswith("events-")],
                        os.listdir(spool))
        self.redis.start()
        # The next run, in the same working directory, finds the spool.
        again = Notifd(self.redis.port, self.overrides, workdir=self.notifd.dir)
        self.addCleanup(again.close)
        again.start()
        wait_for(lambda: self.drained(again), timeout=15, what="the spool replayed")
        for i in range(7):
            self.assertEqual(self.opens("t%d" % i), 10.0)
        self.assertEqual([f for f in os.listdir(spool) if f.startswith("events-")], [])

    def test_a_replay_cut_short_counts_once(self):
        """Redis goes away again in the middle of a replay: the segment is
        sent again from its start, and what was applied counts once."""
        c = self.client()
        self.redis.stop()
        wait_for(lambda: not self.notifd.health()["redis"]["ready"], what="redis not ready")
        n = 3000
        for k in range(0, n, 500):
            for r in c.pipeline([fb("r%d" % (i % 10)) for i in range(k, k + 500)]):
                self.assert_queued(r)
        wait_for(lambda: self.stats()["spooled"] == n, what="the queue spooled")
        self.redis.start()
        before = wait_for(lambda: (lambda s: s["replayed"] > 0 and s)(self.stats()),
                          interval=0.005, what="the replay to start")
        self.redis.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1)
        finally:
            self.redis.proc.send_signal(signal.SIGCONT)
        s = wait_for(self.drained, timeout=20, what="the queue replayed")
        # Some were applied by an attempt whose answer was lost, and are
        # duplicates on the next: applied, and not twice.
        self.assertGreaterEqual(s["replayed"] + s["duplicates"], n, s)
        if before["replayed"] < n:  # the stall did cut the replay short
            self.assertGreater(s["duplicates"], 0, s)
        for i in range(10):
            self.assertEqual(self.opens("r%d" % i), n / 10)


class FeedbackSpoolFullTest(NotifdTestCase):
    overrides = {"feedback": {"queue_max": 5, "spool_max_bytes": 1500}}

    def test_a_full_spool_is_the_only_unavailable_answer_and_says_so(self):
        c = self.client()
        self.redis.stop()
        wait_for(lambda: not self.notifd.health()["redis"]["ready"], what="redis not ready")
        answers = c.pipeline([fb("full%d" % i) for i in range(60)])
        queued = [a for a in answers if a.get("queued")]
        refused = [a for a in answers if not a.get("ok")]
        self.assertEqual(len(queued) + len(refused), 60, answers)
        self.assertGreater(len(refused), 0)
        self.assertGreater(len(queued), 5)  # memory, and then the spool
        for a in refused:
            self.assertEqual(a["error"]["code"], "unavailable", a)
            self.assertIn("spool is full", a["error"]["message"])
        s = self.notifd.request({"op": "stats"})["feedback_queue"]
        self.assertEqual(s["refused"], len(refused), s)
        self.redis.start()
        wait_for(lambda: self.notifd.request({"op": "stats"})["feedback_queue"]["replayed"]
                 == len(queued), timeout=15, what="the queue replayed")
        applied = sum(1 for i in range(60)
                      if self.redis.command("HGET", "t:member:{full%d}" % i, "push_open"))
        self.assertEqual(applied, len(queued))


class FeedbackSpoolBadLinesTest(NotifdTestCase):
    def test_records_that_cannot_be_applied_are_dead_lettered_and_the_rest_applied(self):
        self.notifd.stop()
        spool = os.path.join(self.notifd.dir, "var", "feedback-spool")
        good = '{"member":"g","channel":"push","event":"open","ts":%d,"event_id":"x%%d"}' % NOON
        with open(os.path.join(spool, "events-00000000000000000007.ndjson"), "w") as f:
            f.write(good % 1 + "\n")
            f.write("not json at all\n")
            f.write('{"member":"g","channel":"nope","event":"open","ts":%d}\n' % NOON)
            f.write(good % 2 + "\n")
            f.write(good % 2 + "\n")  # a repeat of its id: counted once
            # Redis refuses this one for good (its member key is a string).
            f.write('{"member":"wt","channel":"push","event":"open","ts":%d}\n' % NOON)
        self.redis.command("SET", "t:member:{wt}", "not a hash")
        again = Notifd(self.redis.port, {}, workdir=self.notifd.dir)
        self.addCleanup(again.close)
        again.start()
        s = wait_for(lambda: (lambda s: s["spool_segments"] == 0 and s)(
            again.request({"op": "stats"})["feedback_queue"]), timeout=15, what="replayed")
        self.assertEqual((s["replayed"], s["duplicates"], s["dead_lettered"]), (2, 1, 3), s)
        self.assertEqual(float(self.redis.command("HGET", "t:member:{g}", "push_open")), 2.0)
        with open(os.path.join(spool, "dead-letter.ndjson")) as f:
            dead = f.read().splitlines()
        self.assertEqual(dead[0], "not json at all")
        self.assertIn('"nope"', dead[1])
        self.assertIn('"wt"', dead[2])
        self.assertIn("queued feedback refused for good", again.log_text())


if __name__ == "__main__":
    unittest.main()
