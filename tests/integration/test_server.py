"""The foundation against a real redis-server and the real binary: framing,
errors, pipelining, back-pressure, limits, auth, reload, stop, reconnect."""
import json
import os
import signal
import socket
import time
import unittest

from harness import Client, Notifd, NotifdTestCase, Redis, wait_for


class ProtocolTest(NotifdTestCase):
    def test_health_reports_ready_redis_and_echoes_id(self):
        r = self.client().request({"op": "health", "id": "h1"})
        self.assertEqual(r["id"], "h1")
        self.assertTrue(r["ok"])
        self.assertEqual(r["status"], "ok")
        self.assertEqual(r["redis"]["state"], "ready")
        self.assertIn("version", r)

    def test_malformed_json_is_bad_request_and_connection_survives(self):
        c = self.client()
        c.send_raw(b'{"op": "health", \n')
        r = c.read_line()
        self.assertFalse(r["ok"])
        self.assertEqual(r["error"]["code"], "bad_request")
        self.assertIn("JSON", r["error"]["message"])
        self.assertTrue(c.request({"op": "health", "id": 2})["ok"])

    def test_non_object_and_missing_op_are_bad_request(self):
        c = self.client()
        self.assertEqual(c.request([1, 2])["error"]["code"], "bad_request")
        r = c.request({"id": 7})
        self.assertEqual(r["error"]["code"], "bad_request")
        self.assertEqual(r["id"], 7)

    def test_unknown_op(self):
        r = self.client().request({"op": "fly", "id": 3})
        self.assertEqual(r["error"]["code"], "unknown_op")
        self.assertEqual(r["id"], 3)

    def test_invalid_utf8_is_bad_request(self):
        c = self.client()
        c.send_raw(b'{"op":"health","id":"\xff\xfe"}\n')
        self.assertEqual(c.read_line()["error"]["code"], "bad_request")
        self.assertTrue(c.request({"op": "health"})["ok"])

    def test_overlong_line_then_good_line_on_same_connection(self):
        c = self.client()
        c.send_raw(b'{"op":"health","pad":"' + b"x" * 70000 + b'"}\n')
        c.send_raw(b'{"op":"health","id":"after"}\r\n')
        r1 = c.read_line()
        self.assertEqual(r1["error"]["code"], "line_too_long")
        r2 = c.read_line()
        self.assertEqual(r2["id"], "after")
        self.assertTrue(r2["ok"])

    def test_overlong_line_sent_in_small_pieces(self):
        c = self.client()
        for _ in range(80):
            c.send_raw(b"y" * 1000)
        c.send_raw(b'\n{"op":"health","id":1}\n')
        self.assertEqual(c.read_line()["error"]["code"], "line_too_long")
        self.assertEqual(c.read_line()["id"], 1)

    def test_two_thousand_pipelined_requests_answered_in_order(self):
        c = self.client()
        reqs = []
        for i in range(2000):
            op = ["health", "stats", "nope"][i % 3]
            reqs.append({"op": op, "id": i})
        replies = c.pipeline(reqs)
        self.assertEqual([r["id"] for r in replies], list(range(2000)))
        self.assertTrue(all(r["ok"] == (i % 3 != 2) for i, r in enumerate(replies)))

    def test_other_clients_unaffected_by_a_bad_client(self):
        bad = self.client()
        bad.send_raw(b"\x00\x01garbage\n" * 50)
        good = self.client()
        self.assertTrue(good.request({"op": "health"})["ok"])

    def test_stats_counts_requests_and_errors(self):
        c = self.client()
        c.request({"op": "health"})
        c.request({"op": "nope"})
        s = c.request({"op": "stats"})
        self.assertTrue(s["ok"])
        self.assertGreaterEqual(s["requests"]["health"]["ok"], 1)
        self.assertGreaterEqual(s["errors"]["unknown_op"], 1)
        self.assertGreaterEqual(s["connections"]["open"], 1)


