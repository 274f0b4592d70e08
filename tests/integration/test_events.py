"""Decision events end to end: the real notifd publishing every decision and
feedback to a real local HTTP server (harness.EventSink, its own process),
which the tests kill, restart, slow down and make fail.

What is checked is the delivery contract of docs/events.md: every event
arrives with its fields; none is lost when the endpoint dies mid-stream or
when notifd stops while it is dead (the spool is replayed at the next
start); redelivered events keep their event_id; a slow endpoint does not
slow decisions; a rejected batch lands in the dead-letter file.

Events are matched to requests by opportunity (each test uses unique
opportunities), so "none lost" means: every opportunity sent arrived, and
all copies of one opportunity's event carry one event_id (duplicates are
allowed: delivery is at least once).
"""
import glob
import json
import os
import re
import shutil
import signal
import statistics
import tempfile
import threading
import time
import unittest

from harness import (NOTIFD_WRAPPER, EventSink, Notifd, Redis, proc_rss_kib, sanitizer_report,
                     wait_for)

DECISION_FIELDS = {"event_id", "type", "ts", "member", "channel", "opportunity", "send",
                   "message", "reason", "p_send", "propensity", "plan", "arm", "mode",
                   "version", "candidates", "propensities"}
FEEDBACK_FIELDS = {"event_id", "type", "ts", "member", "channel", "event", "message", "version"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def candidates(n=3):
    return [{"id": "msg-%d" % i, "score": 0.2 + 0.2 * i, "features": {"freshness": 1.0},
             "tags": ["t"]} for i in range(n)]


def decide(member, opportunity, ts=None):
    r = {"op": "decide", "member": member, "channel": "push", "opportunity": opportunity,
         "candidates": candidates()}
    if ts is not None:
        r["ts"] = ts
    return r


def segments(spool_dir):
    return sorted(glob.glob(os.path.join(spool_dir, "events-*.ndjson")))


def spooled_events(spool_dir):
    out = []
    for path in segments(spool_dir):
        with open(path, "rb") as f:
            out += [json.loads(l) for l in f.read().split(b"\n") if l.strip()]
    return out


class EventsTestCase(unittest.TestCase):
    """A Redis, an EventSink (started unless sink_up is False) and a notifd
    publishing to it. Short flush and backoff so tests run quickly."""

    sink_up = True
    events = {}

    def setUp(self):
        self.redis = Redis().start()
        self.addCleanup(self.redis.close)
        self.sink = EventSink()
        self.addCleanup(self.sink.close)
        if self.sink_up:
            self.sink.start()
        self.workdir = tempfile.mkdtemp(prefix="notifd-events-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.spool_dir = os.path.join(self.workdir, "spool")
        self.prepare()
        self.notifd = self.new_notifd().start()

    def prepare(self):
        """Runs before notifd starts (e.g. to leave a spool for it)."""

    def new_notifd(self):
        ev = {"url": self.sink.url, "spool_dir": self.spool_dir, "flush_ms": 50,
              "batch_max": 20, "timeout_ms": 5000, "retry_min_ms": 50, "retry_max_ms": 300}
        ev.update(self.events)
        n = Notifd(self.redis.port, {"events": ev}, workdir=self.workdir)
        self.addCleanup(self.check_sanitizer, n)  # cleanups run last first: after stop
        self.addCleanup(n.stop)
        return n

    def check_sanitizer(self, n):
        report = sanitizer_report(n.log_text())
        if report:
            raise AssertionError("notifd's sanitizer report:\n" + report)

    def pipeline(self, reqs, chunk=100):
        c = self.notifd.client()
        try:
            for i in range(0, len(reqs), chunk):
                for r in c.pipeline(reqs[i:i + chunk]):
                    self.assertTrue(r["ok"], r)
        finally:
            c.close()

    def require_events(self, timeout=3.0):
        """Fails when no event arrives: the decide path must publish."""
        wait_for(lambda: self.sink.events(), timeout=timeout, what="a first event")

    def by_opportunity(self, events):
        out = {}
        for e in events:
            if e.get("type") == "decision":
                out.setdefault(e["opportunity"], set()).add(e["event_id"])
        return out

    def wait_all_arrived(self, opportunities, timeout=30.0):
        want = set(opportunities)
        wait_for(lambda: want <= set(self.by_opportunity(self.sink.events())), timeout=timeout,
                 what="%d decision events at the sink" % len(want))
        got = self.by_opportunity(self.sink.events())
        for opp in want:
            self.assertEqual(len(got[opp]), 1,
                             "opportunity %s arrived under several event_ids: %s" % (opp, got[opp]))
        return got

    def metric(self, name):
        """A counter from the admin endpoint's /metrics (0 if absent)."""
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.notifd.admin_port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
        return float(m.group(1)) if m else 0.0


class DeliveryTest(EventsTestCase):
    def test_every_decision_and_feedback_arrives_with_its_fields(self):
        self.redis.command("HSET", "t:plan:{hot}", "version", 3, "action", -1, "computed_at", 0,
                           "valid_until", 0, "source", "test", "push_per_week", 50,
                           "email_per_week", 1)
        reqs = [decide("m%d" % i, "d%d" % i) for i in range(30)]
        reqs += [decide("hot", "hot%d" % i) for i in range(10)]
        self.pipeline(reqs)
        fb = [{"op": "feedback", "member": "m%d" % i, "channel": "push", "event": "open",
               "message": "msg-1", "ts": 1795000000 + i} for i in range(10)]
        self.pipeline(fb)
        self.require_events()
        self.wait_all_arrived([r["opportunity"] for r in reqs])
        wait_for(lambda: sum(e["type"] == "feedback" for e in self.sink.events()) >= 10,
                 what="10 feedback events")

        version = self.notifd.health()["version"]
        events = self.sink.events()
        ids = [e["event_id"] for e in events]
        self.assertEqual(len(ids), len(set(ids)), "a healthy endpoint gets no duplicates")
        for e in events:
            self.assertRegex(e["event_id"], HEX32)
            self.assertEqual(e["version"], version)
        decisions = [e for e in events if e["type"] == "decision"]
        self.assertEqual(len(decisions), 40)
        for e in decisions:
            self.assertLessEqual(DECISION_FIELDS, set(e), "missing: %s" % (DECISION_FIELDS - set(e)))
            self.assertEqual(e["channel"], "push")
            self.assertLessEqual({"version", "source", "per_week", "propensity"}, set(e["plan"]))
            self.assertLessEqual(set(e["plan"]), {"version", "source", "per_week", "propensity",
                                                  "defaulted"})
            # A plan written by another system was not drawn: certain.
            self.assertEqual(e["plan"]["propensity"], 1.0)
            self.assertEqual(e["propensities"]["plan"], 1.0)
            self.assertEqual(set(e["propensities"]), {"plan", "coin", "ranker"})
            self.assertNotIn("holdout", e)
            self.assertEqual(set(e["arm"]), {"slow", "fast"})
            self.assertEqual([c["id"] for c in e["candidates"]], ["msg-0", "msg-1", "msg-2"])
            for c in e["candidates"]:
                self.assertEqual(set(c), {"id", "score", "utility", "select_prob"})
            self.assertGreater(e["propensity"], 0.0)
        hot = [e for e in decisions if e["member"] == "hot"]
        self.assertTrue(all(e["plan"]["source"] == "test" and e["plan"]["version"] == 3 for e in hot))
        self.assertTrue(any(e["send"] and e["message"] for e in hot), "the hot member got no send")
        feedback = [e for e in events if e["type"] == "feedback"]
        self.assertEqual(len(feedback), 10)
        for e in feedback:
            self.assertLessEqual(FEEDBACK_FIELDS, set(e), "missing: %s" % (FEEDBACK_FIELDS - set(e)))
            self.assertEqual((e["event"], e["message"], e["channel"]), ("open", "msg-1", "push"))
        self.assertEqual(sorted(e["ts"] for e in feedback), [1795000000 + i for i in range(10)])

        # Transport: NDJSON POSTs, batched, over one kept-alive connection.
        reqs_seen = self.sink.requests()
        self.assertTrue(all(r["content_type"] == "application/x-ndjson" for r in reqs_seen))
        self.assertLess(len(reqs_seen), len(events), "events were not batched")
        self.assertLessEqual(max(r["lines"] for r in reqs_seen), 20, "batch_max not honoured")
        self.assertEqual(len({r["client_port"] for r in reqs_seen}), 1,
                         "the connection was not kept alive: %s" % reqs_seen)
        wait_for(lambda: self.metric("notifd_events_sent_total") == 50, what="sent_total == 50")

    def test_server_errors_are_retried_until_the_endpoint_recovers(self):
        self.sink.set(status=503)
        reqs = [decide("m%d" % i, "e%d" % i) for i in range(30)]
        self.pipeline(reqs)
        wait_for(lambda: len(self.sink.requests()) >= 3, what="retried requests")
        self.assertEqual(self.sink.events(), [], "a 503 must not count as delivered")
        self.sink.set(status=200)
        self.wait_all_arrived([r["opportunity"] for r in reqs])
        self.assertGreater(self.metric("notifd_events_retried_total"), 0)
        self.assertFalse(os.path.exists(os.path.join(self.spool_dir, "dead-letter.ndjson")))


class PriorityEventTest(EventsTestCase):
    def test_events_show_the_class_considered_and_each_candidates(self):
        reqs = [{"op": "decide", "member": "pr%d" % i, "channel": "push",
                 "opportunity": "pr%d" % i, "ts": 1795000000,
                 "candidates": [{"id": "promo", "score": 0.9},
                                {"id": "alert", "score": 0.1, "priority": prio}]}
                for i, prio in enumerate(["transactional", "high"])]
        reqs.append(decide("pr-normal", "pr-normal"))
        self.pipeline(reqs)
        got = self.wait_all_arrived([r["opportunity"] for r in reqs])
        events = {e["opportunity"]: e for e in self.sink.events() if e["type"] == "decision"}
        self.assertEqual(len(got), 3)
        tx, high, normal = events["pr0"], events["pr1"], events["pr-normal"]
        self.assertEqual((tx["priority"], tx["send"], tx["message"]),
                         ("transactional", True, "alert"))
        self.assertEqual(high["priority"], "high")
        self.assertNotIn("priority", normal)
        for e in (tx, high):
            cands = {c["id"]: c for c in e["candidates"]}
            self.assertNotIn("priority", cands["promo"])  # normal: absent
            self.assertEqual(cands["alert"]["priority"], e["priority"])


class OutageTest(EventsTestCase):
    def test_endpoint_killed_mid_stream_then_restarted_loses_nothing(self):
        first = [decide("m%d" % (i % 50), "a%d" % i) for i in range(100)]
        self.pipeline(first)
        self.require_events()
        # Kill it while events are still flowing, then keep deciding.
        second = [decide("m%d" % (i % 50), "b%d" % i) for i in range(200)]
        self.pipeline(second[:20])
        self.sink.kill()
        for i in range(20, 200, 20):
            self.pipeline(second[i:i + 20])
            time.sleep(0.02)
        wait_for(lambda: segments(self.spool_dir), what="events spooled while the endpoint is down")
        spooled = {e["opportunity"] for e in spooled_events(self.spool_dir)}
        self.assertTrue(spooled, "the spool holds no events")
        self.assertGreater(self.metric("notifd_events_spooled_total"), 0)

        self.sink.start()  # same port
        got = self.wait_all_arrived([r["opportunity"] for r in first + second])
        self.assertEqual(len(got), 300)
        wait_for(lambda: not segments(self.spool_dir), what="the replayed spool to be removed")
        # Every event was queued exactly once and nothing was dropped.
        self.assertEqual(self.metric("notifd_events_queued_total"), 300)
        self.assertEqual(self.metric("notifd_events_dropped_total"), 0)


class StopWhileDownTest(EventsTestCase):
    sink_up = False

    def test_sigterm_with_endpoint_dead_spools_and_next_start_replays(self):
        reqs = [decide("m%d" % (i % 40), "s%d" % i) for i in range(120)]
        self.pipeline(reqs)
        self.notifd.signal(signal.SIGTERM)
        self.assertEqual(self.notifd.wait(), 0)
        on_disk = spooled_events(self.spool_dir)
        self.assertEqual({e["opportunity"] for e in on_disk}, {r["opportunity"] for r in reqs},
                         "not every queued event was spooled at stop")
        ids_on_disk = {e["opportunity"]: e["event_id"] for e in on_disk}
        self.assertIn("event sink stopping", self.notifd.log_text())

        self.sink.start()
        self.notifd = self.new_notifd().start()
        got = self.wait_all_arrived(ids_on_disk)
        for opp, ids in got.items():
            self.assertEqual(ids, {ids_on_disk[opp]}, "event_id changed on redelivery")
        wait_for(lambda: not segments(self.spool_dir), what="the replayed spool to be removed")


class SlowEndpointTest(EventsTestCase):
    events = {"batch_max": 500, "flush_ms": 20}

    def round_trips(self, client, tag, n, budget=None):
        """Round-trip times of n sequential decides; stops early once `budget`
        seconds have passed (so a sink that blocks decisions fails the test
        quickly instead of taking n * 2 s)."""
        out = []
        start = time.perf_counter()
        for i in range(n):
            if budget is not None and time.perf_counter() - start > budget:
                break
            t0 = time.perf_counter()
            r = client.request(decide("m%d" % (i % 50), "%s%d" % (tag, i)))
            out.append(time.perf_counter() - t0)
            self.assertTrue(r["ok"], r)
        return out

    def test_slow_endpoint_does_not_raise_decide_latency(self):
        c = self.notifd.client()
        self.addCleanup(c.close)
        self.round_trips(c, "warm", 50)
        self.require_events()
        t0 = time.perf_counter()
        fast = self.round_trips(c, "f", 300)
        fast_total = time.perf_counter() - t0

        self.sink.set(status=200, sleep=2.0)
        # Measure only while a request is hanging at the sink.
        wait_for(lambda: self.sink.in_flight() == 0, what="the fast phase to finish")
        self.round_trips(c, "kick", 5)
        wait_for(lambda: self.sink.in_flight() == 1, what="a request hanging at the slow sink")
        slow = self.round_trips(c, "s", 300, budget=10 * fast_total + 2.0)

        fast_median, slow_median = statistics.median(fast), statistics.median(slow)
        self.assertLess(slow_median, 3 * fast_median + 0.005,
                        "decide median %.3f ms with a slow endpoint vs %.3f ms with a fast one"
                        % (slow_median * 1e3, fast_median * 1e3))
        # And the events of the slow phase still arrive once it speeds up.
        self.sink.set(status=200, sleep=0)
        self.wait_all_arrived(["s%d" % i for i in range(len(slow))], timeout=60)


class DeadLetterTest(EventsTestCase):
    def test_rejected_batch_goes_to_the_dead_letter_file(self):
        self.sink.set(status=400)
        rejected = [decide("m%d" % i, "r%d" % i) for i in range(10)]
        self.pipeline(rejected)
        dead = os.path.join(self.spool_dir, "dead-letter.ndjson")
        wait_for(lambda: os.path.exists(dead), timeout=5, what="the dead-letter file")

        def dead_opps():
            with open(dead, "rb") as f:
                return {json.loads(l)["opportunity"] for l in f.read().split(b"\n") if l.strip()}
        wait_for(lambda: dead_opps() == {r["opportunity"] for r in rejected},
                 what="every rejected event in the dead-letter file")
        self.assertTrue(all(r["status"] == 400 for r in self.sink.requests()))
        self.assertIn("rejected a batch", self.notifd.log_text())
        # The worker thread counts a batch after it has written it out.
        wait_for(lambda: self.metric("notifd_events_dead_lettered_total") == 10,
                 what="the dead-letter counter")

        # Delivery goes on, and a dead-lettered batch is not retried.
        n_requests = len(self.sink.requests())
        self.sink.set(status=200)
        later = [decide("m%d" % i, "ok%d" % i) for i in range(5)]
        self.pipeline(later)
        self.wait_all_arrived([r["opportunity"] for r in later])
        self.assertFalse({e["opportunity"] for e in self.sink.events()} & dead_opps())
        self.assertEqual(len(self.sink.requests()), n_requests + 1)


class SpoolLimitTest(EventsTestCase):
    sink_up = False
    # Room for a few batches on disk and a few in memory.
    events = {"spool_max_bytes": 8000, "queue_max": 40, "batch_max": 5}

    def test_full_spool_and_queue_drop_counted_and_logged_then_recover(self):
        reqs = [decide("m%d" % (i % 40), "x%d" % i) for i in range(200)]
        for i in range(0, 200, 10):
            self.pipeline(reqs[i:i + 10])
            time.sleep(0.02)
        wait_for(lambda: self.metric("notifd_events_dropped_total") > 0, what="drops")
        self.assertIn("EVENT SPOOL FULL", self.notifd.log_text())
        on_disk = sum(os.path.getsize(p) for p in segments(self.spool_dir))
        self.assertLessEqual(on_disk, 8000)
        self.assertEqual(self.metric("notifd_events_spool_bytes"), on_disk)
        dropped = self.metric("notifd_events_dropped_total")

        # Recovery: everything not counted as dropped arrives.
        self.sink.start()
        wait_for(lambda: not segments(self.spool_dir), what="the spool to drain")
        wait_for(lambda: self.metric("notifd_events_queue_depth") == 0, what="the queue to drain")
        arrived = set(self.by_opportunity(self.sink.events()))
        self.assertEqual(len(arrived) + dropped, 200,
                         "arrived %d + dropped %d != published 200" % (len(arrived), dropped))


def spool_event(opp):
    """One line as notifd writes it to a spool segment."""
    return json.dumps({"type": "decision", "member": "m", "channel": "push", "opportunity": opp,
                       "event_id": "%032x" % (0xabc000 + int(opp[1:]))},
                      separators=(",", ":")).encode()


def write_segment(spool_dir, seq, lines, newline_at_end=True):
    os.makedirs(spool_dir, exist_ok=True)
    data = b"\n".join(lines) + (b"\n" if newline_at_end else b"")
    with open(os.path.join(spool_dir, "events-%020d.ndjson" % seq), "wb") as f:
        f.write(data)


class SpoolReplayValidationTest(EventsTestCase):
    """A spool is read back as hostile input: each line must be one JSON
    object (within events.queue_max_bytes); the others go to the dead-letter
    file, one by one, and the valid lines around them are delivered. The
    sink validates like a strict receiver: one bad line fails a whole POST."""

    events = {"batch_max": 500, "queue_max_bytes": 1 << 20}

    def prepare(self):
        self.sink.set(validate=True)
        name = self._testMethodName
        if name == "test_garbage_line_is_dead_lettered_alone":
            self.valid = [spool_event("g%d" % i) for i in range(499)]
            self.bad = [b"\x00\xffnot json {\"type\": at all"]
            write_segment(self.spool_dir, 7, self.valid[:250] + self.bad + self.valid[250:])
        elif name == "test_oversized_and_torn_lines_are_dead_lettered":
            big = json.dumps({"type": "decision", "opportunity": "big",
                              "event_id": "f" * 32, "pad": "x" * (3 << 19)}).encode()  # 1.5 MiB, valid JSON
            torn = spool_event("t9999")[:40]
            self.valid = [spool_event("t%d" % i) for i in range(30)]
            self.bad = [big, torn]
            write_segment(self.spool_dir, 3, self.valid[:10] + [big] + self.valid[10:20] + [torn],
                          newline_at_end=False)
            # A whole last event without its newline is still an event.
            write_segment(self.spool_dir, 4, self.valid[20:], newline_at_end=False)

        elif name == "test_segment_larger_than_this_config_writes_is_quarantined":
            # 4 MiB (a segment) + 1 MiB (queue_max_bytes) at most; this one is 5.5 MiB.
            pad = "x" * (100 << 10)
            huge = [json.dumps({"type": "decision", "opportunity": "h%d" % i, "pad": pad,
                                "event_id": "%032x" % i}).encode() for i in range(56)]
            write_segment(self.spool_dir, 5, huge)
            self.valid = [spool_event("k%d" % i) for i in range(10)]
            self.bad = []
            write_segment(self.spool_dir, 6, self.valid)

    def dead_letters(self):
        try:
            with open(os.path.join(self.spool_dir, "dead-letter.ndjson"), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def check_replay(self):
        want = {json.loads(l)["opportunity"] for l in self.valid}
        got = self.wait_all_arrived(want)
        self.assertEqual(set(got), want, "only the valid lines reach the endpoint")
        wait_for(lambda: not segments(self.spool_dir), what="the replayed spool to be removed")
        self.assertEqual(self.dead_letters(), b"".join(l + b"\n" for l in self.bad),
                         "the dead-letter file must hold exactly the bad lines")
        self.assertTrue(all(r["status"] == 200 for r in self.sink.requests()),
                        "a batch with a bad line reached the endpoint")
        wait_for(lambda: self.metric("notifd_events_dead_lettered_total") == len(self.bad),
                 what="dead_lettered_total == %d" % len(self.bad))
        self.assertEqual(self.metric("notifd_events_dropped_total"), 0)
        if self.bad:
            self.assertIn("event spool lines are not events", self.notifd.log_text())

    def test_garbage_line_is_dead_lettered_alone(self):
        self.check_replay()

    def test_oversized_and_torn_lines_are_dead_lettered(self):
        self.check_replay()

    def test_segment_larger_than_this_config_writes_is_quarantined(self):
        self.check_replay()
        self.assertTrue(os.path.exists(os.path.join(
            self.spool_dir, "quarantine-events-%020d.ndjson" % 5)))
        self.assertIn("File too large", self.notifd.log_text())



class RssSampler(threading.Thread):
    """Records the highest VmRSS of a process until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.halt = pid, 0, threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                self.peak_kib = max(self.peak_kib, proc_rss_kib(self.pid))
            except OSError:  # the process is gone
                return
            time.sleep(0.01)

    def stop(self):
        self.halt.set()
        self.join(5)
        return self.peak_kib


def big_decide(opportunity):
    """A decide of about 37 KB whose event is about 64 KB (780 candidates)."""
    return {"op": "decide", "member": "m%d" % (hash(opportunity) % 50), "channel": "push",
            "opportunity": opportunity,
            "candidates": [{"id": "candidate-message-%04d" % i, "score": (i % 97) / 100.0}
                           for i in range(780)]}


class QueueBytesTest(EventsTestCase):
    """Big events and a slow endpoint: memory is bounded by
    events.queue_max_bytes, not by the event count (events.queue_max is far
    away here), the overflow goes to the spool, and every event arrives once
    the endpoint is fast again."""

    QUEUE_MAX_BYTES = 4 << 20
    events = {"queue_max_bytes": QUEUE_MAX_BYTES, "batch_max": 500, "flush_ms": 50,
              "timeout_ms": 20000}

    def delivered(self):
        """Opportunities at the sink (a regex: parsing 80 MB of JSON per poll is slow)."""
        try:
            with open(self.sink.received_path, "rb") as f:
                return set(re.findall(rb'"opportunity":"(q\d+)"', f.read()))
        except FileNotFoundError:
            return set()

    def test_slow_endpoint_and_64_kb_events_keep_memory_bounded_and_lose_nothing(self):
        warm = [big_decide("q%d" % i) for i in range(20)]
        self.pipeline(warm, chunk=10)
        self.require_events()
        wait_for(lambda: len(self.delivered()) == 20, what="the warm-up events")
        pid = self.notifd.proc.pid
        baseline_kib = proc_rss_kib(pid)
        sampler = RssSampler(pid)
        sampler.start()

        self.sink.set(status=200, sleep=4.0)
        reqs = [big_decide("q%d" % i) for i in range(20, 1220)]
        self.pipeline(reqs, chunk=20)
        wait_for(lambda: self.metric("notifd_events_queue_depth") < 100,
                 what="the queue to spill to the spool")
        self.assertEqual(self.metric("notifd_events_dropped_total"), 0)
        self.assertTrue(segments(self.spool_dir), "nothing was spooled")
        self.assertGreater(self.metric("notifd_events_spooled_total"), 0)
        self.assertLessEqual(self.metric("notifd_events_queue_bytes"), self.QUEUE_MAX_BYTES)

        self.sink.set(status=200, sleep=0)
        want = {b"q%d" % i for i in range(1220)}
        wait_for(lambda: self.delivered() == want, timeout=120, interval=0.5,
                 what="all 1220 events at the sink")
        wait_for(lambda: not segments(self.spool_dir), what="the replayed spool to be removed")
        peak_kib = sampler.stop()
        # In publish order (the event_id's second half counts publishes),
        # the spooled ones included.
        with open(self.sink.received_path, "rb") as f:
            ids = re.findall(rb'"event_id":"[0-9a-f]{16}([0-9a-f]{16})"', f.read())
        seen, order = set(), []
        for i in ids:
            if i not in seen:
                seen.add(i)
                order.append(int(i, 16))
        self.assertEqual(len(order), 1220)
        self.assertEqual(order, sorted(order), "events arrived out of publish order")
        self.assertEqual(self.metric("notifd_events_dropped_total"), 0)
        self.assertEqual(self.metric("notifd_events_queued_total"), 1220)
        # Memory: the queue (queue_max_bytes), a batch being written or sent
        # (an eighth of it), a spool segment being replayed (4 MiB plus a
        # batch), and slack for the allocator (free lists in two threads'
        # arenas): about 20 MiB here. Without the byte bound the 1200 events
        # (78 MB) all stay in memory: +108 MiB. Under AddressSanitizer
        # freed memory sits in its quarantine, and under a wrapper (valgrind)
        # the process is the wrapper's, so RSS says nothing there.
        bound_kib = (4 * self.QUEUE_MAX_BYTES + (16 << 20)) // 1024
        if os.environ.get("NOTIFD_SANITIZED") != "1" and not NOTIFD_WRAPPER:
            self.assertLess(peak_kib - baseline_kib, bound_kib,
                            "RSS grew from %d to %d KiB" % (baseline_kib, peak_kib))


if __name__ == "__main__":
    unittest.main()
