"""Helpers for the tracing, metrics and crispctl tests (test_trace.py,
test_metrics.py, test_crispctl.py, test/docker/test_trace.py).

- trace files: read_trace(path) parses every line (each must be a JSON
  object); wait_records(path, pred, n) waits for the writer thread (it
  writes every 50 ms).
- metrics: scrape(url) fetches /metrics over HTTP and parse_prom(text)
  parses the Prometheus text format strictly (HELP/TYPE before samples,
  label escaping, values), returning {(name, frozenset(labels)): value}.
- crispctl: run_ctl(*args, endpoint=...) runs build/crispctl (next to
  CRISP_BIN, or CRISP_TEST_CRISPCTL).
"""
import json
import os
import re
import subprocess
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CRISP_BIN = os.path.abspath(os.environ.get("CRISP_BIN", os.path.join(REPO, "build", "crisp")))
CRISPCTL = os.path.abspath(os.environ.get("CRISP_TEST_CRISPCTL",
                                          os.path.join(os.path.dirname(CRISP_BIN), "crispctl")))
SECRET_WORDS = ("password", "auth", "identityToken", "registryToken")


def read_trace(path):
    """Every record of a trace file (and its rotated files when asked)."""
    recs = []
    try:
        with open(path, "rb") as f:
            data = f.read().decode()
    except FileNotFoundError:
        return recs
    for i, line in enumerate(data.splitlines()):
        assert line.strip(), "empty line %d in %s" % (i + 1, path)
        rec = json.loads(line)
        assert isinstance(rec, dict) and rec.get("kind") in ("call", "msg", "dropped"), line[:200]
        recs.append(rec)
    return recs


def wait_records(path, pred=lambda r: True, n=1, timeout=10.0):
    """Waits until n records satisfy pred; returns all of them."""
    deadline = time.time() + timeout
    while True:
        recs = [r for r in read_trace(path) if pred(r)]
        if len(recs) >= n:
            return recs
        if time.time() > deadline:
            raise AssertionError("%d of %d records in %s after %.0fs: %s"
                                 % (len(recs), n, path, timeout, recs[-3:]))
        time.sleep(0.05)


def calls(recs, method=None):
    return [r for r in recs if r["kind"] == "call" and (method is None or r["method"] == method)]


# ---------------------------------------------------------------------------
# Prometheus text format (version 0.0.4)

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def _labels(text):
    out = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        assert m, "bad labels: %r" % text
        out[m.group(1)] = re.sub(r'\\(.)', lambda x: "\n" if x.group(1) == "n" else x.group(1), m.group(2))
        pos = m.end()
    return out


def parse_prom(text):
    """{(name, frozenset(labels.items())): float}; asserts the format."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, "TYPE twice for %s" % name
            types[name] = typ
            continue
        assert line and not line.startswith("#"), "unexpected line %r" % line
        m = _SAMPLE.match(line)
        assert m, "bad sample line %r" % line
        name, labels, value = m.group(1), _labels(m.group(3) or ""), m.group(4)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, "sample %s before its TYPE" % name
        v = float(value.replace("+Inf", "inf"))
        key = (name, frozenset(labels.items()))
        assert key not in samples, "sample twice: %s" % line
        samples[key] = v
    return samples


def value(samples, name, **labels):
    """The sum of the samples of name whose labels include these."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def scrape(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def metrics_url(crisp, timeout=10):
    """http://ADDR/metrics of a crisp started with --metrics-listen 127.0.0.1:0."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(crisp.log) as f:
            m = re.search(r"event=metrics_listening addr=(\S+)", f.read())
        if m:
            return "http://%s/metrics" % m.group(1)
        time.sleep(0.05)
    raise AssertionError("no metrics_listening line in %s" % crisp.log)


# ---------------------------------------------------------------------------
# crispctl

def run_ctl(*args, endpoint=None, timeout=60, check=True, input=None):
    argv = [CRISPCTL] + (["--endpoint", endpoint] if endpoint else []) + list(args)
    extra = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, **extra)
    r.out, r.err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    if check:
        assert r.returncode == 0, "crispctl %s: exit %d\n%s\n%s" % (" ".join(args), r.returncode, r.out, r.err)
    return r


def ctl_json(*args, endpoint=None, **kw):
    r = run_ctl("-o", "json", *args, endpoint=endpoint, **kw)
    return json.loads(r.out)
