"""What notifd reads back from Redis is not trusted: a retried opportunity's
stored answer (P idem:{M}:<opportunity>) is replayed only if it is one JSON
object on one line. Whatever else is stored there, each request gets exactly
one reply line, in order."""
import json
import socket
import unittest

from harness import NotifdTestCase
from opsutil import http_request, parse_exposition, sample

CANDIDATES = [{"id": "msg-a", "score": 0.4}, {"id": "msg-b", "score": 0.8}]

CORRUPT = {
    "newline_then_a_forged_reply": b'{"send":false}\n{"id":"forged","ok":true,"send":true}',
    "not_json": b"not json at all",
    "json_array": b'["send", true]',
    "two_objects_on_one_line": b'{"send":false}{"send":true}',
    "the_reply_s_own_members": b'{"id":"forged","ok":true,"send":true}',
    "invalid_utf8": b'{"send":false,"message":"\xff\xfe"}',
    "carriage_return_and_nul": b'{"send":false,\r"x":"\x00"}',
    "one_megabyte": b'{"send":false,"pad":"' + b"x" * (1 << 20) + b'"}',
}


def decide(i, member, opportunity):
    return {"op": "decide", "id": i, "member": member, "channel": "push",
            "opportunity": opportunity, "candidates": CANDIDATES}


class CorruptStoredAnswerTest(NotifdTestCase):
    def read_lines(self, sock, n):
        """Exactly n lines, then checks nothing more is waiting."""
        f = sock.makefile("rb")
        lines = [f.readline() for _ in range(n)]
        for l in lines:
            self.assertTrue(l.endswith(b"\n"), l[:200])
        return [json.loads(l) for l in lines], f

    def test_each_request_gets_one_line_whatever_the_stored_answer(self):
        for k, (name, value) in enumerate(sorted(CORRUPT.items())):
            with self.subTest(stored=name):
                member = "victim%d" % k
                self.redis.command("SET", "t:idem:{%s}:o1" % member, value)
                s = socket.create_connection(("127.0.0.1", self.notifd.port), timeout=10)
                self.addCleanup(s.close)
                batch = [decide(1, member, "o1"), decide(2, "bystander%d" % k, "o1"),
                         decide(3, member, "o2")]
                s.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in batch))
                replies, f = self.read_lines(s, 3)
                self.assertEqual([r["id"] for r in replies], [1, 2, 3])
                self.assertFalse(replies[0]["ok"])
                self.assertEqual(replies[0]["error"]["code"], "internal")
                self.assertIn("stored answer for this opportunity is corrupt",
                              replies[0]["error"]["message"])
                self.assertNotIn("forged", json.dumps(replies))
                for r in replies[1:]:
                    self.assertTrue(r["ok"], r)
                    self.assertIn(r["reason"], ("send", "paced_skip", "no_candidates",
                                                "cap_reached", "quiet_hours", "all_filtered"))
                # The connection is still in step: the next reply is the next request's.
                s.sendall(b'{"op":"health","id":4}\n')
                self.assertEqual(json.loads(f.readline())["id"], 4)
                # The corrupt record is left alone: notifd did not overwrite it.
                self.assertEqual(self.redis.command("STRLEN", "t:idem:{%s}:o1" % member),
                                 len(value))
        status, _, body = http_request(self.notifd.admin_port, "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(sample(parse_exposition(body), "notifd_stored_answers_corrupt_total"),
                         len(CORRUPT))
        self.assertIn("stored answer is corrupt", self.notifd.log_text())

    def test_a_sound_stored_answer_is_still_replayed(self):
        c = self.client()
        first = c.request(decide(1, "sound", "o1"))
        self.assertTrue(first["ok"], first)
        again = c.request(decide(2, "sound", "o1"))
        self.assertEqual(again["id"], 2)
        self.assertTrue(again["ok"], again)
        self.assertTrue(again["duplicate"])
        self.assertEqual(again["send"], first["send"])


if __name__ == "__main__":
    unittest.main()
