"""notifctl against a real notifd (and, to pin down the requests it builds,
against a recording fake server): output formats, auth, and exit codes
(0 ok, 1 server error, 2 usage, 3 no answer)."""
import json
import os
import socket
import subprocess
import threading
import unittest

from harness import Notifd, NotifdTestCase, Redis, wait_for
from opsutil import tool_path

NOTIFCTL = tool_path("notifctl")


def run(*args, stdin=None, timeout=30):
    return subprocess.run([NOTIFCTL, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)


class FakeServer:
    """Accepts one connection at a time, records each request line, and
    answers with `reply(request)` (a dict) or not at all when it is None."""

    def __init__(self, reply):
        self.reply = reply
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                f = conn.makefile("rwb")
                for line in f:
                    req = json.loads(line)
                    self.requests.append(req)
                    answer = self.reply(req)
                    if answer is None:
                        continue
                    f.write(json.dumps(answer).encode() + b"\n")
                    f.flush()

    def close(self):
        self.sock.close()


class AgainstNotifdTest(NotifdTestCase):
    def ctl(self, *args, **kw):
        return run("--port", str(self.notifd.port), *args, **kw)

    def test_health_readable(self):
        r = self.ctl("health")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertIn("status: ok", lines)
        self.assertIn("redis.state: ready", lines)
        self.assertIn("redis.ready: true", lines)
        self.assertFalse(any(l.startswith(("id:", "ok:")) for l in lines))

    def test_health_json_is_the_raw_response(self):
        r = self.ctl("--json", "health")
        self.assertEqual(r.returncode, 0, r.stderr)
        resp = json.loads(r.stdout)
        self.assertTrue(resp["ok"])
        self.assertEqual(resp["redis"]["state"], "ready")

    def test_stats(self):
        r = self.ctl("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("config_generation: 1", r.stdout.splitlines())
        self.assertTrue(any(l.startswith("connections.accepted: ") for l in r.stdout.splitlines()))
        self.assertTrue(any(l.startswith("requests.health.ok: ") for l in r.stdout.splitlines()))

    def test_options_may_follow_the_command(self):
        r = run("stats", "--json", "--port", str(self.notifd.port))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(json.loads(r.stdout)["ok"])

    def test_decide_reads_stdin(self):
        req = {"member": "ctl-1", "channel": "push", "opportunity": "o-1",
               "candidates": [{"id": "a", "score": 0.4}]}
        r = self.ctl("decide", "--ts", "1700000000", stdin=json.dumps(req))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(any(l.startswith("reason: ") for l in r.stdout.splitlines()), r.stdout)

    def test_server_errors_exit_1_with_code_and_message(self):
        # A decide without its fields is a bad_request.
        r = self.ctl("decide", stdin="{}")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"notifctl: decide failed: bad_request: \S")

    def test_explain_readable_and_json(self):
        self.redis.command("HSET", "t:plan:{ctl-x}", "version", 2, "source", "test",
                           "push_per_week", 3, "email_per_week", 1, "valid_until", 0)
        ts = 1795608000  # a Wednesday, 12:00 UTC
        args = ("explain", "ctl-x", "--channel", "push", "--ts", str(ts), "--candidates", "a,b")
        r = self.ctl(*args)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("explain: member ctl-x, channel push, at "
                                            "2026-11-25 12:00 UTC"), lines[0])
        self.assertIn("plan in force: stored plan v2 (source test), valid until it is replaced",
                      lines)
        self.assertTrue(any(l.startswith("budget (push): 0 sent this week of 3 planned")
                            for l in lines), r.stdout)
        self.assertTrue(any(l.startswith("caps: this week 0 sent of 3") for l in lines), r.stdout)
        self.assertIn("  a: never sent, eligible, utility 0.5", lines)
        self.assertIn("opt-outs: none", lines)
        self.assertTrue(any("<- the planner's choice" in l for l in lines), r.stdout)
        self.assertEqual(lines[-1], "(nothing was recorded)")
        self.assertFalse(any(l.lstrip().startswith("{") for l in lines))
        r = self.ctl("--json", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        resp = json.loads(r.stdout)
        self.assertEqual(resp["budget"]["sent_this_week"], 0)
        self.assertEqual([c["id"] for c in resp["candidates"]], ["a", "b"])
        # Nothing was recorded: no week hash, no idempotency key.
        self.assertEqual(self.redis.command("KEYS", "t:week:*"), [])
        self.assertEqual(self.redis.command("KEYS", "t:idem:*"), [])

    def test_bad_stdin_for_decide_is_usage(self):
        self.assertEqual(self.ctl("decide", stdin="not json").returncode, 2)
        self.assertEqual(self.ctl("decide", stdin="[1]").returncode, 2)


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
        self.token_path = token_path

    def ctl(self, *args):
        return run("--port", str(self.notifd.port), *args)

    def test_token_file_authenticates(self):
        r = self.ctl("--token-file", self.token_path, "health")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("version: ", r.stdout)

    def test_wrong_or_missing_token_is_a_server_error(self):
        wrong = os.path.join(self.notifd.dir, "wrong")
        with open(wrong, "w") as f:
            f.write("nope\n")
        r = self.ctl("--token-file", wrong, "health")
        self.assertEqual(r.returncode, 1)
        self.assertIn("unauthorized", r.stderr)
        r = self.ctl("health")
        self.assertEqual(r.returncode, 1)
        self.assertIn("unauthorized", r.stderr)

    def test_unreadable_token_file_is_usage(self):
        r = self.ctl("--token-file", os.path.join(self.notifd.dir, "absent"), "health")
        self.assertEqual(r.returncode, 2)


class RequestShapeTest(unittest.TestCase):
    """What each command sends, checked on a fake server so it does not
    depend on which ops this notifd implements."""

    def setUp(self):
        self.server = FakeServer(lambda req: {"id": req.get("id"), "ok": True, "done": 1})
        self.addCleanup(self.server.close)

    def ctl(self, *args, **kw):
        self.before = len(self.server.requests)
        return run("--port", str(self.server.port), *args, **kw)

    def last(self):
        """The request the last command sent: the first one recorded since
        it started (never an earlier command's, whatever the timing)."""
        wait_for(lambda: len(self.server.requests) > self.before, timeout=5,
                 what="the command's request at the fake server")
        return self.server.requests[self.before]

    def test_commands_build_the_documented_requests(self):
        cases = [
            (["plan", "m1"], {"op": "plan", "member": "m1"}),
            (["replan", "m1", "--ts", "1700000000"], {"op": "replan", "member": "m1",
                                                      "ts": 1700000000}),
            (["feedback", "m1", "email", "open", "--message", "msg-9", "--ts", "5"],
             {"op": "feedback", "member": "m1", "channel": "email", "event": "open",
              "message": "msg-9", "ts": 5}),
            (["planner-run", "--ts", "1700000000"], {"op": "planner_run", "ts": 1700000000}),
            (["planner-run"], {"op": "planner_run"}),
            (["health"], {"op": "health"}),
            (["stats"], {"op": "stats"}),
        ]
        for args, expected in cases:
            r = self.ctl(*args)
            self.assertEqual(r.returncode, 0, (args, r.stderr))
            self.assertEqual(r.stdout, "done: 1\n")
            sent = dict(self.last())
            self.assertIn("id", sent)
            sent.pop("id")
            self.assertEqual(sent, expected, args)

    def test_explain_builds_its_request(self):
        r = self.ctl("explain", "m1", "--channel", "email", "--ts", "7", "--candidates", "a,,b")
        self.assertEqual(r.returncode, 0, r.stderr)
        # An answer without the explain fields still prints (as "-").
        self.assertIn("explain: member -", r.stdout)
        sent = dict(self.last())
        sent.pop("id")
        self.assertEqual(sent, {"op": "explain", "member": "m1", "channel": "email", "ts": 7,
                                "candidates": [{"id": "a"}, {"id": "b"}]})
        self.assertEqual(self.ctl("explain", "m1").returncode, 0)
        sent = dict(self.last())
        sent.pop("id")
        self.assertEqual(sent, {"op": "explain", "member": "m1"})

    def test_decide_adds_op_and_keeps_the_request(self):
        req = {"member": "m", "channel": "push", "opportunity": "o", "candidates": [],
               "op": "something-else"}
        r = self.ctl("decide", stdin=json.dumps(req))
        self.assertEqual(r.returncode, 0, r.stderr)
        sent = self.last()
        self.assertEqual(sent["op"], "decide")
        self.assertEqual(sent["member"], "m")
        self.assertEqual(sent["candidates"], [])

    def test_unknown_op_answer_is_explained_and_exits_1(self):
        self.server.reply = lambda req: {
            "id": req.get("id"), "ok": False,
            "error": {"code": "unknown_op", "message": 'unknown op "replan"'}}
        r = self.ctl("replan", "m1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("replan failed: unknown_op: unknown op", r.stderr)
        self.assertIn('does not implement op "replan"', r.stderr)
        r = self.ctl("--json", "replan", "m1")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stdout)["error"]["code"], "unknown_op")

    def test_nested_output_is_flattened(self):
        self.server.reply = lambda req: {"id": req.get("id"), "ok": True,
                                         "plan": {"per_week": {"push": 2}, "source": "x"},
                                         "tags": ["a", "b"], "items": [{"k": 1}], "none": None}
        r = self.ctl("plan", "m")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), ["plan.per_week.push: 2", "plan.source: x",
                                                 "tags: a, b", "items[0].k: 1", "none: null"])

    def test_no_answer_within_the_timeout_exits_3(self):
        self.server.reply = lambda req: None
        r = self.ctl("--timeout-ms", "300", "health")
        self.assertEqual(r.returncode, 3)
        self.assertIn("timed out", r.stderr)

    def test_a_reply_that_is_not_json_exits_3(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        self.addCleanup(srv.close)

        def answer():
            conn, _ = srv.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        r = run("--port", str(srv.getsockname()[1]), "health")
        self.assertEqual(r.returncode, 3)
        self.assertIn("not a JSON object", r.stderr)


class UsageTest(unittest.TestCase):
    def test_dead_port_exits_3(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, never listening: refused
            r = run("--port", str(port), "health")
        self.assertEqual(r.returncode, 3)
        self.assertIn("cannot connect", r.stderr)

    def test_usage_errors_exit_2(self):
        for args in (["bogus"], [], ["plan"], ["plan", "a", "b"], ["--port", "0", "health"],
                     ["--port", "x", "health"], ["--timeout-ms", "-1", "health"],
                     ["--no-such-option", "health"], ["health", "--ts", "5"],
                     ["replan", "m", "--ts", "yesterday"], ["plan", "m", "--message", "x"],
                     ["health", "--port"], ["explain"], ["plan", "m", "--channel", "push"],
                     ["replan", "m", "--candidates", "a"]):
            r = run(*args)
            self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))
            self.assertTrue(r.stderr.startswith("notifctl: "), (args, r.stderr))

    def test_help_lists_every_command(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        for cmd in ("health", "stats", "plan MEMBER", "replan MEMBER", "decide", "feedback",
                    "planner-run", "explain MEMBER", "--channel", "--json", "--token-file", "--timeout-ms"):
            self.assertIn(cmd, r.stdout)

    def test_version(self):
        r = run("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^notifctl \d+\.\d+\.\d+\n$")


if __name__ == "__main__":
    unittest.main()
