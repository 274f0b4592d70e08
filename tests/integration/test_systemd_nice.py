"""planner.nice under config/notifd.service.

The unit denies @resources, which holds setpriority(2), the call the
planner makes to lower its worker thread's priority (src/slow/planner.c,
apply_nice); the unit allows that one call back. systemd is not PID 1 on a
test machine, so the unit cannot run here; instead:

- the unit's SystemCallFilter= lines, expanded with `systemd-analyze
  syscall-filter` and read in order as systemd reads them, must let through
  the calls planner.nice makes (and the reading itself must see a call the
  unit denies);
- raising one thread's nice value must need no privilege: checked in a
  child that dropped to an unprivileged user with no capabilities.

systemd-analyze is required (scripts/test.sh installs the `systemd`
package): without it these tests fail, they do not skip.
"""
import os
import subprocess
import threading
import unittest

from opsutil import ROOT
from test_systemd_unit import ANALYZE, unit_settings


# What src/slow/planner.c calls to apply planner.nice to the worker thread.
NICE_SYSCALLS = ("gettid", "getpriority", "setpriority")


def syscall_group(name):
    """The system calls of @name, groups inside it expanded."""
    r = subprocess.run([ANALYZE, "syscall-filter", "--no-pager", name], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(r.stdout + r.stderr)
    calls = set()
    for line in r.stdout.splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        calls |= syscall_group(line) if line.startswith("@") else {line}
    return calls


def filter_allows(lines, call):
    """Whether SystemCallFilter= lines, in order, let `call` through.

    systemd's rules: the first line decides the kind of list (an allow-list,
    or with "~" a deny-list); each later line adds its calls to that list
    when it is of the same kind and removes them when it is of the other.
    An empty assignment resets. (An allow-list also holds @default.)"""
    allow_list, listed = None, set()
    for line in lines:
        line = line.strip()
        if not line:
            allow_list, listed = None, set()
            continue
        deny = line.startswith("~")
        calls = set()
        for name in line.lstrip("~").split():
            name = name.split(":")[0]  # "call:errno"
            calls |= syscall_group(name) if name.startswith("@") else {name}
        if allow_list is None:
            allow_list = not deny
            if allow_list:
                listed |= syscall_group("@default")
        if deny != allow_list:  # same kind as the list: add
            listed |= calls
        else:
            listed -= calls
    if allow_list is None:
        return True
    return (call in listed) == allow_list


class SyscallFilterTest(unittest.TestCase):
    def setUp(self):
        self.assertIsNotNone(ANALYZE, "systemd-analyze is not installed (package systemd; "
                             "scripts/test.sh installs it)")

    def test_the_planner_nice_calls_pass_the_units_filter(self):
        with open(os.path.join(ROOT, "src", "slow", "planner.c")) as f:
            source = f.read()
        self.assertIn("setpriority(PRIO_PROCESS", source)  # the mechanism this guards
        lines = unit_settings()["SystemCallFilter"]
        for call in NICE_SYSCALLS:
            self.assertTrue(filter_allows(lines, call), (call, lines))

    def test_the_filter_reading_sees_a_denied_call(self):
        # The unit without its allow line denies setpriority (@resources):
        # the check above would fail on it.
        lines = [l for l in unit_settings()["SystemCallFilter"] if l != "setpriority"]
        self.assertIn("setpriority", syscall_group("@resources"))
        self.assertFalse(filter_allows(lines, "setpriority"), lines)
        self.assertTrue(filter_allows(lines, "getpriority"), lines)
        self.assertFalse(filter_allows(lines, "sched_setattr"), lines)
        # A deny-list first: a later allow line takes calls off it.
        self.assertTrue(filter_allows(["~@resources", "setpriority"], "read"))
        self.assertFalse(filter_allows(["~@resources"], "setpriority"))
        self.assertTrue(filter_allows(["~@resources", "setpriority"], "setpriority"))


class UnprivilegedNiceTest(unittest.TestCase):
    """planner.nice needs no privilege: a thread of a process without
    capabilities raises its own nice value; the other threads keep theirs."""

    def test_a_thread_raises_its_nice_value_without_privilege(self):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop to nobody, then try
            os.close(r)
            code = 1
            try:
                if os.getuid() == 0:
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)  # also clears the capability sets
                code = nice_in_a_thread(w)
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r) as f:
            report = f.read()
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, report)
        main, thread, uid = (int(x) for x in report.split())
        self.assertNotEqual(uid, 0)
        self.assertEqual(thread, min(19, main + 10))


def nice_in_a_thread(fd):
    """In a forked child: set one thread's nice value 10 above the main
    thread's as src/slow/planner.c does (setpriority on the thread id); writes
    "main thread uid" to fd and returns the exit code."""
    result = {}

    def worker():
        tid = threading.get_native_id()
        base = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, base + 10))
        with open("/proc/self/task/%d/stat" % tid) as f:
            result["thread"] = int(f.read().rsplit(")", 1)[1].split()[16])
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    with open("/proc/self/stat") as f:
        main = int(f.read().rsplit(")", 1)[1].split()[16])
    if "thread" not in result:
        return 1
    os.write(fd, ("%d %d %d" % (main, result["thread"], os.getuid())).encode())
    return 0


if __name__ == "__main__":
    unittest.main()
