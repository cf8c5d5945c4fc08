"""crisp when the backend misbehaves, and what crisp passes through:

- the backend killed mid-call (UNAVAILABLE naming it), down (fast
  UNAVAILABLE), back on the same socket (crisp reconnects by itself);
- a backend that never answers (the deadline ends the call and the backend
  sees the cancellation), or that accepts and never speaks HTTP/2;
- request metadata and the deadline forwarded; the backend's initial and
  trailing metadata relayed unchanged;
- back-pressure: a slow reader stalls the backend's stream instead of
  growing crisp;
- many cancellations and client disconnects reach the backend.

The backend is scriptfake.ScriptedFake, in this process (to see what it
saw) or as its own process (to SIGKILL it)."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import grpc
import pytest

import scriptfake
from conftest import WORK, WRAPPED, Crisp, _crisp_instances, _tail, sock_dir, stop_and_check, wait_for
from crilib import CRIClient, rpc_error, v1
from h2raw import CANCEL, H2Backend, H2Client, grpc_frame

HERE = os.path.dirname(os.path.abspath(__file__))
SLOW = 5.0 if WRAPPED else 1.0
LIST_PODS = "/runtime.v1.RuntimeService/ListPodSandbox"


def short_sock(tag):
    d = sock_dir()
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, "%s-%s.sock" % (tag, uuid.uuid4().hex[:6]))


# ---------------------------------------------------------------------------
# an in-process scripted backend, with crisp in front of it


@pytest.fixture(scope="module")
def sfake():
    f = scriptfake.ScriptedFake(short_sock("sfake")).start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def sfake_crisp(sfake):
    c = Crisp("scripted", sfake.sock)
    _crisp_instances.append(c)
    c.start()
    yield c
    stop_and_check(c)


@pytest.fixture(params=["direct", "crisp"])
def scri(request, sfake):
    """A client on the scripted fake, directly or through crisp."""
    if request.param == "direct":
        target = sfake.sock
    else:
        crisp = request.getfixturevalue("sfake_crisp")
        target = crisp.sock
    c = CRIClient("unix://" + target, request.param)
    yield c
    c.close()
    if request.param == "crisp":
        crisp.check_serving("after %s" % request.node.name)


def full_call(client, service, method, req, metadata=None, deadline=10):
    """(response, call) so that the metadata can be read."""
    mdesc, req_cls, resp_cls = client._method(service, method)
    stub = client.channel.unary_unary(client.path(service, method),
                                      request_serializer=req_cls.SerializeToString,
                                      response_deserializer=resp_cls.FromString)
    return stub.with_call(req, metadata=metadata, timeout=deadline)


# ---------------------------------------------------------------------------
# metadata and deadlines


SENT_MD = [
    ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("tracestate", "crisp=t61rcWkgMzE"),
    ("x-foo", "bar baz/qux=1"),
    ("x-multi", "one"),
    ("x-multi", "two"),
    ("x-blob-bin", b"\x00\x01\x02\xfe\xff"),
]


def test_request_metadata_forwarded(scri):
    resp, _ = full_call(scri, "RuntimeService", "Status", v1.StatusRequest(), metadata=SENT_MD)
    info = resp.info
    assert info["md:traceparent"] == SENT_MD[0][1]
    assert info["md:tracestate"] == SENT_MD[1][1]
    assert info["md:x-foo"] == "bar baz/qux=1"
    assert info["md:x-multi"] == "one,two"
    assert info["md:x-blob-bin"] == b"\x00\x01\x02\xfe\xff".hex()


@pytest.fixture(scope="module")
def recorder():
    b = H2Backend(short_sock("rec"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def recorder_crisp(recorder):
    c = Crisp("recorder", recorder.path)
    _crisp_instances.append(c)
    c.start()
    yield c
    stop_and_check(c)


UNIT_US = {"H": 3600e6, "M": 60e6, "S": 1e6, "m": 1e3, "u": 1.0, "n": 1e-3}


def timeout_us(v):
    assert 2 <= len(v) <= 9 and v[:-1].isdigit() and v[-1] in UNIT_US, "bad grpc-timeout %r" % v
    return int(v[:-1]) * UNIT_US[v[-1]]


@pytest.mark.parametrize("sent", ["7S", "2500m", "7000000u", "1M", "1H", "99999999S", "99999999H"])
def test_grpc_timeout_forwarded_not_later(recorder_crisp, recorder, sent):
    """The backend gets a grpc-timeout no longer than the client's (minus
    the time crisp held the call) and not much shorter, in a valid format."""
    with H2Client.unix(recorder_crisp.sock) as c:
        r = c.call("/runtime.v1.RuntimeService/Status", grpc_frame(b""), grpc_timeout=sent, timeout=10 * SLOW)
    assert r.grpc_status == 0, r
    fwd = recorder.last_headers().get("grpc-timeout")
    assert fwd is not None, "no grpc-timeout forwarded for %s" % sent
    want = timeout_us(sent)
    got = timeout_us(fwd)
    assert got <= want, "forwarded %s (%.0f us) for the client's %s" % (fwd, got, sent)
    assert got >= want - 0.5e6 * SLOW, "forwarded %s for the client's %s" % (fwd, sent)


def test_forwarded_request(recorder_crisp, recorder):
    """Metadata arrives verbatim (binary headers stay base64), a v1alpha2
    call goes out on the v1 path, the request bytes are unchanged, and no
    grpc-timeout is invented."""
    body = grpc_frame(v1.StatusRequest(verbose=True).SerializeToString())
    extra = [("traceparent", SENT_MD[0][1]), ("x-foo", "bar baz/qux=1"), ("x-blob-bin", "AAEC/v8"),
             ("x-empty", "")]
    with H2Client.unix(recorder_crisp.sock) as c:
        r = c.call("/runtime.v1alpha2.RuntimeService/Status", body, extra=extra, timeout=10 * SLOW)
    assert r.grpc_status == 0, r
    with recorder.lock:
        headers, got_body = recorder.requests[-1]
    h = dict(headers)
    assert h[":method"] == "POST" and h[":path"] == "/runtime.v1.RuntimeService/Status"
    assert h["content-type"] == "application/grpc" and h["te"] == "trailers"
    for k, v in extra:
        assert h.get(k) == v, (k, h.get(k))
    assert "grpc-timeout" not in h
    assert got_body == body


def test_deadline_cancels_backend_stream():
    """crisp's own deadline: the backend's stream is reset with CANCEL."""
    b = H2Backend(short_sock("hang"), hang=True)
    c = Crisp("hangrec", b.path)
    _crisp_instances.append(c)
    try:
        _start_without_probe(c)
        with H2Client.unix(c.sock) as h:
            t0 = time.time()
            r = h.call(LIST_PODS, grpc_frame(b""), grpc_timeout="800m", timeout=10 * SLOW)
            took = time.time() - t0
        assert r.grpc_status == 4, r
        m = re.match(r"deadline exceeded after (\d+\.\d+)s$", r.grpc_message or "")
        assert m and float(m.group(1)) >= 0.8, "crisp's deadline fired early: %r" % r.grpc_message
        assert 0.8 <= took < 1.3 * SLOW, took
        wait_for(lambda: b.resets, timeout=5 * SLOW, what="RST_STREAM at the backend")
        assert b.resets[0][1] == CANCEL, b.resets
    finally:
        stop_and_check(c, exited=not c.alive())
        b.close()


def test_no_deadline_none_forwarded(sfake_crisp, sfake):
    """No grpc-timeout from the client: none towards the backend either."""
    with H2Client.unix(sfake_crisp.sock) as c:
        r = c.call("/runtime.v1.RuntimeService/Status", grpc_frame(b""), timeout=10 * SLOW)
    assert r.grpc_status == 0, r
    info = v1.StatusResponse.FromString(r.messages()[0]).info
    assert info["time_remaining"] == "none" or float(info["time_remaining"]) > 1e6, info["time_remaining"]


def test_response_metadata_relayed(scri):
    _, call = full_call(scri, "RuntimeService", "Status", v1.StatusRequest())
    init = [(k, v) for k, v in call.initial_metadata() if k.startswith("x-backend")]
    trail = [(k, v) for k, v in call.trailing_metadata() if k.startswith("x-backend")]
    assert init == list(scriptfake.INIT_MD)
    assert trail == list(scriptfake.TRAIL_MD)
    assert call.code() == grpc.StatusCode.OK


def test_error_trailers_relayed(scri):
    """A Trailers-Only error from the backend: status, message and trailers
    (grpc-status-details-bin included) come back unchanged."""
    with pytest.raises(grpc.RpcError) as ei:
        full_call(scri, "ImageService", "ImageStatus", v1.ImageStatusRequest())
    e = ei.value
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert e.details() == "fake: no such image"
    got = [(k, v) for k, v in e.trailing_metadata() if k in ("x-backend-err", "grpc-status-details-bin")]
    assert got == list(scriptfake.ERR_TRAIL_MD)


def test_raw_response_headers(sfake_crisp):
    """What crisp sends on the wire: :status 200, content-type, the backend's
    metadata in the headers and trailers, grpc-status in the trailers."""
    with H2Client.unix(sfake_crisp.sock) as c:
        r = c.call("/runtime.v1.RuntimeService/Status", grpc_frame(b""), timeout=10 * SLOW)
    assert r.status == 200 and r.headers["content-type"] == "application/grpc"
    assert r.headers["x-backend-init"] == "init-value"
    assert r.trailers["grpc-status"] == "0"
    assert r.trailers["x-backend-trail"] == "trail value; with=odd,chars"
    assert "grpc-status" not in r.headers


def test_deadline_against_hanging_backend(scri, sfake):
    """The backend never answers: DEADLINE_EXCEEDED after about 1 s, and
    the backend's call is cancelled."""
    n = sfake.hang_cancelled
    t0 = time.time()
    code, _ = rpc_error(scri.rt, "ListPodSandbox", deadline=1.0)
    took = time.time() - t0
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.9 <= took < 1.5 * SLOW, "DEADLINE_EXCEEDED after %.2fs" % took
    assert sfake.wait_count("hang_cancelled", n + 1, 5 * SLOW), "the backend never saw the cancellation"