class BackPressureTest(NotifdTestCase):
    overrides = {"limits": {"max_output_bytes": 8192, "max_pipeline": 64}}

    def test_client_that_does_not_read_is_paused_not_buffered(self):
        # A small send buffer, set before connecting, keeps the flood that
        # fills the kernel's buffers (and the replies owed for it) small.
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        slow.connect(("127.0.0.1", self.notifd.port))
        slow.setblocking(False)
        line = b'{"op":"stats"}\n'
        chunk = line * 256
        pending = b""
        sent = 0
        blocked = False
        deadline = time.monotonic() + 20
        # Keep writing until the kernel refuses more: notifd stopped reading.
        while time.monotonic() < deadline and not blocked:
            pending = pending or chunk
            try:
                n = slow.send(pending)
                sent += n
                pending = pending[n:]
            except BlockingIOError:
                time.sleep(0.2)
                try:
                    n = slow.send(pending)
                    sent += n
                    pending = pending[n:]
                except BlockingIOError:
                    blocked = True
        self.assertTrue(blocked, "notifd kept reading a client that never reads")
        slow.setblocking(True)
        s = self.notifd.request({"op": "stats"})
        self.assertGreaterEqual(s["connections"]["read_pauses"], 1)
        # The paused client still gets every reply once it reads.
        slow.settimeout(30)
        expected = sent // len(line)  # a trailing partial line gets no reply
        got = b""
        while got.count(b"\n") < expected:
            chunk = slow.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        self.assertEqual(got.count(b"\n"), expected)
        slow.close()


    def test_stop_with_more_unread_than_the_bound_ends_in_eof_not_a_reset(self):
        # Requests until the socket is full, against a bound of 64 in flight:
        # at SIGTERM most are still unread. notifd answers what it has read, then
        # must end the connection with FIN and discard the rest: closing
        # over unread data would send a reset, and the client would lose
        # the replies it had not read yet.
        c = self.notifd.client()
        c.sock.setblocking(False)
        pending, blocked, i = b"", 0, 0
        deadline = time.monotonic() + 20
        # Write until the kernel takes no more twice in a row: notifd
        # stopped reading.
        while blocked < 2 and time.monotonic() < deadline:
            if not pending:
                pending = b"".join(b'{"op":"health","id":%d}\n' % n for n in range(i, i + 500))
                i += 500
            try:
                pending = pending[c.sock.send(pending):]
                blocked = 0
            except BlockingIOError:
                blocked += 1
                time.sleep(0.2)
        self.assertEqual(blocked, 2, "notifd kept reading")
        c.sock.setblocking(True)
        c.sock.settimeout(30)
        self.notifd.signal(signal.SIGTERM)
        replies = []
        with self.assertRaises(EOFError):  # a reset would raise ConnectionResetError
            while True:
                replies.append(c.read_line())
        self.assertGreater(len(replies), 0)
        self.assertLess(len(replies), i)
        self.assertEqual([r["id"] for r in replies], list(range(len(replies))))
        self.assertEqual(self.notifd.wait(), 0)


class LimitsTest(NotifdTestCase):
    overrides = {"limits": {"max_connections": 3, "idle_timeout_s": 1}}

    def test_connections_over_the_limit_are_refused_with_unavailable(self):
        held = [self.client() for _ in range(3)]
        for c in held:
            self.assertTrue(c.request({"op": "health"})["ok"])
        extra = Client(self.notifd.port)
        r = extra.read_line()
        self.assertEqual(r["error"]["code"], "unavailable")
        extra.close()

    def test_idle_connection_is_closed(self):
        c = self.client()
        self.assertTrue(c.request({"op": "health"})["ok"])
        time.sleep(2.5)
        with self.assertRaises((EOFError, ConnectionResetError)):
            c.request({"op": "health"})


class AuthTest(unittest.TestCase):
    def setUp(self):
        self.redis = Redis().start()
        self.addCleanup(self.redis.close)
        self.notifd = Notifd(self.redis.port)
        self.addCleanup(self.notifd.close)
        token_path = os.path.join(self.notifd.dir, "token")
        with open(token_path, "w") as f:
            f.write("s3cret-token\n")
        self.notifd.config["auth_token_file"] = token_path
        self.notifd.start(wait_ready=False)

    def test_first_line_must_authenticate(self):
        c = self.notifd.client()
        r = c.request({"op": "health", "id": 1})
        self.assertEqual(r["error"]["code"], "unauthorized")
        with self.assertRaises((EOFError, ConnectionResetError)):
            c.read_line()

    def test_wrong_token_is_refused_and_closed(self):
        c = self.notifd.client()
        self.assertEqual(c.request({"op": "auth", "token": "s3cret-tokeX"})["error"]["code"],
                         "unauthorized")
        with self.assertRaises((EOFError, ConnectionResetError)):
            c.read_line()

    def test_right_token_opens_the_connection(self):
        c = self.notifd.client()
        self.assertTrue(c.request({"op": "auth", "token": "s3cret-token"})["ok"])
        self.assertTrue(c.request({"op": "health"})["ok"])
        self.assertNotIn("s3cret", self.notifd.log_text())


