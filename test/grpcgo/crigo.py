"""Drive the grpc-go CRI client (build/grpcgo/crigo, `make grpcgo`) from pytest.

One GoCRI is one `crigo repl` process holding one grpc-go ClientConn, dialled
the kubelet's way (see README.md); ops go in as JSON lines, results come back
as JSON lines, matched by id. Calls run concurrently inside the process, so a
test can start a call, do other calls on the same connection, cancel it...

    g = GoCRI("unix:///path/crisp.sock", "crisp")
    g.rt("Version", {"version": "0.1.0"})           # -> response dict (protojson names), raises GoError
    r = g.call("ExecSync", {...}, timeout=5)         # -> Result: r.code ("OK", "NOT_FOUND"...), r.message, r.response
    cid = g.start("ExecSync", {...}, timeout=0)      # no deadline; g.wait(cid) / g.cancel(cid)
    s = g.start("GetContainerEvents", {}); g.wait_messages(s, pred)
    g.concurrent([...]); g.wire(); g.negotiate()
    g.close()                                        # the process must exit 0, no panic

Requests are dicts (protojson: camelCase or proto names) or python protobuf
messages (converted with MessageToDict). Responses are protojson dicts, the
same shape as crilib.as_dict()/MessageToDict, so answers can be compared with
what the python (C-core) client got.
"""
import itertools
import json
import os
import subprocess
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CRIGO = os.path.abspath(os.environ.get("CRISP_TEST_CRIGO", os.path.join(REPO, "build", "grpcgo", "crigo")))
DEFAULT_TIMEOUT = float(os.environ.get("CRISP_TEST_RPC_TIMEOUT", "30"))


class GoError(AssertionError):
    def __init__(self, result):
        self.result = result
        super().__init__("%s: %s %s" % (result.get("method"), result.get("code_name"), result.get("message")))


class Result(dict):
    @property
    def code(self):
        return self.get("code_name")

    @property
    def message(self):
        return self.get("message", "")

    @property
    def ok(self):
        return self.get("code_name") == "OK"

    @property
    def response(self):
        return self.get("response") or {}

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k)


def to_json(req):
    if req is None:
        return {}
    if hasattr(req, "DESCRIPTOR"):
        from google.protobuf.json_format import MessageToDict
        return MessageToDict(req)
    return req


def built():
    """None when the binary is there, else why not."""
    if not os.path.exists(CRIGO):
        return "the grpc-go client %s is not built (make grpcgo)" % CRIGO
    return None


