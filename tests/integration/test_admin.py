"""The admin HTTP endpoint against a real notifd and redis-server: /metrics
parsed line by line in the Prometheus text format, /healthz, /readyz
following Redis, and the endpoint's answers to bad requests."""
import math
import signal
import socket
import unittest

from harness import Notifd, NotifdTestCase, Redis, wait_for
from opsutil import histogram_series, http_request, parse_exposition, raw_http, sample

REQUIRED_FAMILIES = {
    "notifd_requests_total": "counter",
    "notifd_errors_total": "counter",
    "notifd_request_duration_seconds": "histogram",
    "notifd_decisions_total": "counter",
    "notifd_decide_duration_seconds": "histogram",
    "notifd_redis_rtt_seconds": "histogram",
    "notifd_redis_errors_total": "counter",
    "notifd_redis_timeouts_total": "counter",
    "notifd_redis_reconnects_total": "counter",
    "notifd_redis_ready": "gauge",
    "notifd_connections": "gauge",
    "notifd_config_generation": "gauge",
    "notifd_uptime_seconds": "gauge",
    "notifd_planner_passes_started_total": "counter",
    "notifd_planner_members_planned_total": "counter",
    "notifd_events_queued_total": "counter",
    "notifd_events_sent_total": "counter",
    "notifd_events_spool_bytes": "gauge",
    "notifd_events_dropped_total": "counter",
    "notifd_feedback_queued_total": "counter",
    "notifd_feedback_replayed_total": "counter",
    "notifd_feedback_refused_total": "counter",
    "notifd_feedback_spool_bytes": "gauge",
}


class AdminTestCase(NotifdTestCase):
    def setUp(self):
        super().setUp()
        # The harness saw Redis ready through the protocol; the admin thread
        # sees the loop's state once published (every 250 ms).
        wait_for(lambda: self.readyz()[0] == 200, what="/readyz 200 after start")

    def get(self, path, method="GET"):
        return http_request(self.notifd.admin_port, path, method=method)

    def scrape(self):
        status, headers, body = self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("version=0.0.4", headers.get("content-type", ""))
        return parse_exposition(body)

    def readyz(self):
        return self.get("/readyz")