class LifecycleTest(unittest.TestCase):
    def setUp(self):
        self.redis = Redis().start()
        self.addCleanup(self.redis.close)
        self.notifd = Notifd(self.redis.port)
        self.addCleanup(self.notifd.close)
        self.notifd.start()

    def generation(self):
        return self.notifd.health()["config_generation"]

    def test_sighup_with_good_file_reloads(self):
        self.assertEqual(self.generation(), 1)
        self.notifd.config["log_level"] = "warn"
        self.notifd.write_config()
        self.notifd.signal(signal.SIGHUP)
        wait_for(lambda: self.generation() == 2, what="generation 2")

    def test_sighup_with_broken_file_keeps_running_config(self):
        self.notifd.write_config(raw='{"listen": "127.0.0.1:1", "redis": {"prot": 1}, "limits": {"max_line_bytes": "big"}}')
        self.notifd.signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in self.notifd.log_text(), what="rejection logged")
        log = self.notifd.log_text()
        self.assertIn("redis.prot: unknown key", log)
        self.assertIn("limits.max_line_bytes", log)
        self.assertEqual(self.generation(), 1)
        s = self.notifd.request({"op": "stats"})
        self.assertEqual(s["reloads"]["failed"], 1)

    def test_sigterm_exits_zero(self):
        c = self.notifd.client()
        self.assertTrue(c.request({"op": "health"})["ok"])
        self.notifd.signal(signal.SIGTERM)
        self.assertEqual(self.notifd.wait(), 0)

    def test_sigterm_answers_requests_already_sent(self):
        c = self.notifd.client()
        c.sock.sendall(b"".join(b'{"op":"stats","id":%d}\n' % i for i in range(200)))
        self.notifd.signal(signal.SIGTERM)
        ids = [c.read_line()["id"] for _ in range(200)]
        self.assertEqual(ids, list(range(200)))
        self.assertEqual(self.notifd.wait(), 0)

    def test_redis_restart_reconnects(self):
        self.redis.stop()
        wait_for(lambda: not self.notifd.health()["redis"]["ready"], what="redis not ready")
        self.assertEqual(self.notifd.health()["status"], "degraded")
        self.redis.start()
        wait_for(lambda: self.notifd.health()["redis"]["ready"], what="reconnect")
        s = self.notifd.request({"op": "stats"})
        self.assertGreaterEqual(s["redis"]["reconnects"], 1)


class CommandLineTest(unittest.TestCase):
    def run_notifd(self, *args):
        import subprocess
        from harness import NOTIFD_BIN
        return subprocess.run([NOTIFD_BIN, *args], capture_output=True, text=True, timeout=10)

    def test_check_config_reports_every_problem_and_exits_2(self):
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"listen": "nohost", "redis": {"port": 0}, "typo_key": 1}, f)
        r = self.run_notifd("-c", f.name, "--check-config")
        os.unlink(f.name)
        self.assertEqual(r.returncode, 2)
        self.assertIn("listen:", r.stderr)
        self.assertIn("redis.port:", r.stderr)
        self.assertIn("typo_key: unknown key", r.stderr)

    def test_check_config_accepts_the_default_config(self):
        from harness import ROOT
        r = self.run_notifd("-c", os.path.join(ROOT, "config", "notifd.json"), "--check-config")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_usage_errors_exit_2_and_version_exits_0(self):
        self.assertEqual(self.run_notifd().returncode, 2)
        self.assertEqual(self.run_notifd("--bogus").returncode, 2)
        r = self.run_notifd("--version")
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("notifd "))


if __name__ == "__main__":
    unittest.main()