def test_crisp_own_deadline(sfake_crisp, sfake):
    """grpc-timeout 1S from a client that itself waits longer: the call ends
    at its deadline and the backend call is cancelled. (Against a backend that
    ignores deadlines: test_deadline_cancels_backend_stream.)"""
    n = sfake.hang_cancelled
    with H2Client.unix(sfake_crisp.sock) as c:
        t0 = time.time()
        r = c.call(LIST_PODS, grpc_frame(b""), grpc_timeout="1S", timeout=10 * SLOW)
        took = time.time() - t0
    assert r.grpc_status == 4, r
    # crisp's timer or the backend's own copy of the deadline, whichever fires first
    m = re.match(r"deadline exceeded after (\d+\.\d+)s$", r.grpc_message or "")
    assert (m and 0.95 <= float(m.group(1)) < 1.5 * SLOW) or r.grpc_message == "Deadline Exceeded", r
    assert 0.95 <= took < 1.5 * SLOW, took
    assert sfake.wait_count("hang_cancelled", n + 1, 5 * SLOW)


@pytest.mark.parametrize("early_ms,logged", [(5, "DEADLINE_EXCEEDED"), (400, "CANCELLED")],
                         ids=["at-deadline", "long-before"])
def test_client_reset_at_its_deadline(sfake_crisp, sfake, early_ms, logged):
    """grpc-go resets the stream (RST_STREAM CANCEL) when its own deadline
    fires, often a moment before crisp's timer: crisp logs that call as
    DEADLINE_EXCEEDED, not as a client cancel; a reset well before the
    deadline is a cancel."""
    mark = sfake_crisp.log_mark()
    with H2Client.unix(sfake_crisp.sock) as c:
        sid = c.start(LIST_PODS, grpc_frame(b""), grpc_timeout="500m")
        time.sleep(max(0.0, 0.5 - early_ms / 1000.0))
        c.reset(sid)
    line = sfake_crisp.wait_log(mark, r"event=call .*method=ListPodSandbox .*code=%s" % logged, timeout=5)
    if logged == "DEADLINE_EXCEEDED":
        # the client's reset, or crisp's own timer if the test slept late
        assert "deadline exceeded after" in line, line
    else:
        assert "client cancelled the call (RST_STREAM CANCEL)" in line, line


