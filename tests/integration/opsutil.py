"""Helpers for the operations tests (admin endpoint, notifctl, systemd unit):
a plain HTTP client, a strict Prometheus text-format (0.0.4) parser, and the
paths of the built tools. Kept apart from harness.py so the harness stays the
one place that starts processes.
"""
import http.client
import math
import os
import re
import socket

from harness import NOTIFD_BIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tool_path(name):
    """A tool built beside notifd (build/notifctl, ...)."""
    return os.path.join(os.path.dirname(os.path.abspath(NOTIFD_BIN)), name)


def http_request(port, path, method="GET", body=None, headers=None, timeout=10):
    """Returns (status, headers dict with lower-case names, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data.decode()
    finally:
        conn.close()


def raw_http(port, data, timeout=10):
    """Sends raw bytes and returns everything the server answers until it
    closes (or the timeout passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse before reading everything
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return out


# ---- Prometheus text exposition format 0.0.4 --------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE_RE = re.compile(r"^(%s)(\{(.*)\})? (\S+)( -?\d+)?$" % _NAME)
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class Family:
    def __init__(self, name):
        self.name = name
        self.help = None
        self.type = None
        self.samples = []  # (sample name, labels dict, value)


def _unescape(value):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _parse_labels(text, line):
    labels = {}
    pos = 0
    while pos < len(text):
        m = _LABEL_RE.match(text, pos)
        if not m:
            raise AssertionError("bad label set in %r" % line)
        if m.group(1) in labels:
            raise AssertionError("duplicate label %s in %r" % (m.group(1), line))
        labels[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
    return labels


def _parse_value(text, line):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    try:
        return float(text)
    except ValueError:
        raise AssertionError("bad sample value in %r" % line)


def _family_of(sample_name, families):
    if sample_name in families:
        return families[sample_name]
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            base = families.get(sample_name[: -len(suffix)])
            if base is not None and base.type in ("histogram", "summary"):
                return base
    return None


def parse_exposition(text):
    """Parses every line strictly; returns {family name: Family}. Raises
    AssertionError on any line that is not valid 0.0.4 text, on a sample
    whose family has no HELP and TYPE before it, and on a repeated series."""
    if not text.endswith("\n"):
        raise AssertionError("exposition must end with a newline")
    families = {}
    seen = set()
    for line in text.split("\n")[:-1]:
        if line == "":
            raise AssertionError("empty line in exposition")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not re.fullmatch(_NAME, name):
                    raise AssertionError("bad metric name in %r" % line)
                fam = families.setdefault(name, Family(name))
                rest = parts[3] if len(parts) == 4 else ""
                if parts[1] == "HELP":
                    if fam.help is not None:
                        raise AssertionError("second HELP for %s" % name)
                    fam.help = rest
                else:
                    if fam.type is not None or fam.samples:
                        raise AssertionError("TYPE for %s repeated or after samples" % name)
                    if rest not in _TYPES:
                        raise AssertionError("bad TYPE in %r" % line)
                    fam.type = rest
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise AssertionError("unparseable sample line %r" % line)
        name, labels_text, value = m.group(1), m.group(3) or "", m.group(4)
        labels = _parse_labels(labels_text, line)
        fam = _family_of(name, families)
        if fam is None or fam.type is None or fam.help is None:
            raise AssertionError("sample %r has no HELP and TYPE before it" % line)
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise AssertionError("series repeated: %r" % line)
        seen.add(key)
        fam.samples.append((name, labels, _parse_value(value, line)))
    return families


def sample(families, name, **labels):
    """The value of one series (matching every given label), or None."""
    base = name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            base = name[: -len(suffix)]
    fam = families.get(base)
    if fam is None:
        return None
    for sname, slabels, value in fam.samples:
        if sname == name and all(slabels.get(k) == v for k, v in labels.items()):
            return value
    return None


def histogram_series(fam):
    """Groups a histogram family into {labels without le: (buckets, sum,
    count)}, buckets as [(le float, value)] in exposition order."""
    series = {}
    for sname, labels, value in fam.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        entry = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if sname.endswith("_bucket"):
            le = labels["le"]
            entry["buckets"].append((math.inf if le == "+Inf" else float(le), value))
        elif sname.endswith("_sum"):
            entry["sum"] = value
        elif sname.endswith("_count"):
            entry["count"] = value
    return series
