"""The Debian package that `cpack -G DEB` builds has Debian's layout.

CPack builds the packages of the build under test (NOTIFD_BUILD_DIR, else
the directory of NOTIFD_BIN) into a scratch directory, whatever prefix that
build was configured with. The main package, `notifd`, is unpacked
(`dpkg-deb -x`) into a scratch root, and:

- it holds /usr/bin/notifd, /usr/bin/notifctl, /etc/notifd/notifd.json,
  /lib/systemd/system/notifd.service and /usr/share/doc/notifd/operations.md,
  and nothing under /usr/local;
- /etc/notifd/notifd.json is listed in DEBIAN/conffiles (and every conffile
  is a file the package ships);
- the developer tools (notifd-bench, notifd-sim) are not in it but in
  `notifd-tools`, which depends on `notifd`;
- the installed unit names the installed binary and config (ExecStartPre,
  ExecStart); every path its Exec lines name is either shipped by the
  package or a host command (/bin/kill);
- the installed `notifd --check-config` accepts the installed config;
- `systemd-analyze verify` is clean on the installed unit (run on a copy
  whose packaged paths point into the scratch root, since verify insists
  that ExecStart's binary exists), and `systemd-analyze security` rates it
  2.0 or lower.

Needs cpack (cmake), dpkg-deb, dpkg-shlibdeps (dpkg-dev) and systemd-analyze
(systemd); scripts/deps.sh lists them. Without them the test fails, it does
not skip.
"""
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

from harness import NOTIFD_BIN

BUILD = os.environ.get("NOTIFD_BUILD_DIR") or os.path.dirname(os.path.abspath(NOTIFD_BIN))
ANALYZE = shutil.which("systemd-analyze")

UNIT = "/lib/systemd/system/notifd.service"
CONFIG = "/etc/notifd/notifd.json"
MAIN_FILES = ["/usr/bin/notifd", "/usr/bin/notifctl", CONFIG, UNIT,
              "/usr/share/doc/notifd/operations.md"]
TOOLS = ["/usr/bin/notifd-bench", "/usr/bin/notifd-sim"]

state = {}


def run(cmd, timeout=120, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (" ".join(cmd), r.returncode,
                                                       r.stdout, r.stderr))
    return r.stdout


def setUpModule():
    for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps"):
        if not shutil.which(tool):
            raise AssertionError("%s is not installed (scripts/deps.sh lists it)" % tool)
    scratch = tempfile.mkdtemp(prefix="notifd-pkg-")
    state["scratch"] = scratch
    out = os.path.join(scratch, "out")
    run(["cpack", "-G", "DEB", "-B", out, "--config", os.path.join(BUILD, "CPackConfig.cmake")],
        timeout=240, cwd=BUILD)
    debs = {}
    for name in os.listdir(out):
        if name.endswith(".deb"):
            path = os.path.join(out, name)
            debs[run(["dpkg-deb", "-f", path, "Package"]).strip()] = path
    state["debs"] = debs
    if "notifd" not in debs:
        raise AssertionError("cpack built no package named notifd: %s" % sorted(debs))
    root = os.path.join(scratch, "root")
    run(["dpkg-deb", "-x", debs["notifd"], root])
    state["root"] = root
    control = os.path.join(scratch, "control")
    run(["dpkg-deb", "-e", debs["notifd"], control])
    state["control"] = control


def tearDownModule():
    if "scratch" in state:
        shutil.rmtree(state["scratch"], ignore_errors=True)


def contents(deb):
    """The absolute paths of the files (not directories) a package ships."""
    files = []
    for line in run(["dpkg-deb", "-c", deb]).splitlines():
        mode, path = line.split()[0], line.split()[5]
        if not mode.startswith("d"):
            files.append(path[1:] if path.startswith("./") else path)
    return files


def unit_service_settings(path):
    if not os.path.isfile(path):
        raise AssertionError("the package has no %s" % UNIT)
    settings = {}
    section = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line
            elif section == "[Service]":
                k, _, v = line.partition("=")
                settings.setdefault(k, []).append(v)
    return settings