@pytest.mark.parametrize("value", ["0n", "0S"])
def test_zero_grpc_timeout(scri, sfake, value):
    """grpc-timeout 0: the deadline has passed. The backend alone (grpcio)
    answers DEADLINE_EXCEEDED at once; so must crisp, not run the call with
    no deadline at all."""
    target = scri.target[len("unix://"):]
    with H2Client.unix(target) as c:
        sid = c.start(LIST_PODS, grpc_frame(b""), grpc_timeout=value)
        try:
            r = c.wait(sid, 3 * SLOW)
        except AssertionError:
            c.reset(sid, CANCEL)
            raise AssertionError("no answer within 3 s to a call with grpc-timeout %s" % value)
    # grpcio answers DEADLINE_EXCEEDED, or resets the stream first
    assert r.grpc_status == 4 or (r.reset_code is not None and r.grpc_status is None), r
    if scri.name == "crisp":
        assert r.grpc_status == 4 and "before the call started" in (r.grpc_message or ""), r


def test_silent_socket_backend():
    """A backend socket that accepts and never speaks HTTP/2: calls end at
    their deadline, crisp stays healthy."""
    path = short_sock("silent")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except socket.timeout:
                pass
            except OSError:
                return
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    c = Crisp("silent", path)
    _crisp_instances.append(c)
    try:
        _start_without_probe(c)  # Crisp.start()'s Version probe would never be answered
        cl = CRIClient("unix://" + c.sock, "silent")
        try:
            for _ in range(2):
                t0 = time.time()
                code, _ = rpc_error(cl.rt, "Version", deadline=1.0)
                assert code == grpc.StatusCode.DEADLINE_EXCEEDED
                assert time.time() - t0 < 1.5 * SLOW
            with H2Client.unix(c.sock) as h:
                r = h.call("/runtime.v1.RuntimeService/Version", grpc_frame(b""), grpc_timeout="500m",
                           timeout=10 * SLOW)
            assert r.grpc_status == 4 and "deadline exceeded" in r.grpc_message, r
        finally:
            cl.close()
        assert c.alive()
        assert held, "crisp never connected to the backend"
    finally:
        stop_and_check(c, exited=not c.alive())
        stop.set()
        srv.close()
        for s in held:
            s.close()
        if os.path.exists(path):
            os.unlink(path)