class MetricsTest(AdminTestCase):
    def test_every_line_parses_and_every_family_has_help_and_type(self):
        fams = self.scrape()  # parse_exposition asserts HELP/TYPE per sample
        for name, fam in fams.items():
            self.assertTrue(name.startswith("notifd_"), name)
            self.assertIsNotNone(fam.type, name)
            self.assertTrue(fam.help, "%s has an empty HELP" % name)
            if fam.type == "counter":
                self.assertTrue(name.endswith("_total"), name)
        for name, kind in REQUIRED_FAMILIES.items():
            self.assertIn(name, fams)
            self.assertEqual(fams[name].type, kind, name)

    def test_histograms_are_cumulative_and_inf_equals_count(self):
        c = self.client()
        c.pipeline([{"op": "health", "id": i} for i in range(20)] + [{"op": "nope"}])
        fams = self.scrape()
        histograms = [f for f in fams.values() if f.type == "histogram"]
        self.assertGreaterEqual(len(histograms), 3)
        for fam in histograms:
            for labels, h in histogram_series(fam).items():
                les = [le for le, _ in h["buckets"]]
                values = [v for _, v in h["buckets"]]
                what = "%s%s" % (fam.name, dict(labels))
                self.assertEqual(les, sorted(les), what)
                self.assertEqual(len(set(les)), len(les), what)
                self.assertEqual(les[-1], math.inf, what)
                self.assertEqual(values, sorted(values), "%s not cumulative" % what)
                self.assertEqual(values[-1], h["count"], what)
                self.assertIsNotNone(h["sum"], what)
                self.assertGreaterEqual(h["sum"], 0, what)
                if h["count"] > 0:  # durations and sizes of real requests
                    self.assertGreater(h["sum"], 0, what)
        health = sample(fams, "notifd_request_duration_seconds_count", op="health")
        self.assertGreaterEqual(health, 20)

    def test_request_and_error_counters_move_by_exactly_the_requests_made(self):
        before = self.scrape()
        c = self.client()
        c.pipeline([{"op": "health"}] * 5 + [{"op": "stats"}] * 2 + [{"op": "fly"}] * 3)
        c.send_raw(b"not json\n")
        c.read_line()
        after = self.scrape()

        def delta(name, **labels):
            return sample(after, name, **labels) - sample(before, name, **labels)

        self.assertEqual(delta("notifd_requests_total", op="health", outcome="ok"), 5)
        self.assertEqual(delta("notifd_requests_total", op="stats", outcome="ok"), 2)
        self.assertEqual(delta("notifd_requests_total", op="unknown", outcome="error"), 4)
        self.assertEqual(delta("notifd_errors_total", code="unknown_op"), 3)
        self.assertEqual(delta("notifd_errors_total", code="bad_request"), 1)
        self.assertEqual(delta("notifd_request_duration_seconds_count", op="health"), 5)

    def test_loop_state_is_published(self):
        c = self.client()
        c.request({"op": "health"})
        # The loop publishes connection and Redis state every 250 ms.
        wait_for(lambda: sample(self.scrape(), "notifd_connections") >= 1,
                 what="the open connection in notifd_connections")
        fams = self.scrape()
        self.assertEqual(sample(fams, "notifd_config_generation"), 1)
        self.assertEqual(sample(fams, "notifd_redis_ready"), 1)
        self.assertEqual(sample(fams, "notifd_redis_state", state="ready"), 1)
        self.assertGreaterEqual(sample(fams, "notifd_connections_accepted_total"), 1)
        # The handshake's PING went through the store: one round trip at least.
        self.assertGreaterEqual(sample(fams, "notifd_redis_rtt_seconds_count"), 1)
        wait_for(lambda: sample(self.scrape(), "notifd_redis_commands_total") >= 1,
                 what="published Redis command count")

    def test_reload_moves_config_generation(self):
        self.notifd.signal(signal.SIGHUP)
        wait_for(lambda: sample(self.scrape(), "notifd_config_generation") == 2,
                 what="config generation 2 after SIGHUP")
        self.assertEqual(sample(self.scrape(), "notifd_config_reloads_total", result="ok"), 1)

    def test_channel_labels_come_from_the_config(self):
        fams = self.scrape()
        channels = {l["channel"] for _, l, _ in fams["notifd_decisions_total"].samples}
        self.assertEqual(channels, {"push", "email", "in_app"})
        reasons = {l["reason"] for _, l, _ in fams["notifd_decisions_total"].samples}
        self.assertIn("paced_skip", reasons)
        modes = {l["mode"] for _, l, _ in fams["notifd_decisions_total"].samples}
        self.assertEqual(modes, {"hierarchical", "threshold"})

    def test_a_decision_is_counted_once(self):
        req = {"op": "decide", "member": "m-metrics", "channel": "push", "opportunity": "o-1",
               "ts": 1700000000, "candidates": [{"id": "a", "score": 0.5}]}
        before = self.scrape()
        r = self.client().request(req)
        self.assertTrue(r["ok"], r)
        after = self.scrape()

        def total(fams):
            return sum(v for _, l, v in fams["notifd_decisions_total"].samples
                       if l["channel"] == "push")

        self.assertEqual(total(after) - total(before), 1)
        mode = r.get("mode", "hierarchical")
        self.assertEqual(
            sample(after, "notifd_decide_duration_seconds_count", mode=mode)
            - sample(before, "notifd_decide_duration_seconds_count", mode=mode), 1)
        self.assertEqual(sample(after, "notifd_metrics_invalid_observations_total"), 0)