class GoCRI:
    """A crigo repl process on `endpoint` (unix:///path, /path, tcp://host:port + TLS args)."""

    def __init__(self, endpoint, name="go", args=(), api="v1"):
        why = built()
        if why:
            raise AssertionError(why)
        self.endpoint = endpoint
        self.name = name
        self.api = api
        self.argv = [CRIGO, "repl", "-endpoint", endpoint] + list(args)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self._ids = itertools.count(1)
        self._cv = threading.Condition()
        self._results = {}
        self._messages = {}
        self._timeouts = {}
        self._stderr = []
        self._wlock = threading.Lock()
        self._eof = False
        self._rt = threading.Thread(target=self._read, daemon=True)
        self._rt.start()
        self._et = threading.Thread(target=self._read_err, daemon=True)
        self._et.start()

    def __repr__(self):
        return "GoCRI(%s, %s)" % (self.name, self.endpoint)

    # --- plumbing -----------------------------------------------------------

    def _read(self):
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"id": None, "error": "unparseable output: %r" % line[:200]}
            with self._cv:
                oid = obj.get("id")
                if "message" in obj and "code" not in obj and "op" not in obj:
                    self._messages.setdefault(oid, []).append(obj["message"])
                else:
                    self._results[oid] = Result(obj)
                self._cv.notify_all()
        with self._cv:
            self._eof = True
            self._cv.notify_all()

    def _read_err(self):
        for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace"))

    def stderr(self):
        return "".join(self._stderr)

    def _send(self, op):
        op.setdefault("id", "%s-%d" % (op.get("op", "x"), next(self._ids)))
        data = (json.dumps(op) + "\n").encode()
        with self._wlock:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except BrokenPipeError:
                raise AssertionError("crigo (%s) exited (%s): %s" % (self.name, self.proc.poll(), self.stderr()))
        return op["id"]

    def _wait_id(self, oid, wait):
        deadline = time.time() + wait
        with self._cv:
            while oid not in self._results:
                left = deadline - time.time()
                if self._eof:
                    raise AssertionError("crigo (%s) ended before answering %s (exit %s):\n%s"
                                         % (self.name, oid, self.proc.poll(), self.stderr()))
                if left <= 0:
                    raise AssertionError("crigo (%s): no answer to %s within %.0fs" % (self.name, oid, wait))
                self._cv.wait(min(left, 1.0))
            return self._results.pop(oid)

    @staticmethod
    def _wait_for(timeout):
        return (timeout if timeout else 120.0) + 60.0

    # --- calls --------------------------------------------------------------

    def start(self, method, request=None, timeout=None, api=None, metadata=None, max_messages=0,
              quiet=False, request_b64=None):
        """Starts a call; returns its id. timeout: the gRPC deadline in seconds
        (default CRISP_TEST_RPC_TIMEOUT; 0: none, as the kubelet's PullImage)."""
        op = {"op": "call", "method": method, "api": api or self.api, "request": to_json(request),
              "timeout": DEFAULT_TIMEOUT if timeout is None else timeout}
        if metadata:
            op["metadata"] = metadata
        if max_messages:
            op["max_messages"] = max_messages
        if quiet:
            op["quiet"] = True
        if request_b64 is not None:
            op["request_b64"] = request_b64
        oid = self._send(op)
        self._timeouts[oid] = op["timeout"]
        return oid

    def wait(self, oid, wait=None):
        t = self._timeouts.pop(oid, None)
        return self._wait_id(oid, wait or self._wait_for(t))

    def call(self, method, request=None, timeout=None, api=None, metadata=None, wait=None, **kw):
        return self.wait(self.start(method, request, timeout=timeout, api=api, metadata=metadata, **kw), wait)

    def rt(self, method, request=None, **kw):
        """RuntimeService call that must succeed; returns the response dict."""
        r = self.call(method, request, **kw)
        if not r.ok:
            raise GoError(r)
        return r.response

    def img(self, method, request=None, **kw):
        r = self.call("ImageService/" + method, request, **kw)
        if not r.ok:
            raise GoError(r)
        return r.response

    def cancel(self, oid):
        res = self._wait_id(self._send({"op": "cancel", "target": oid}), 30)
        return res.get("cancelled")

    def messages(self, oid):
        with self._cv:
            return list(self._messages.get(oid, []))

    def wait_messages(self, oid, pred, timeout=30.0, what="messages"):
        """Waits until pred(list of the stream's messages so far) is true."""
        deadline = time.time() + timeout
        with self._cv:
            while True:
                msgs = list(self._messages.get(oid, []))
                if pred(msgs):
                    return msgs
                if oid in self._results:
                    raise AssertionError("stream %s ended (%s %s) before %s; got %s"
                                         % (oid, self._results[oid].code, self._results[oid].message, what, msgs))
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("timed out after %.0fs waiting for %s; got %s" % (timeout, what, msgs))
                self._cv.wait(min(left, 0.5))

    def concurrent(self, calls, responses=False, wait=600.0):
        """Starts every call at once on the one connection. calls: dicts with
        method, request, timeout (s), api. Returns the op's result."""
        ops = []
        for c in calls:
            ops.append({"op": "call", "method": c["method"], "api": c.get("api", self.api),
                        "request": to_json(c.get("request")), "timeout": c.get("timeout", DEFAULT_TIMEOUT)})
        oid = self._send({"op": "concurrent", "calls": ops, "responses": responses})
        return self._wait_id(oid, wait)

    def wire(self):
        """What crossed the wire so far: {"dials", "conns": [per connection stats], ...}."""
        return self._wait_id(self._send({"op": "wire"}), 30)

    def wait_wire(self, pred, timeout=15.0, what="the wire"):
        """Polls wire() until pred(wire report) is true (grpc-go writes its
        frames on a goroutine of its own: a RST_STREAM leaves after the call
        has already returned CANCELLED to its caller)."""
        deadline = time.time() + timeout
        while True:
            w = self.wire()["wire"]
            if pred(w):
                return w
            if time.time() > deadline:
                raise AssertionError("timed out after %.0fs waiting for %s: %s" % (timeout, what, conn_summary(w)))
            time.sleep(0.05)

    def negotiate(self, timeout=None):
        """The kubelet 1.26/1.27 API version negotiation (v1, else v1alpha2 on UNIMPLEMENTED)."""
        return self._wait_id(self._send({"op": "negotiate", "timeout": timeout or DEFAULT_TIMEOUT}), 120)

    def close(self, check=True):
        """Closes stdin (whatever runs is cancelled); the process must exit 0
        without a Go panic or race report."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if check:
                    raise AssertionError("crigo (%s) did not exit within 60 s of EOF" % self.name)
        self._rt.join(10)
        self._et.join(10)
        err = self.stderr()
        if check and (self.proc.returncode != 0 or "panic:" in err or "DATA RACE" in err):
            raise AssertionError("crigo (%s) exited %s:\n%s" % (self.name, self.proc.returncode, err[-3000:]))


def one_call(endpoint, method, request=None, timeout=None, args=()):
    """A fresh process and connection for one call (crigo call)."""
    argv = [CRIGO, "call", "-endpoint", endpoint, "-method", method, "-json", json.dumps(to_json(request))]
    if timeout is not None:
        argv += ["-timeout", "%gs" % timeout]
    p = subprocess.run(argv + list(args), stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    try:
        return Result(json.loads(p.stdout))
    except ValueError:
        raise AssertionError("crigo call: exit %s, stdout %r, stderr %s" % (p.returncode, p.stdout[:300], p.stderr))


# --- helpers for the tests -------------------------------------------------------------------

VOLATILE = frozenset(["timestamp", "createdAt", "startedAt", "finishedAt", "usageBytes",
                      "inodesUsed", "workingSetBytes", "usageCoreNanoSeconds", "usageNanoCores",
                      "availableBytes", "rssBytes", "pageFaults", "majorPageFaults", "usedBytes"])


def strip(x, drop=VOLATILE):
    """A protojson dict without the fields that change from one call to the next."""
    if isinstance(x, dict):
        return {k: strip(v, drop) for k, v in x.items() if k not in drop}
    if isinstance(x, list):
        return [strip(v, drop) for v in x]
    return x


def conn_summary(wire):
    """Short text of a wire report, for assertion messages."""
    out = ["dials=%d" % wire["dials"]]
    for c in wire["conns"]:
        out.append("conn%d: pings %d/%d acked, goaways %s, closed %r, rsts %d, max open streams %d"
                   % (c["id"], c["ping_acks_received"], c["pings_sent"], c["goaways"], c["closed"],
                      c["rst_count"], c["max_open_streams"]))
    return "; ".join(out)