def _start_without_probe(c):
    """Crisp.start() minus the Version probe: waits for the socket only."""
    os.makedirs(os.path.dirname(c.log), exist_ok=True)
    with open(c.log, "ab") as logf:
        logf.write(("# %s\n" % " ".join(c.args)).encode())
        logf.flush()
        c.proc = subprocess.Popen(c.args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    wait_for(lambda: os.path.exists(c.sock) or not c.alive(), timeout=60 if WRAPPED else 10,
             what="crisp's socket")
    assert c.alive(), _tail(c.log)


# ---------------------------------------------------------------------------
# cancellations reach the backend


def test_50_inflight_calls_reset(sfake_crisp, sfake):
    """50 calls at the backend, then RST_STREAM on all: the backend sees 50
    cancellations, crisp keeps serving on the same connection."""
    started0, cancelled0 = sfake.hang_started, sfake.hang_cancelled
    with H2Client.unix(sfake_crisp.sock) as c:
        sids = [c.start(LIST_PODS, grpc_frame(b"")) for _ in range(50)]
        assert sfake.wait_count("hang_started", started0 + 50, 10 * SLOW), \
            "only %d of 50 calls reached the backend" % (sfake.hang_started - started0)
        for sid in sids:
            c.reset(sid, CANCEL)
        assert sfake.wait_count("hang_cancelled", cancelled0 + 50, 10 * SLOW), \
            "the backend saw %d of 50 cancellations" % (sfake.hang_cancelled - cancelled0)
        r = c.call("/runtime.v1.RuntimeService/Version", grpc_frame(b""), timeout=10 * SLOW)
        assert r.grpc_status == 0, r


def test_client_disconnect_cancels_backend_calls(sfake_crisp, sfake):
    started0, cancelled0 = sfake.hang_started, sfake.hang_cancelled
    c = H2Client.unix(sfake_crisp.sock)
    for _ in range(5):
        c.start(LIST_PODS, grpc_frame(b""))
    assert sfake.wait_count("hang_started", started0 + 5, 10 * SLOW)
    c.close()
    assert sfake.wait_count("hang_cancelled", cancelled0 + 5, 10 * SLOW)
    sfake_crisp.check_serving()


def test_client_disconnect_mid_stream(sfake_crisp, sfake):
    """A streaming call whose client goes away: the backend's stream is cancelled."""
    sfake.cancelled.clear()
    c = H2Client.unix(sfake_crisp.sock)
    sid = c.start("/runtime.v1.RuntimeService/StreamContainerStats", grpc_frame(b""))
    r = c.responses[sid]
    wait_for(lambda: c.pump(1) and len(r.data) >= 3 * 10, timeout=10 * SLOW, what="some stream messages")
    c.close()
    wait_for(sfake.cancelled.is_set, timeout=5 * SLOW, what="the backend to see the cancellation")
    sfake_crisp.check_serving()


# ---------------------------------------------------------------------------
# response size cap (a backend answer over --max-message-size)


@pytest.fixture(scope="module")
def sfake_crisp64k(sfake):
    c = Crisp("scripted64k", sfake.sock, extra_args=["--max-message-size", "64K"])
    _crisp_instances.append(c)
    c.start()
    yield c
    stop_and_check(c)


def test_response_over_cap(sfake_crisp64k):
    cl = CRIClient("unix://" + sfake_crisp64k.sock, "cap")
    try:
        code, details = rpc_error(cl.img, "ListImages", deadline=10 * SLOW)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "response message of" in details and "exceeds the limit of 65536 bytes" in details, details
        # a stream whose messages fit passes, one with a message too big stops there
        ok = list(cl.img_stream("StreamImages", filter=v1.ImageFilter(image=v1.ImageSpec(image="5:60000")),
                                deadline=10 * SLOW))
        assert [m.images[0].id for m in ok] == ["img%d" % i for i in range(5)]
        got = []
        with pytest.raises(grpc.RpcError) as ei:
            for m in cl.img_stream("StreamImages", filter=v1.ImageFilter(image=v1.ImageSpec(image="3:70000")),
                                   deadline=10 * SLOW):
                got.append(m)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value
        assert got == []
    finally:
        cl.close()
    sfake_crisp64k.check_serving()


# ---------------------------------------------------------------------------
# back-pressure


class Reader:
    """Reads a response stream in a thread, so a stall can be seen (and
    the call cancelled) instead of waiting for the deadline."""

    def __init__(self, it, pause_every=0, pause=0.0):
        self.it = it
        self.ids = []
        self.error = None
        self.done = threading.Event()
        self.pause_every, self.pause = pause_every, pause
        self.bad_sizes = 0
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        try:
            for m in self.it:
                self.ids.append(m.images[0].id)
                if len(m.images[0].repo_tags[0]) != self.size:
                    self.bad_sizes += 1
                if self.pause_every and len(self.ids) % self.pause_every == 0:
                    time.sleep(self.pause)
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.done.set()

    def read_all(self, size, stall=5.0, limit=60.0):
        """All messages; fails if none arrives for `stall` seconds."""
        self.size = size
        self.t.start()
        last, last_n, end = time.time(), -1, time.time() + limit
        while not self.done.wait(0.1):
            if len(self.ids) != last_n:
                last, last_n = time.time(), len(self.ids)
            elif time.time() - last > stall or time.time() > end:
                self.it.cancel()
                self.done.wait(5)
                raise AssertionError("the stream stalled: no message for %.0fs after %d messages"
                                     % (stall, len(self.ids)))
        if self.error is not None:
            raise AssertionError("stream failed after %d messages: %s %s"
                                 % (len(self.ids), self.error.code(), self.error.details()))
        return self.ids


def big_stream(client, n, size, deadline=120):
    return client.img_stream("StreamImages", filter=v1.ImageFilter(image=v1.ImageSpec(image="%d:%d" % (n, size))),
                             deadline=deadline)


@pytest.mark.parametrize("n,size", [(12, 1 << 20), (200, 64 << 10)], ids=["12x1MiB", "200x64KiB"])
def test_big_stream_fast_reader(scri, n, size):
    """A reader that keeps up gets every message, in order (direct and via
    crisp), more than the relay's 8 MiB stream window in all."""
    ids = Reader(big_stream(scri, n, size)).read_all(size, stall=10 * SLOW)
    assert ids == ["img%d" % i for i in range(n)]


SLOW_N, SLOW_SIZE = 200, 1 << 20


def pause_after_first(crisp, sfake, client, seconds):
    """Starts the 200 x 1 MiB stream, reads one message, then reads nothing
    for `seconds`: returns (iterator, crisp's peak RSS growth in MiB, the
    backend's produced counts sampled every 0.1 s)."""
    crisp.check_serving()
    rss_idle = crisp.rss_kb()
    produced0 = sfake.produced
    it = big_stream(client, SLOW_N, SLOW_SIZE)
    first = next(it)
    assert first.images[0].id == "img0"
    peak, counts = rss_idle, []
    for _ in range(int(seconds * 10)):
        time.sleep(0.1)
        peak = max(peak, crisp.rss_kb())
        counts.append(sfake.produced - produced0)
    return it, (peak - rss_idle) / 1024.0, counts, produced0


@pytest.mark.skipif(WRAPPED, reason="crisp's RSS under a wrapper is the wrapper's")
def test_slow_reader_blocks_backend(sfake_crisp, sfake):
    """The backend streams 200 messages of 1 MiB; the client reads one and
    then nothing for 3 s. The backend must block (its count stops moving,
    far short of 200) and crisp's RSS must stay within 40 MiB of its idle
    value."""
    cl = CRIClient("unix://" + sfake_crisp.sock, "slow")
    try:
        _, grew, counts, _ = pause_after_first(sfake_crisp, sfake, cl, 3.0)
        assert counts[-1] < SLOW_N // 2, "the backend produced %d of %d messages to a client that " \
                                         "does not read" % (counts[-1], SLOW_N)
        assert counts[-1] == counts[-10], "the backend is not blocked: %s" % counts[-10:]
        assert grew < 40, "crisp's RSS grew by %.1f MiB while the backend was blocked" % grew
    finally:
        cl.close()
    sfake_crisp.check_serving()


def test_slow_reader_gets_everything(sfake_crisp, sfake):
    """After a 2 s pause, a reader that stays slow (0.3 s pause every 50
    messages) gets all 200 messages of 1 MiB, in order. (Until 56ba565 the
    relay never reopened the backend's window once the call's queue had
    reached its high-water mark: the stream stalled for good after 8 MiB.)"""
    cl = CRIClient("unix://" + sfake_crisp.sock, "slow")
    try:
        it, _, _, produced0 = pause_after_first(sfake_crisp, sfake, cl, 2.0)
        ids = Reader(it, pause_every=50, pause=0.3).read_all(SLOW_SIZE)
        assert ["img0"] + ids == ["img%d" % i for i in range(SLOW_N)]
        assert sfake.produced - produced0 == SLOW_N
    finally:
        cl.close()
    sfake_crisp.check_serving()


def test_big_unary_answer_slow_reader(sfake_crisp):
    """A 12 MiB unary answer to a client that takes its time (python-h2,
    1 s pause after the first bytes): it must all arrive (it stalled at
    8 MiB before 56ba565, like test_slow_reader_gets_everything)."""
    size = 12 << 20
    body = grpc_frame(v1.ListImagesRequest(filter=v1.ImageFilter(image=v1.ImageSpec(image=str(size))))
                      .SerializeToString())
    with H2Client.unix(sfake_crisp.sock) as c:
        sid = c.start("/runtime.v1.ImageService/ListImages", body)
        r = c.responses[sid]
        wait_for(lambda: c.pump(1) and r.data, timeout=10 * SLOW, what="the first bytes")
        time.sleep(1.0)
        last, last_len = time.time(), -1
        while not r.done and time.time() - last < 5 * SLOW:
            c.pump(0.2)
            if len(r.data) != last_len:
                last, last_len = time.time(), len(r.data)
        assert r.done, "the answer stalled after %d of %d bytes" % (len(r.data), size)
    assert r.grpc_status == 0, r
    img = v1.ListImagesResponse.FromString(r.messages()[0]).images[0]
    assert len(img.repo_tags[0]) == size


def test_big_unary_answer(scri):
    """A 12 MiB answer to grpcio (a reader that keeps up)."""
    r = scri.img("ListImages", filter=v1.ImageFilter(image=v1.ImageSpec(image=str(12 << 20))), deadline=30 * SLOW)
    assert len(r.images[0].repo_tags[0]) == 12 << 20


# ---------------------------------------------------------------------------
# a backend that dies and comes back (a process of its own)


class FakeProc:
    """scriptfake.py as its own process on a fixed socket path."""

    def __init__(self, sock):
        self.sock = sock
        self.proc = None
        self.log = os.path.join(WORK, "logs", "scriptfake-%s.log" % os.path.basename(sock))

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "scriptfake.py"), self.sock],
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, cwd=HERE)
        logf.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("scriptfake exited: %s" % open(self.log).read()[-2000:])
            if not os.path.exists(self.sock):
                return False
            c = CRIClient("unix://" + self.sock, "probe")   # a fresh channel: no reconnect backoff
            try:
                return c.rt("Version", deadline=1).runtime_name == "fake-cri"
            except grpc.RpcError:
                return False
            finally:
                c.close()
        wait_for(up, timeout=30, interval=0.05, what="scriptfake to serve")
        return self

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.kill()