class HealthTest(AdminTestCase):
    def test_healthz_is_200(self):
        status, headers, body = self.get("/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body, "ok\n")
        self.assertEqual(headers.get("cache-control"), "no-store")

    def test_readyz_follows_redis(self):
        status, _, body = self.readyz()
        self.assertEqual((status, body), (200, "ready\n"))
        self.redis.stop()
        wait_for(lambda: self.readyz()[0] == 503, what="/readyz 503 while Redis is down")
        status, _, body = self.readyz()
        self.assertIn("redis not ready", body)
        self.assertEqual(sample(self.scrape(), "notifd_redis_ready"), 0)
        self.assertEqual(sample(self.scrape(), "notifd_ready"), 0)
        # /healthz stays 200: the process still serves, it only cannot decide well.
        self.assertEqual(self.get("/healthz")[0], 200)
        self.redis.start()
        wait_for(lambda: self.readyz()[0] == 200, what="/readyz 200 after Redis returns")
        wait_for(lambda: sample(self.scrape(), "notifd_redis_reconnects_total") >= 1,
                 what="reconnect counted")
        self.assertGreaterEqual(sample(self.scrape(), "notifd_redis_disconnects_total"), 1)

    def test_head_is_served_without_a_body(self):
        status, _, body = self.get("/readyz", method="HEAD")
        self.assertEqual((status, body), (200, ""))


class BadRequestTest(AdminTestCase):
    def test_unknown_path_is_404(self):
        status, _, body = self.get("/nope")
        self.assertEqual(status, 404)
        self.assertIn("/metrics", body)
        self.assertEqual(self.get("/metrics/extra")[0], 404)

    def test_non_get_is_405_with_allow(self):
        status, headers, _ = http_request(self.notifd.admin_port, "/metrics", method="POST",
                                          body="x" * 1000)
        self.assertEqual(status, 405)
        self.assertEqual(headers.get("allow"), "GET, HEAD")
        self.assertEqual(self.get("/healthz", method="DELETE")[0], 405)

    def test_garbage_and_oversized_requests_are_refused_and_the_endpoint_survives(self):
        out = raw_http(self.notifd.admin_port, b"\x00\x01 garbage\r\n\r\n")
        self.assertTrue(out == b"" or out.startswith(b"HTTP/1.1 400"), out[:80])
        big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 64 * 1024 + b"\r\n\r\n"
        out = raw_http(self.notifd.admin_port, big)
        status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.") else 0
        self.assertTrue(out == b"" or 400 <= status < 500, out[:80])
        self.assertEqual(self.get("/healthz")[0], 200)
        # The producer protocol never noticed.
        self.assertTrue(self.client().request({"op": "health"})["ok"])


def hold_idle(port, n):
    """n connections to the admin port that never send a byte."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]


class IdleConnectionsTest(AdminTestCase):
    # Monitoring agents, a leaky scraper or a local script that opens and
    # forgets connections all come from the same (loopback) address as the
    # probes: a per-address limit below the total would starve the probes.
    def test_probes_are_served_beside_twenty_idle_local_connections(self):
        held = hold_idle(self.notifd.admin_port, 20)
        self.addCleanup(lambda: [s.close() for s in held])
        status, _, body = self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("notifd_connections", body)
        status, _, body = self.readyz()
        self.assertEqual((status, body), (200, "ready\n"))
        self.assertEqual(self.get("/healthz")[0], 200)


class IdleConnectionsReapedTest(AdminTestCase):
    overrides = {"limits": {"admin_max_connections": 8, "admin_idle_timeout_s": 1}}

    def test_a_full_endpoint_reaps_idle_connections_and_serves_probes_again(self):
        held = hold_idle(self.notifd.admin_port, 8)
        self.addCleanup(lambda: [s.close() for s in held])
        # A probe arriving while every place is taken waits in the listen
        # backlog, is not refused, and is served once an idle one is reaped.
        self.assertEqual(self.readyz()[0], 200)
        # Every idle connection is closed by the endpoint after the timeout...
        for s in held:
            s.settimeout(5)
            self.assertEqual(s.recv(1), b"")
        # ... and the probes are served at once again.
        wait_for(self._ok, timeout=5, what="/readyz and /metrics after the idle ones were reaped")

    def _ok(self):
        try:
            return self.readyz()[0] == 200 and self.get("/metrics")[0] == 200
        except OSError:
            return False


class LifecycleTest(unittest.TestCase):
    def setUp(self):
        self.redis = Redis().start()
        self.addCleanup(self.redis.close)

    def test_admin_listen_null_disables_the_endpoint(self):
        n = Notifd(self.redis.port, {"admin_listen": None})
        self.addCleanup(n.close)
        n.start()
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", n.admin_port), timeout=2).close()
        self.assertTrue(n.health()["ok"])
        n.stop()
        self.assertEqual(n.proc.returncode, 0)

    def test_admin_port_taken_fails_startup_with_exit_1(self):
        n = Notifd(self.redis.port)
        self.addCleanup(n.close)
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", n.admin_port))
        blocker.listen(1)
        try:
            n.start(wait_ready=False)
        except AssertionError:
            pass  # it exited before the producer port could be seen
        self.assertEqual(n.wait(), 1)
        self.assertIn("cannot start admin endpoint", n.log_text())

    def test_clean_stop_with_the_endpoint_running(self):
        n = Notifd(self.redis.port)
        self.addCleanup(n.close)
        n.start()
        self.assertEqual(http_request(n.admin_port, "/metrics")[0], 200)
        n.stop()
        self.assertEqual(n.proc.returncode, 0)


if __name__ == "__main__":
    unittest.main()
