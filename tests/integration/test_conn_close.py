"""Connections end when their client is done: a producer that gives up
(sends a request, closes before the answer) or half-closes
(shutdown(SHUT_WR)) gets its connection closed once every reply it is owed
is written, not after limits.idle_timeout_s."""
import json
import socket
import struct
import unittest

from harness import NotifdTestCase, wait_for


def decide(i, member="m1", opportunity=None):
    return {"op": "decide", "id": i, "member": member, "channel": "push",
            "opportunity": opportunity or "o%d" % i,
            "candidates": [{"id": "msg-a", "score": 0.5}, {"id": "msg-b", "score": 0.7}]}


def line(obj):
    return json.dumps(obj).encode() + b"\n"


class ClientGoneTest(NotifdTestCase):
    # A small limit: connections that linger fill it, and a default idle
    # timeout (300 s) would never free them within the test.
    overrides = {"limits": {"max_connections": 50, "idle_timeout_s": 300}}

    def open_connections(self, watcher):
        return watcher.request({"op": "stats"})["connections"]["open"]

    def test_clients_that_close_before_the_answer_free_their_connections(self):
        watcher = self.client()
        baseline = self.open_connections(watcher)
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", self.notifd.port), timeout=5)
            if i % 4 == 3:
                # Some give up harder: five requests, then a reset (SO_LINGER
                # 0) while they are still in flight; their replies must find
                # the connection gone, not freed under them.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.sendall(b"".join(line(decide(i * 10 + k, member="gone%d" % (i % 20)))
                                   for k in range(5)))
            else:
                s.sendall(line(decide(i, member="gone%d" % (i % 20))))
            s.close()  # the producer's own timeout: it never reads the answer
        wait_for(lambda: self.open_connections(watcher) == baseline, timeout=5,
                 what="the given-up connections to close")
        # New clients are served, and the requests in flight when their
        # clients left were still decided and recorded.
        r = self.notifd.request(decide(1000, member="after"))
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["id"], 1000)
        decided = [k for k in self.redis.command("KEYS", "t:idem:{gone*") or []]
        self.assertGreater(len(decided), 0)
        self.assertTrue(self.notifd.health()["ok"])

    def test_half_closed_client_gets_every_reply_then_eof(self):
        s = socket.create_connection(("127.0.0.1", self.notifd.port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(line(decide(1)) + line({"op": "health", "id": 2}) + line(decide(3)))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)  # times out (and fails) if EOF never comes
            if not chunk:
                break
            data += chunk
        replies = [json.loads(l) for l in data.split(b"\n") if l]
        self.assertEqual([r["id"] for r in replies], [1, 2, 3])
        self.assertTrue(all(r["ok"] for r in replies), replies)
        self.assertTrue(data.endswith(b"\n"))

    def test_half_closed_client_with_nothing_pending_gets_eof_at_once(self):
        s = socket.create_connection(("127.0.0.1", self.notifd.port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(line({"op": "health", "id": 1}))
        f = s.makefile("rb")
        self.assertEqual(json.loads(f.readline())["id"], 1)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(f.read(), b"")


class HalfCloseUnderBackPressureTest(NotifdTestCase):
    # Far more requests than the bounds: notifd stops reading before it sees
    # the EOF, and must still answer all of them, then end the connection.
    overrides = {"limits": {"max_output_bytes": 8192, "max_pipeline": 64}}

    def test_every_request_before_the_half_close_is_answered_then_eof(self):
        n = 3000
        s = socket.create_connection(("127.0.0.1", self.notifd.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"".join(line({"op": "health", "id": i}) for i in range(n)))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        replies = [json.loads(l) for l in data.split(b"\n") if l]
        self.assertEqual([r["id"] for r in replies], list(range(n)))


if __name__ == "__main__":
    unittest.main()