@pytest.fixture
def killable():
    """(fake process, crisp in front of it)."""
    f = FakeProc(short_sock("killable")).start()
    c = Crisp("killable", f.sock)
    _crisp_instances.append(c)
    c.start()
    yield f, c
    f.stop()
    stop_and_check(c)
    for p in (f.sock, f.log):
        if os.path.exists(p):
            os.unlink(p)


def test_backend_killed_mid_call(killable):
    fake, crisp = killable
    cl = CRIClient("unix://" + crisp.sock, "victim")
    out = {}

    def unary():
        out["unary"] = rpc_error(cl.rt, "ListPodSandbox", deadline=30)
        out["unary_at"] = time.time()
    th = threading.Thread(target=unary)
    try:
        th.start()
        stream = cl.rt_stream("StreamContainerStats", deadline=30)
        got = [next(stream) for _ in range(3)]
        assert [g.container_stats[0].attributes.id for g in got] == ["s0", "s1", "s2"]
        time.sleep(0.3)
        mark = crisp.log_mark()
        t_kill = time.time()
        fake.kill()
        with pytest.raises(grpc.RpcError) as ei:
            for _ in stream:
                pass
        stream_took = time.time() - t_kill
        th.join(10)
        for code, details in (out["unary"], (ei.value.code(), ei.value.details())):
            assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
            assert fake.sock in details, "the message does not name the backend: %r" % details
            assert "connection lost" in details, details
        assert out["unary_at"] - t_kill < 2 * SLOW
        assert stream_took < 2 * SLOW
        assert "event=backend_lost" in crisp.log_since(mark)
    finally:
        cl.close()
    assert crisp.alive()


