"""config/notifd.service and notifd's side of the systemd contract.

- The unit is checked by `systemd-analyze verify` and `systemd-analyze
  security --offline=yes` (exposure 2.0 or lower). systemd-analyze is
  required (scripts/test.sh installs the `systemd` package): without it
  these tests fail, they do not skip.
- test_systemd_nice.py checks that the unit lets planner.nice work.
- The notify protocol is checked without systemd: notifd runs with
  NOTIFY_SOCKET pointing at a datagram socket this test reads, so READY=1,
  RELOADING=1 ... READY=1, STOPPING=1 and WATCHDOG=1 are seen as systemd
  would see them.
- `cmake --install` (with DESTDIR) lays out binary, config and unit.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

from harness import NOTIFD_BIN, Notifd, Redis, wait_for
from opsutil import ROOT

UNIT = os.path.join(ROOT, "config", "notifd.service")
ANALYZE = shutil.which("systemd-analyze")


def unit_settings():
    """{key: [values]} of the [Service] section."""
    settings = {}
    section = None
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]":
                k, _, v = line.partition("=")
                settings.setdefault(k, []).append(v)
    return settings


class UnitContentTest(unittest.TestCase):
    def test_notify_watchdog_reload_and_user(self):
        s = unit_settings()
        self.assertEqual(s["Type"], ["notify"])
        self.assertEqual(s["WatchdogSec"], ["30s"])
        self.assertEqual(s["ExecStart"], ["/usr/bin/notifd -c /etc/notifd/notifd.json"])
        self.assertEqual(s["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        self.assertTrue(s.get("DynamicUser") == ["yes"] or "User" in s)
        self.assertEqual(s["StateDirectory"], ["notifd"])
        # events.spool_dir defaults to the relative "var/spool".
        self.assertEqual(s["WorkingDirectory"], ["/var/lib/notifd"])

    def test_hardening_directives(self):
        s = unit_settings()
        for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                           ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                           ("PrivateDevices", "yes"), ("CapabilityBoundingSet", "")]:
            self.assertEqual(s.get(key), [value], key)
        self.assertEqual(s["RestrictAddressFamilies"], ["AF_INET AF_INET6 AF_UNIX"])
        self.assertIn("@system-service", s["SystemCallFilter"])


class SystemdAnalyzeTest(unittest.TestCase):
    def setUp(self):
        self.assertIsNotNone(ANALYZE, "systemd-analyze is not installed (package systemd; "
                             "scripts/test.sh installs it)")

    def test_verify_is_clean(self):
        # verify insists that ExecStart's binary exists: check a copy that
        # names the binary under test (the unit itself names /usr/bin).
        with tempfile.TemporaryDirectory() as d:
            with open(UNIT) as f:
                text = f.read().replace("/usr/bin/notifd", os.path.abspath(NOTIFD_BIN))
            if not os.path.exists("/bin/kill"):
                text = text.replace("/bin/kill", shutil.which("kill") or "/bin/kill")
            path = os.path.join(d, "notifd.service")
            with open(path, "w") as f:
                f.write(text)
            r = subprocess.run([ANALYZE, "verify", path], capture_output=True, text=True,
                               timeout=60)
        output = (r.stdout + r.stderr).strip()
        self.assertEqual(r.returncode, 0, output)
        self.assertNotIn("notifd.service", output)

    def test_security_exposure_at_most_2(self):
        r = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager", UNIT],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for notifd\.service: (\d+\.\d+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)


class NotifyProtocolTest(unittest.TestCase):
    """notifd under a fake service manager: NOTIFY_SOCKET and WATCHDOG_USEC."""

    def setUp(self):
        self.redis = Redis().start()
        self.addCleanup(self.redis.close)
        self.dir = tempfile.mkdtemp(prefix="notifd-notify-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.sock_path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.sock.settimeout(0.05)
        self.addCleanup(self.sock.close)
        self.messages = []

    def received(self):
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except socket.timeout:
            pass
        return self.messages

    def has(self, *fields, after=0):
        return any(all(f in m.split("\n") for f in fields) for m in self.received()[after:])

    def start(self, watchdog_usec=None):
        env = {"NOTIFY_SOCKET": self.sock_path}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        saved = {k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        os.environ.update(env)
        os.environ.pop("WATCHDOG_PID", None)
        try:
            n = Notifd(self.redis.port)
            self.addCleanup(n.close)
            n.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return n

    def test_ready_reload_stop(self):
        n = self.start()
        wait_for(lambda: self.has("READY=1"), what="READY=1")
        mark = len(self.messages)
        n.signal(signal.SIGHUP)
        wait_for(lambda: self.has("RELOADING=1", after=mark), what="RELOADING=1")
        wait_for(lambda: any("READY=1" in m.split("\n") for m in self.messages[mark + 1:]),
                 what="READY=1 after the reload")
        reloading = [m for m in self.messages[mark:] if "RELOADING=1" in m.split("\n")][0]
        self.assertRegex(reloading, r"MONOTONIC_USEC=\d+")
        n.signal(signal.SIGTERM)
        self.assertEqual(n.wait(), 0)
        self.assertTrue(self.has("STOPPING=1"), self.messages)

    def test_watchdog_pings_when_enabled(self):
        self.start(watchdog_usec=200000)
        wait_for(lambda: self.has("WATCHDOG=1"), what="WATCHDOG=1")

    def test_no_watchdog_pings_without_watchdog_usec(self):
        n = self.start()
        wait_for(lambda: self.has("READY=1"), what="READY=1")
        n.signal(signal.SIGTERM)
        self.assertEqual(n.wait(), 0)
        self.assertFalse(self.has("WATCHDOG=1"), self.messages)


@unittest.skipUnless(os.environ.get("NOTIFD_BUILD_DIR"), "NOTIFD_BUILD_DIR not set (run via ctest)")
class InstallLayoutTest(unittest.TestCase):
    def test_cmake_install_puts_binary_config_and_unit_in_place(self):
        build = os.environ["NOTIFD_BUILD_DIR"]
        prefix = None
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_INSTALL_PREFIX:"):
                    prefix = line.split("=", 1)[1].strip()
        self.assertIsNotNone(prefix)
        with tempfile.TemporaryDirectory() as dest:
            env = dict(os.environ, DESTDIR=dest)
            r = subprocess.run(["cmake", "--install", build], env=env, capture_output=True,
                               text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            root = dest + prefix

            self.assertTrue(os.access(os.path.join(root, "bin", "notifd"), os.X_OK))
            self.assertTrue(os.access(os.path.join(root, "bin", "notifctl"), os.X_OK))
            confdir = "/etc/notifd" if prefix == "/usr" else prefix + "/etc/notifd"
            self.assertTrue(os.path.isfile(dest + confdir + "/notifd.json"))
            # A /usr install puts the unit where Debian 12 has units.
            unitroot = dest if prefix == "/usr" else root
            unit = os.path.join(unitroot, "lib", "systemd", "system", "notifd.service")
            with open(unit) as f:
                text = f.read()
            self.assertIn("ExecStart=%s/bin/notifd -c %s/notifd.json\n" % (prefix, confdir),
                          text)


if __name__ == "__main__":
    unittest.main()