def exec_paths(settings):
    """Every absolute path named by an Exec*= line (the command, then its arguments)."""
    paths = []
    for key, values in settings.items():
        if key.startswith("Exec"):
            for v in values:
                for word in shlex.split(v):
                    word = word.lstrip("-@:+!")
                    if word.startswith("/"):
                        paths.append(word)
    return paths


class PackageLayoutTest(unittest.TestCase):
    def test_main_package_holds_debian_paths_only(self):
        files = contents(state["debs"]["notifd"])
        for path in MAIN_FILES:
            self.assertIn(path, files)
        self.assertEqual([f for f in files if f.startswith("/usr/local")], [], files)
        for tool in TOOLS:
            self.assertNotIn(tool, files)
        self.assertTrue(os.access(state["root"] + "/usr/bin/notifd", os.X_OK))
        self.assertTrue(os.access(state["root"] + "/usr/bin/notifctl", os.X_OK))

    def test_config_is_a_conffile(self):
        path = os.path.join(state["control"], "conffiles")
        self.assertTrue(os.path.isfile(path), "the package has no DEBIAN/conffiles")
        with open(path) as f:
            conffiles = f.read().split()
        self.assertIn(CONFIG, conffiles)
        files = contents(state["debs"]["notifd"])
        for c in conffiles:
            self.assertIn(c, files, "conffile %s is not in the package" % c)

    def test_tools_are_in_their_own_package(self):
        self.assertIn("notifd-tools", state["debs"])
        deb = state["debs"]["notifd-tools"]
        files = contents(deb)
        self.assertEqual(sorted(files), TOOLS)
        # notifd-sim runs the notifd beside it (/usr/bin/notifd).
        depends = run(["dpkg-deb", "-f", deb, "Depends"])
        self.assertRegex(depends, r"(^|, )notifd \(= [^)]+\)")

    def test_unit_names_the_installed_binary_and_config(self):
        unit = state["root"] + UNIT
        settings = unit_service_settings(unit)
        self.assertEqual(settings["ExecStart"], ["/usr/bin/notifd -c %s" % CONFIG])
        self.assertEqual(settings["ExecStartPre"],
                         ["/usr/bin/notifd -c %s --check-config" % CONFIG])
        self.assertEqual(settings["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        with open(unit) as f:
            text = f.read()
        self.assertNotIn("/usr/local", text)
        self.assertIn("Documentation=file:///usr/share/doc/notifd/operations.md\n", text)
        for path in exec_paths(settings):
            if "notifd" in path:
                self.assertTrue(os.path.exists(state["root"] + path),
                                "%s is named by the unit but not in the package" % path)
            else:
                self.assertTrue(os.access(path, os.X_OK), path)

    def test_installed_binary_accepts_installed_config(self):
        root = state["root"]
        self.assertTrue(os.access(root + "/usr/bin/notifd", os.X_OK), "no /usr/bin/notifd")
        self.assertTrue(os.path.isfile(root + CONFIG), "no %s" % CONFIG)
        r = subprocess.run([root + "/usr/bin/notifd", "-c", root + CONFIG, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_systemd_analyze_verify_and_security(self):
        self.assertIsNotNone(ANALYZE, "systemd-analyze is not installed (package systemd; "
                             "scripts/test.sh installs it)")
        root = state["root"]
        settings = unit_service_settings(root + UNIT)
        with open(root + UNIT) as f:
            text = f.read()
        # verify wants ExecStart's binary to exist: point the paths the
        # package ships into the scratch root.
        for path in sorted(set(exec_paths(settings)), key=len, reverse=True):
            if os.path.exists(root + path):
                text = re.sub(r"(?<![\w/])" + re.escape(path), root + path, text)
        with tempfile.TemporaryDirectory() as d:
            copy = os.path.join(d, "notifd.service")
            with open(copy, "w") as f:
                f.write(text)
            r = subprocess.run([ANALYZE, "verify", copy], capture_output=True, text=True,
                               timeout=60)
        output = (r.stdout + r.stderr).strip()
        self.assertEqual(r.returncode, 0, output)
        self.assertNotIn("notifd.service", output)

        r = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager", root + UNIT],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for notifd\.service: (\d+\.\d+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)


if __name__ == "__main__":
    unittest.main()