def test_backend_down_fails_fast(killable):
    fake, crisp = killable
    fake.kill()     # the socket file stays: connect() is refused
    cl = CRIClient("unix://" + crisp.sock, "down")
    try:
        for _ in range(5):
            t0 = time.time()
            code, details = rpc_error(cl.rt, "Version", deadline=10)
            took = time.time() - t0
            assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
            assert fake.sock in details and "unavailable" in details, details
            assert took < 1.0, "UNAVAILABLE took %.2fs" % took
        os.unlink(fake.sock)    # and when the socket is gone altogether
        t0 = time.time()
        code, details = rpc_error(cl.rt, "Status", deadline=10)
        assert code == grpc.StatusCode.UNAVAILABLE and fake.sock in details, details
        assert "No such file or directory" in details, details
        assert time.time() - t0 < 1.0
    finally:
        cl.close()
    assert crisp.alive()


def test_backend_restart_recovers(killable):
    """Killed, then back on the same socket: crisp reconnects by itself
    (no call needed) and calls succeed again, without restarting crisp."""
    fake, crisp = killable
    pid = crisp.pid
    cl = CRIClient("unix://" + crisp.sock, "recover")
    try:
        fake.kill()
        code, _ = rpc_error(cl.rt, "Version", deadline=5)
        assert code == grpc.StatusCode.UNAVAILABLE
        time.sleep(2.5)   # let the reconnect backoff grow to its 2 s ceiling
        mark = crisp.log_mark()
        fake.start()    # returns once the fake answers on its socket
        # the retry timer (backoff at its 2 s ceiling by now) finds it
        crisp.wait_log(mark, r"event=backend_connected", timeout=3.0 * SLOW)
        assert cl.rt("Version", deadline=5).runtime_name == "fake-cri"
        evs = list(cl.rt_stream("GetContainerEvents", deadline=10))
        assert len(evs) == 100
    finally:
        cl.close()
    assert crisp.pid == pid and crisp.alive()


def test_backend_restart_first_call_succeeds(killable):
    """A call arriving while crisp waits to retry reconnects at once."""
    fake, crisp = killable
    cl = CRIClient("unix://" + crisp.sock, "recover")
    try:
        fake.kill()
        for _ in range(3):
            assert rpc_error(cl.rt, "Version", deadline=5)[0] == grpc.StatusCode.UNAVAILABLE
            time.sleep(0.5)
        fake.start()
        t0 = time.time()
        ok = None
        while time.time() - t0 < 3:
            try:
                ok = cl.rt("Version", deadline=2)
                break
            except grpc.RpcError:
                time.sleep(0.05)
        assert ok is not None and ok.runtime_name == "fake-cri", "no successful call within 3 s"
        assert time.time() - t0 < 0.5, "the first call after the restart took %.2fs" % (time.time() - t0)
    finally:
        cl.close()


def test_backend_graceful_stop_lets_call_finish():
    """The backend stops gracefully (GOAWAY, 3 s grace) while a stream is in
    flight: the stream completes through crisp; a new call then fails with
    UNAVAILABLE; a new backend on the same socket is picked up."""
    path = short_sock("graceful")
    f = scriptfake.ScriptedFake(path).start()
    c = Crisp("graceful", path)
    _crisp_instances.append(c)
    c.start()
    cl = CRIClient("unix://" + c.sock, "graceful")
    f2 = None
    try:
        mark = c.log_mark()
        it = cl.rt_stream("StreamPodSandboxes", deadline=20)
        first = next(it)     # the fake now pauses 1 s before the second message
        stopped = f.server.stop(grace=3)
        rest = list(it)
        assert [first.pod_sandboxes[0].id] + [m.pod_sandboxes[0].id for m in rest] == ["first", "second"]
        assert it.code() == grpc.StatusCode.OK
        c.wait_log(mark, r"event=backend_goaway", timeout=5 * SLOW)
        stopped.wait(5)
        code, details = rpc_error(cl.rt, "Version", deadline=5)
        assert code == grpc.StatusCode.UNAVAILABLE and path in details, (code, details)
        f2 = scriptfake.ScriptedFake(path).start()
        wait_for(lambda: _version_ok(cl), timeout=3 * SLOW, what="crisp to use the new backend")
    finally:
        cl.close()
        stop_and_check(c)
        if f2:
            f2.stop()


def _version_ok(cl):
    try:
        return cl.rt("Version", deadline=2).runtime_name == "fake-cri"
    except grpc.RpcError:
        return False
