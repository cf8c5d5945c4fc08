"""Bad input at the HTTP/2 and gRPC layers: crisp answers each with the exact
status it documents (code and the key phrase of its message), never crashes
or hangs, and keeps serving: after every test a Version call on a fresh
connection must succeed and the process must be alive.

These are crisp's own answers (containerd is only the backend behind it), so
they run against crisp only. Requests grpcio refuses to make are sent with
python3-h2 (h2raw.H2Client) or as raw frames."""
import re
import struct
import threading
import time

import grpc
import pytest
from h2.settings import SettingCodes

from conftest import Crisp, WRAPPED, _crisp_instances, stop_and_check
from crilib import CRIClient, v1
from h2raw import (CANCEL, COMPRESSION_ERROR, DATA, END_HEADERS, END_STREAM, FRAME_SIZE_ERROR, HEADERS,
                   PING, PREFACE, PRIORITY, PROTOCOL_ERROR, SETTINGS, WINDOW_UPDATE, H2Client, frame, goaway_of,
                   grpc_frame, read_frames, unix_connect)

VERSION = "/runtime.v1.RuntimeService/Version"
OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 0, 3, 8, 12, 13
WAIT = 30.0 if WRAPPED else 10.0


@pytest.fixture
def fe(crisp):
    """The session's crisp (in front of containerd); afterwards it must still serve."""
    mark = crisp.log_mark()
    yield crisp
    crisp.check_serving("after a protocol test")
    assert "event=stopped" not in crisp.log_since(mark)


def h2(crisp):
    return H2Client.unix(crisp.sock, timeout=WAIT)


def expect(r, code, phrase, http_status=200):
    """A complete gRPC answer with grpc-status `code` and `phrase` in grpc-message."""
    assert r.ended, r
    assert r.status == http_status, (r, r.headers)
    assert r.headers.get("content-type", "").startswith("application/grpc"), r.headers
    assert r.grpc_status == code, r
    assert phrase in (r.grpc_message or ""), "%r not in %r" % (phrase, r.grpc_message)


def version_body(version="0.1.0"):
    return grpc_frame(v1.VersionRequest(version=version).SerializeToString())


# ---------------------------------------------------------------------------
# the connection itself


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    bytes(range(256)) * 4,
    b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n",
], ids=["http1", "binary", "wrong-preface"])
def test_garbage_instead_of_preface(fe, garbage):
    mark = fe.log_mark()
    s = unix_connect(fe.sock)
    try:
        s.sendall(garbage)
        frames, closed = read_frames(s, WAIT)
    finally:
        s.close()
    assert closed, "crisp kept the connection open after %r...: %s" % (garbage[:16], frames)
    ga = goaway_of(frames)
    assert ga is None or ga[1] == PROTOCOL_ERROR, ga
    fe.wait_log(mark, r"event=h2_bad_input .*bad client magic")


@pytest.mark.skipif(WRAPPED, reason="10 s of waiting: not worth it under valgrind")
@pytest.mark.parametrize("first", [b"", b"PRI * HTTP/2.0\r\n"], ids=["silent", "half-preface"])
def test_silent_client_is_dropped(fe, first):
    """A client that connects and never finishes the HTTP/2 preface and
    SETTINGS is dropped after 10 s, instead of holding a descriptor for
    ever; a client that finishes in time is not."""
    mark = fe.log_mark()
    s = unix_connect(fe.sock)
    t0 = time.time()
    try:
        if first:
            s.sendall(first)
        frames, closed = read_frames(s, 15)
    finally:
        s.close()
    took = time.time() - t0
    assert closed and 9.5 <= took < 13, (closed, took, frames)
    fe.wait_log(mark, r"event=conn_hello_timeout")
    # an idle client that did say hello is kept past the hello timeout
    c = CRIClient("unix://" + fe.sock, "idle")
    try:
        c.rt("Version", v1.VersionRequest())
        time.sleep(11)
        c.rt("Version", v1.VersionRequest())
    finally:
        c.close()


MALFORMED = [
    # (id, frames after the preface and an empty SETTINGS, GOAWAY error code)
    ("data-on-stream-0", frame(DATA, 0, 0, b"abc"), PROTOCOL_ERROR),
    ("headers-on-stream-0", frame(HEADERS, END_HEADERS, 0, b"\x82"), PROTOCOL_ERROR),
    ("settings-length-not-multiple-of-6", frame(SETTINGS, 0, 0, b"\0" * 5), FRAME_SIZE_ERROR),
    ("frame-over-max-frame-size", frame(DATA, 0, 1, b"", length=(1 << 24) - 1), FRAME_SIZE_ERROR),
    ("ping-length-7", frame(PING, 0, 0, b"1234567"), FRAME_SIZE_ERROR),
    ("window-update-zero", frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\0"), PROTOCOL_ERROR),
    ("even-client-stream", frame(HEADERS, END_HEADERS | END_STREAM, 2, b"\x83\x86"), PROTOCOL_ERROR),
    ("bad-hpack", frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\xff\xff"), COMPRESSION_ERROR),
]


@pytest.mark.parametrize("bad,code", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_frame_gets_goaway(fe, bad, code):
    s = unix_connect(fe.sock)
    try:
        s.sendall(PREFACE + frame(SETTINGS, 0, 0, b"") + bad)
        frames, closed = read_frames(s, WAIT)
    finally:
        s.close()
    ga = goaway_of(frames)
    assert ga is not None, "no GOAWAY; frames: %s" % [(f[0], f[2]) for f in frames]
    assert ga[1] == code, "GOAWAY error %d, want %d (%r)" % (ga[1], code, ga[2])
    assert closed, "connection not closed after GOAWAY"


def test_malformed_frame_after_good_call(fe):
    """A connection that served a call and then breaks the protocol is
    closed with GOAWAY whose last-stream-id covers the call it served."""
    s = unix_connect(fe.sock)
    try:
        with H2Client(s) as c:
            r = c.call(VERSION, version_body(), timeout=WAIT)
            expect(r, OK, "")
            s.sendall(frame(DATA, 0, 0, b"x"))
            frames, closed = read_frames(s, WAIT)
    finally:
        s.close()
    ga = goaway_of(frames)
    assert ga is not None and ga[1] == PROTOCOL_ERROR and ga[0] == 1, ga
    assert closed


# ---------------------------------------------------------------------------
# request headers


def test_wrong_content_type(fe):
    with h2(fe) as c:
        r = c.call(VERSION, version_body(), content_type="application/json", timeout=WAIT)
    expect(r, INVALID_ARGUMENT, "invalid gRPC request content-type", http_status=415)


def test_missing_content_type(fe):
    with h2(fe) as c:
        r = c.call(VERSION, version_body(), content_type=None, timeout=WAIT)
    expect(r, INVALID_ARGUMENT, "content-type", http_status=415)


@pytest.mark.parametrize("ctype", ["application/grpc+proto", "application/grpc;charset=utf-8"])
def test_grpc_content_type_variants_accepted(fe, ctype):
    with h2(fe) as c:
        r = c.call(VERSION, version_body(), content_type=ctype, timeout=WAIT)
    expect(r, OK, "")
    assert v1.VersionResponse.FromString(r.messages()[0]).runtime_name == "containerd"


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_not_post(fe, method):
    with h2(fe) as c:
        r = c.call(VERSION, None, method=method, timeout=WAIT)
    expect(r, INTERNAL, "requires method POST", http_status=405)


@pytest.mark.parametrize("path,phrase", [
    ("/runtime.v1.NoSuchService/Version", "unknown service in /runtime.v1.NoSuchService/Version"),
    ("/grpc.health.v1.Health/Check", "unknown service in /grpc.health.v1.Health/Check"),
    ("/runtime.v1.RuntimeService/NoSuchMethod", "unknown method /runtime.v1.RuntimeService/NoSuchMethod"),
    ("/runtime.v1.ImageService/Version", "unknown method /runtime.v1.ImageService/Version"),
    ("/runtime.v1alpha2.RuntimeService/CheckpointContainer",
     "unknown method /runtime.v1alpha2.RuntimeService/CheckpointContainer"),
    ("/runtime.v1alpha2.RuntimeService/GetContainerEvents",
     "unknown method /runtime.v1alpha2.RuntimeService/GetContainerEvents"),
    ("/runtime.v1alpha2.RuntimeService/RuntimeConfig",
     "unknown method /runtime.v1alpha2.RuntimeService/RuntimeConfig"),
], ids=["unknown-service", "health-service", "unknown-method", "method-on-wrong-service",
        "v1alpha2-checkpoint", "v1alpha2-events", "v1alpha2-runtimeconfig"])
def test_unimplemented_paths(fe, path, phrase):
    with h2(fe) as c:
        r = c.call(path, grpc_frame(b""), timeout=WAIT)
    expect(r, UNIMPLEMENTED, phrase)


def test_unimplemented_through_grpcio(fe):
    """The same answers as a grpcio client sees them."""
    c = CRIClient("unix://" + fe.sock, "crisp")
    try:
        for path, phrase in [("/runtime.v1.NoSuchService/Version", "unknown service"),
                             ("/runtime.v1alpha2.RuntimeService/ListMetricDescriptors", "unknown method")]:
            with pytest.raises(grpc.RpcError) as ei:
                c.raw(path, b"", deadline=WAIT)
            assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert phrase in ei.value.details() and path in ei.value.details()
    finally:
        c.close()


def test_grpc_encoding_gzip(fe):
    with h2(fe) as c:
        r = c.call(VERSION, version_body(), extra=[("grpc-encoding", "gzip")], timeout=WAIT)
    expect(r, UNIMPLEMENTED, "grpc-encoding gzip is not supported")


def test_grpc_encoding_gzip_through_grpcio(fe):
    """grpcio with gzip compression: UNIMPLEMENTED (crisp accepts identity only)."""
    ch = grpc.insecure_channel("unix://" + fe.sock, options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        stub = ch.unary_unary(VERSION, request_serializer=v1.VersionRequest.SerializeToString,
                              response_deserializer=v1.VersionResponse.FromString)
        with pytest.raises(grpc.RpcError) as ei:
            stub(v1.VersionRequest(version="0.1.0"), timeout=WAIT, compression=grpc.Compression.Gzip)
        assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "grpc-encoding gzip is not supported" in ei.value.details()
    finally:
        ch.close()


def test_grpc_encoding_identity_accepted(fe):
    with h2(fe) as c:
        r = c.call(VERSION, version_body(), extra=[("grpc-encoding", "identity")], timeout=WAIT)
    expect(r, OK, "")


@pytest.mark.parametrize("value", ["abc", "1x", "S", "", "-1S", "1.5S", "123456789S", "10 S", "1s"])
def test_malformed_grpc_timeout(fe, value):
    with h2(fe) as c:
        r = c.call(VERSION, version_body(), grpc_timeout=value, timeout=WAIT)
    expect(r, INVALID_ARGUMENT, 'malformed grpc-timeout "%s"' % value)


@pytest.mark.parametrize("value", ["1H", "99999999S", "5000m", "99999999u", "99999999M"])
def test_wellformed_grpc_timeout_accepted(fe, value):
    with h2(fe) as c:
        r = c.call(VERSION, version_body(), grpc_timeout=value, timeout=WAIT)
    expect(r, OK, "")


def test_too_much_metadata(fe):
    """80 headers of 1 KB: over crisp's 64 KiB metadata budget per call."""
    extra = [("x-md-%02d" % i, "v" * 1000) for i in range(80)]
    with h2(fe) as c:
        r = c.call(VERSION, version_body(), extra=extra, timeout=WAIT)
    expect(r, RESOURCE_EXHAUSTED, "request metadata exceeds 65536 bytes")


def test_metadata_under_budget_accepted(fe):
    extra = [("x-md-%02d" % i, "v" * 1000) for i in range(40)]
    with h2(fe) as c:
        r = c.call(VERSION, version_body(), extra=extra, timeout=WAIT)
    expect(r, OK, "")


def test_oversized_header_field(fe):
    """One 100 KB header value is more than nghttp2's HPACK decoder takes:
    the connection ends with GOAWAY COMPRESSION_ERROR; crisp keeps serving
    other connections."""
    s = unix_connect(fe.sock)
    try:
        c = H2Client(s)
        try:
            c.start(VERSION, version_body(), extra=[("x-big", "v" * 100000)])
        except (BrokenPipeError, ConnectionResetError):
            pass
        frames, closed = read_frames(s, WAIT)
    finally:
        s.close()
    ga = goaway_of(frames)
    assert ga is not None and ga[1] == COMPRESSION_ERROR, (ga, [(f[0], f[2]) for f in frames])
    assert closed


def test_huge_header_block(fe):
    """16 MiB of headers over CONTINUATION frames: refused, not buffered."""
    rss0 = fe.rss_kb()
    s = unix_connect(fe.sock)
    try:
        c = H2Client(s)
        try:
            c.start(VERSION, version_body(), extra=[("x-big-%d" % i, "v" * (1 << 20)) for i in range(16)])
        except (BrokenPipeError, ConnectionResetError):
            pass
        frames, closed = read_frames(s, WAIT)
    finally:
        s.close()
    ga = goaway_of(frames)
    assert ga is not None and ga[1] != 0, ga
    assert closed
    if not WRAPPED:
        assert fe.rss_kb() - rss0 < 8 * 1024, "crisp grew by %d kB" % (fe.rss_kb() - rss0)


# ---------------------------------------------------------------------------
# request body (gRPC framing)


def test_truncated_frame(fe):
    """The prefix says 100 bytes, 10 come, then END_STREAM."""
    with h2(fe) as c:
        r = c.call(VERSION, grpc_frame(b"\x0a\x08" + b"x" * 8, declared=100), timeout=WAIT)
    expect(r, INVALID_ARGUMENT, "truncated gRPC message: the request ended after 15 bytes of a frame")


def test_truncated_prefix(fe):
    with h2(fe) as c:
        r = c.call(VERSION, b"\0\0\0", timeout=WAIT)
    expect(r, INVALID_ARGUMENT, "truncated gRPC message: the request ended after 3 bytes")


@pytest.mark.parametrize("body", [None, b""], ids=["end-on-headers", "empty-data"])
def test_no_message(fe, body):
    with h2(fe) as c:
        r = c.call(VERSION, body, timeout=WAIT)
    expect(r, INVALID_ARGUMENT, "the request carries no message")


def test_two_messages_in_unary_call(fe):
    with h2(fe) as c:
        r = c.call(VERSION, version_body() + version_body(), timeout=WAIT)
    expect(r, INVALID_ARGUMENT, "Version is a unary-request RPC but the request carries more than one message")


def test_two_messages_in_separate_data_frames(fe):
    with h2(fe) as c:
        sid = c.start(VERSION, version_body(), end_stream=False)
        c.send_data(sid, version_body(), end_stream=True)
        r = c.wait(sid, WAIT)
    expect(r, INVALID_ARGUMENT, "more than one message")


def test_message_split_over_many_data_frames(fe):
    """One message in 1-byte DATA frames is fine."""
    body = version_body("1.2.3")
    with h2(fe) as c:
        sid = c.start(VERSION, None, end_stream=False)
        for i in range(len(body)):
            c.send_data(sid, body[i:i + 1], end_stream=i == len(body) - 1)
        r = c.wait(sid, WAIT)
    expect(r, OK, "")
    assert v1.VersionResponse.FromString(r.messages()[0]).version == "0.1.0"


def test_compressed_flag(fe):
    with h2(fe) as c:
        r = c.call(VERSION, grpc_frame(b"", compressed=True), timeout=WAIT)
    expect(r, INTERNAL, "compressed gRPC message without a grpc-encoding crisp accepts")


@pytest.mark.parametrize("body", [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x08"], ids=["ff", "short-string", "lone-tag"])
def test_garbage_protobuf(fe, body):
    with h2(fe) as c:
        r = c.call(VERSION, grpc_frame(body), timeout=WAIT)
    expect(r, INVALID_ARGUMENT, "request is not a valid runtime.v1.VersionRequest message (%d bytes)" % len(body))


def test_garbage_protobuf_through_grpcio(fe):
    c = CRIClient("unix://" + fe.sock, "crisp")
    try:
        with pytest.raises(grpc.RpcError) as ei:
            c.raw("/runtime.v1.ImageService/ImageStatus", b"\x0a\xff", deadline=WAIT)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid runtime.v1.ImageStatusRequest message (2 bytes)" in ei.value.details()
    finally:
        c.close()


def test_declared_length_over_default_cap(fe):
    """Refused from the 5-byte prefix alone: nothing more is sent."""
    with h2(fe) as c:
        sid = c.start(VERSION, grpc_frame(b"", declared=(16 << 20) + 1), end_stream=False)
        r = c.wait(sid, WAIT)
    expect(r, RESOURCE_EXHAUSTED,
           "request message of 16777217 bytes exceeds the limit of 16777216 bytes (--max-message-size)")


def test_17mib_message_default_cap(fe):
    """A real 17 MiB request from grpcio against the default 16 MiB cap."""
    ch = grpc.insecure_channel("unix://" + fe.sock, options=[
        ("grpc.max_send_message_length", -1), ("grpc.use_local_subchannel_pool", 1)])
    try:
        stub = ch.unary_unary(VERSION, request_serializer=v1.VersionRequest.SerializeToString,
                              response_deserializer=v1.VersionResponse.FromString)
        req = v1.VersionRequest(version="v" * (17 << 20))
        with pytest.raises(grpc.RpcError) as ei:
            stub(req, timeout=60 if WRAPPED else 20)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value
        assert ("request message of %d bytes exceeds the limit of 16777216 bytes" % req.ByteSize()
                in ei.value.details())
    finally:
        ch.close()


@pytest.fixture(scope="module")
def crisp64k(testenv):
    c = Crisp("max64k", testenv.CONTAINERD_SOCK, extra_args=["--max-message-size", "64K"])
    _crisp_instances.append(c)
    c.start()
    yield c
    stop_and_check(c)


def padded_version(total):
    """A serialized VersionRequest of exactly `total` bytes (total >= 200)."""
    for pad in range(total - 8, total):
        b = v1.VersionRequest(version="p" * pad).SerializeToString()
        if len(b) == total:
            return b
    raise AssertionError("cannot pad to %d" % total)


def test_small_cap_boundary(crisp64k):
    """--max-message-size 64K: a 65536-byte request passes, 65537 does not."""
    c = CRIClient("unix://" + crisp64k.sock, "crisp64k")
    try:
        r = c.raw(VERSION, padded_version(65536), deadline=WAIT)
        assert v1.VersionResponse.FromString(r).runtime_name == "containerd"
        with pytest.raises(grpc.RpcError) as ei:
            c.raw(VERSION, padded_version(65537), deadline=WAIT)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ei.value.details() == ("request message of 65537 bytes exceeds the limit of 65536 bytes "
                                      "(--max-message-size)")
    finally:
        c.close()
    crisp64k.check_serving()


def test_small_cap_1mib_request(crisp64k):
    """A 1 MiB request against a 64K cap: refused at the prefix while the
    client is still sending; the same connection is still good afterwards."""
    c = CRIClient("unix://" + crisp64k.sock, "crisp64k")
    try:
        with pytest.raises(grpc.RpcError) as ei:
            c.rt("Version", version="x" * (1 << 20), deadline=WAIT)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "exceeds the limit of 65536 bytes" in ei.value.details()
        assert c.rt("Version", deadline=WAIT).runtime_name == "containerd"
    finally:
        c.close()
    crisp64k.check_serving()


# ---------------------------------------------------------------------------
# clients that go away


def test_50_streams_reset_mid_request(fe):
    """50 streams, each with half a message sent, then RST_STREAM CANCEL on
    all of them: every call ends CANCELLED, and the same connection still
    serves a call afterwards."""
    mark = fe.log_mark()
    with h2(fe) as c:
        sids = [c.start(VERSION, grpc_frame(b"\x0a\x08" + b"x" * 3, declared=10), end_stream=False)
                for _ in range(50)]
        for sid in sids:
            c.reset(sid, CANCEL)
        r = c.call(VERSION, version_body(), timeout=WAIT)
        expect(r, OK, "")
        assert c.goaway is None
    fe.wait_log(mark, r"method=Version api=v1 code=CANCELLED .*client cancelled the call \(RST_STREAM CANCEL\)",
                count=50, timeout=WAIT)


def test_rst_after_complete_request(fe):
    """RST right after a complete request: whatever happens to the call,
    the connection keeps working."""
    with h2(fe) as c:
        for _ in range(20):
            sid = c.start(VERSION, version_body())
            c.reset(sid, CANCEL)
        r = c.call(VERSION, version_body(), timeout=WAIT)
        expect(r, OK, "")


def test_disconnect_mid_message(fe):
    mark = fe.log_mark()
    s = unix_connect(fe.sock)
    c = H2Client(s)
    c.start(VERSION, grpc_frame(b"\x0a\x20" + b"y" * 10, declared=34), end_stream=False)
    c.sync(WAIT)
    s.close()
    fe.wait_log(mark, r"method=Version api=v1 code=CANCELLED .*client connection closed", timeout=WAIT)


def test_disconnect_mid_header_block(fe):
    """HEADERS without END_HEADERS, then the client vanishes."""
    mark = fe.log_mark()
    s = unix_connect(fe.sock)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0, b"") + frame(HEADERS, 0, 1, b"\x83\x86"))
    time.sleep(0.2)
    s.close()
    fe.check_serving()
    assert "event=h2_bad_input" not in fe.log_since(mark)


def test_many_connections_dropped_at_once(fe):
    """20 connections with calls half sent, closed together."""
    socks = []
    for _ in range(20):
        s = unix_connect(fe.sock)
        c = H2Client(s)
        c.start(VERSION, grpc_frame(b"\x0a", declared=10), end_stream=False)
        c.sync(WAIT)   # crisp has the call
        socks.append(s)
    mark = fe.log_mark()
    for s in socks:
        s.close()
    fe.wait_log(mark, r"method=Version api=v1 code=CANCELLED .*client connection closed", count=20,
                timeout=WAIT)


def test_connection_closed_while_answer_pending(fe):
    """Close right after sending complete requests: crisp's answers have
    nowhere to go; nothing may break."""
    def one():
        s = unix_connect(fe.sock)
        c = H2Client(s)
        for _ in range(5):
            c.start("/runtime.v1.RuntimeService/Status", grpc_frame(b""))
        s.close()
    ts = [threading.Thread(target=one) for _ in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(WAIT)
    for _ in range(3):
        fe.check_serving()


def test_ping_answered(fe):
    """A PING gets its ACK with the same payload (keepalives work)."""
    s = unix_connect(fe.sock)
    try:
        s.sendall(PREFACE + frame(SETTINGS, 0, 0, b"") + frame(PING, 0, 0, b"crisp!!!"))
        frames, _ = read_frames(s, WAIT, until=lambda fs: any(f[0] == PING and f[1] & 1 for f in fs))
    finally:
        s.close()
    acks = [f for f in frames if f[0] == PING and f[1] & 1]
    assert acks and acks[0][3] == b"crisp!!!", frames


# ---------------------------------------------------------------------------
# unusual but valid HTTP/2


def test_request_trailers_accepted(fe):
    """A request that ends with a trailers block instead of END_STREAM on DATA."""
    with h2(fe) as c:
        sid = c.start(VERSION, version_body(), end_stream=False)
        c.conn.send_headers(sid, [("x-request-trailer", "1")], end_stream=True)
        c.flush()
        r = c.wait(sid, WAIT)
    expect(r, OK, "")


def test_padded_data_accepted(fe):
    with h2(fe) as c:
        sid = c.start(VERSION, None, end_stream=False)
        c.conn.send_data(sid, version_body(), end_stream=True, pad_length=200)
        c.flush()
        r = c.wait(sid, WAIT)
    expect(r, OK, "")


def test_unknown_frame_type_and_priority_ignored(fe):
    with h2(fe) as c:
        c.sock.sendall(frame(0xFA, 0, 0, b"extension") + frame(PRIORITY, 0, 1, b"\0\0\0\0\x10"))
        r = c.call(VERSION, version_body(), timeout=WAIT)
        expect(r, OK, "")
        assert c.goaway is None


def test_priority_signals_ignored(fe):
    """crisp advertises SETTINGS_NO_RFC7540_PRIORITIES (RFC 9218): a client
    that still sends RFC 7540 priorities (HEADERS with a dependency on a
    stream already closed, PRIORITY frames for closed and idle streams) gets
    every answer, in full."""
    import hpack
    enc, dec = hpack.Encoder(), hpack.Decoder()
    hs = [(":method", "POST"), (":scheme", "http"), (":path", VERSION), (":authority", "x"),
          ("content-type", "application/grpc"), ("te", "trailers")]
    sids = list(range(1, 41, 2))
    s = unix_connect(fe.sock)
    try:
        out = PREFACE + frame(SETTINGS, 0, 0, b"") + frame(SETTINGS, 1, 0, b"")
        for sid in sids:
            dep = struct.pack(">IB", (max(sid - 2, 0)) | 0x80000000, 200)  # exclusive, weight 201
            out += frame(HEADERS, END_HEADERS | 0x20, sid, dep + enc.encode(hs))
            out += frame(DATA, END_STREAM, sid, version_body())
            out += frame(PRIORITY, 0, max(sid - 2, 1), struct.pack(">IB", sid + 100, 16))
        s.sendall(out)

        def all_ended(frames):
            return len({f[2] for f in frames if f[0] == HEADERS and f[1] & END_STREAM}) == len(sids)
        frames, closed = read_frames(s, WAIT, until=all_ended)
    finally:
        s.close()
    settings = [f for f in frames if f[0] == SETTINGS and not f[1] & 1][0][3]
    params = dict(struct.unpack(">HI", settings[i:i + 6]) for i in range(0, len(settings), 6))
    assert params.get(9) == 1, params   # SETTINGS_NO_RFC7540_PRIORITIES
    assert goaway_of(frames) is None and not closed
    status = {}
    for t, flags, sid, p in frames:
        if t == HEADERS:
            block = dict(dec.decode(p))
            if flags & END_STREAM:
                status[sid] = block.get("grpc-status")
    assert status == {sid: "0" for sid in sids}, status
    data = {sid: sum(len(p) for t, _, i, p in frames if t == DATA and i == sid) for sid in sids}
    assert all(n > 5 for n in data.values()), data


def test_client_window_zero_then_opened(fe):
    """A client that advertises a 0-byte stream window gets the headers, no
    DATA, and the rest once it opens the window (crisp waits, does not drop)."""
    st = {SettingCodes.ENABLE_PUSH: 0, SettingCodes.INITIAL_WINDOW_SIZE: 0}
    with H2Client(unix_connect(fe.sock), settings=st) as c:
        sid = c.start("/runtime.v1.RuntimeService/Status", grpc_frame(b""))
        r = c.responses[sid]
        end = time.time() + (3 if WRAPPED else 1)
        while time.time() < end and not r.done:
            c.pump(0.1)
        assert not r.done and r.data == b"", r
        c.conn.increment_flow_control_window(1 << 20, stream_id=sid)
        c.flush()
        r = c.wait(sid, WAIT)
    expect(r, OK, "")
    assert v1.StatusResponse.FromString(r.messages()[0]).status.conditions


@pytest.fixture(scope="module")
def crisp4(testenv):
    c = Crisp("streams4", testenv.CONTAINERD_SOCK, extra_args=["--max-streams", "4"])
    _crisp_instances.append(c)
    c.start()
    yield c
    stop_and_check(c)


def test_max_streams_advertised_and_enforced(crisp4):
    """--max-streams 4: SETTINGS says 4; a 5th open stream (after the client
    acknowledged that) ends the connection with GOAWAY PROTOCOL_ERROR."""
    import hpack
    enc = hpack.Encoder()
    hs = [(":method", "POST"), (":scheme", "http"), (":path", VERSION), (":authority", "x"),
          ("content-type", "application/grpc"), ("te", "trailers")]
    s = unix_connect(crisp4.sock)
    try:
        out = PREFACE + frame(SETTINGS, 0, 0, b"") + frame(SETTINGS, 1, 0, b"")
        for sid in range(1, 11, 2):
            out += frame(HEADERS, END_HEADERS, sid, enc.encode(hs))
        s.sendall(out)
        frames, closed = read_frames(s, WAIT)
    finally:
        s.close()
    settings = [f for f in frames if f[0] == SETTINGS and not f[1] & 1][0][3]
    params = dict(struct.unpack(">HI", settings[i:i + 6]) for i in range(0, len(settings), 6))
    assert params.get(3) == 4, params   # SETTINGS_MAX_CONCURRENT_STREAMS
    ga = goaway_of(frames)
    assert ga is not None and ga[1] == PROTOCOL_ERROR and ga[0] == 7, ga
    assert closed
    crisp4.check_serving()


def test_max_streams_grpcio_waits(crisp4):
    """A well-behaved client with 12 calls at once on one connection: they
    queue behind the limit and all succeed."""
    c = CRIClient("unix://" + crisp4.sock, "four")
    errors, done = [], []

    def one(i):
        try:
            c.rt("Status", deadline=WAIT)
            done.append(i)
        except grpc.RpcError as e:
            errors.append((e.code(), e.details()))
    try:
        ts = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(WAIT * 2)
    finally:
        c.close()
    assert not errors, errors
    assert sorted(done) == list(range(12))


# ---------------------------------------------------------------------------
# header fields: crisp's own checks (nghttp2's HTTP messaging is off, see
# src/h2req.c). What gRPC servers accept is served; what RFC 9113 calls
# malformed is reset with PROTOCOL_ERROR and logged as crisp's refusal.

ALPHA_VERSION = "/runtime.v1alpha2.RuntimeService/Version"


def raw_call(sock_path, headers, body, end_on_headers=False, trailers=None):
    """One request made of raw frames (hpack-encoded `headers` as given,
    order and case untouched). Returns (frames of stream 1, all frames)."""
    import hpack
    enc = hpack.Encoder()
    s = unix_connect(sock_path)
    try:
        out = PREFACE + frame(SETTINGS, 0, 0, b"") + frame(SETTINGS, 1, 0, b"")
        flags = END_HEADERS | (END_STREAM if end_on_headers else 0)
        out += frame(HEADERS, flags, 1, enc.encode(headers))
        if not end_on_headers:
            out += frame(DATA, 0 if trailers else END_STREAM, 1, body)
        if trailers:
            out += frame(HEADERS, END_HEADERS | END_STREAM, 1, enc.encode(trailers))
        s.sendall(out)

        def stream_done(fs):
            return any(f[2] == 1 and (f[0] == 3 or (f[0] == HEADERS and f[1] & END_STREAM)
                                      or (f[0] == DATA and f[1] & END_STREAM)) for f in fs)
        frames, _ = read_frames(s, WAIT, until=stream_done)
    finally:
        s.close()
    return [f for f in frames if f[2] == 1], frames


def grpc_status_of(stream_frames):
    import hpack
    dec = hpack.Decoder()
    status = None
    for f in stream_frames:
        if f[0] == HEADERS:
            for k, v in dec.decode(f[3]):
                k = k.decode() if isinstance(k, bytes) else k
                v = v.decode() if isinstance(v, bytes) else v
                if k == "grpc-status":
                    status = int(v)
    return status


def rst_code_of(stream_frames):
    for f in stream_frames:
        if f[0] == 3:  # RST_STREAM
            return struct.unpack(">I", f[3])[0]
    return None


def refusal_line(fe, mark):
    pat = r"event=call .*crisp refused a malformed HTTP/2 request"
    fe.wait_log(mark, pat)
    return [ln for ln in fe.log_since(mark).splitlines() if re.search(pat, ln)][0]


def base_headers(path=VERSION, authority="localhost"):
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority),
            ("content-type", "application/grpc"), ("te", "trailers")]


@pytest.mark.parametrize("authority", [
    "/run/crisp/crisp.sock",          # grpc-go dialling a unix socket the kubelet's way
    "/tmp/some dir/crisp.sock",       # a path with a space
    "unix:///run/crisp/crisp.sock",
    "%2Frun%2Fcrisp.sock",
    "localhost:0",
    "",
], ids=["socket-path", "path-with-space", "unix-url", "escaped", "host-port", "empty"])
def test_any_authority_is_served(fe, authority):
    """gRPC servers (grpc-go in containerd, C-core) accept any :authority;
    grpc-go puts the socket path there. crisp serves them all."""
    frames, _ = raw_call(fe.sock, base_headers(authority=authority), version_body())
    assert rst_code_of(frames) is None, frames
    assert grpc_status_of(frames) == OK, frames


def test_no_authority_is_served(fe):
    hs = [h for h in base_headers() if h[0] != ":authority"]
    frames, _ = raw_call(fe.sock, hs, version_body())
    assert grpc_status_of(frames) == OK, frames


def test_user_agent_and_accept_encoding(fe):
    """What grpc-go adds to every call (user-agent grpc-go/1.x,
    grpc-accept-encoding) is fine."""
    hs = base_headers(authority="/run/crisp/crisp.sock") + [
        ("user-agent", "grpc-go/1.51.0"), ("grpc-accept-encoding", "gzip")]
    frames, _ = raw_call(fe.sock, hs, version_body())
    assert grpc_status_of(frames) == OK, frames


MALFORMED = [
    ("uppercase-name", base_headers() + [("X-Upper", "1")], "invalid header field name X-Upper"),
    ("space-in-name", base_headers() + [("x y", "1")], "invalid header field name x?y"),
    ("empty-name", base_headers() + [("", "1")], "invalid header field name"),
    ("lf-in-value", base_headers() + [("x-a", "a\nb")], "NUL, CR or LF x-a"),
    ("nul-in-authority", base_headers(authority="a\0b"), "NUL, CR or LF :authority"),
    ("unknown-pseudo", base_headers() + [(":status", "200")], "unknown pseudo-header :status"),
    ("connect-protocol", base_headers() + [(":protocol", "websocket")], "unknown pseudo-header :protocol"),
    ("pseudo-after-regular", base_headers()[:3] + [("x-a", "1"), (":authority", "x")] + base_headers()[4:],
     "pseudo-header after a regular header field :authority"),
    ("pseudo-twice", base_headers()[:4] + [(":method", "POST")] + base_headers()[4:],
     "pseudo-header given twice :method"),
    ("connection-header", base_headers() + [("connection", "keep-alive")],
     "connection-specific header field connection"),
    ("te-gzip", [h for h in base_headers() if h[0] != "te"] + [("te", "gzip")],
     "te header field other than"),
    ("no-scheme", [h for h in base_headers() if h[0] != ":scheme"], "required pseudo-header missing"),
    ("empty-path", base_headers(path=""), "empty :path"),
    ("content-length-wrong", base_headers() + [("content-length", "99")],
     "content-length invalid or not matching"),
]


@pytest.mark.parametrize("headers,reason", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_request_refused(fe, headers, reason):
    """RFC 9113 8.1.1: a malformed request is a stream error PROTOCOL_ERROR.
    The connection stays up, and the log line says crisp refused it, why,
    and for which method and api (not 'client cancelled')."""
    mark = fe.log_mark()
    frames, allf = raw_call(fe.sock, headers, version_body())
    assert rst_code_of(frames) == PROTOCOL_ERROR, frames
    assert goaway_of(allf) is None, allf
    line = refusal_line(fe, mark)
    assert "code=INTERNAL" in line and reason in line, line
    if any(h[0] == ":path" and h[1] == VERSION for h in headers):
        assert "method=Version api=v1 " in line, line


def test_malformed_v1alpha2_names_its_api(fe):
    mark = fe.log_mark()
    frames, _ = raw_call(fe.sock, base_headers(path=ALPHA_VERSION) + [("Bad", "1")], version_body())
    assert rst_code_of(frames) == PROTOCOL_ERROR
    line = refusal_line(fe, mark)
    assert "method=Version api=v1alpha2 " in line, line


def test_pseudo_header_in_trailers_refused(fe):
    mark = fe.log_mark()
    frames, _ = raw_call(fe.sock, base_headers(), version_body(), trailers=[(":path", "/x")])
    assert rst_code_of(frames) == PROTOCOL_ERROR, frames
    assert "pseudo-header in trailers :path" in refusal_line(fe, mark)


def test_plain_trailers_accepted(fe):
    frames, _ = raw_call(fe.sock, base_headers(), version_body(), trailers=[("x-trailer", "1")])
    assert grpc_status_of(frames) == OK, frames


def test_right_content_length_accepted(fe):
    body = version_body()
    frames, _ = raw_call(fe.sock, base_headers() + [("content-length", str(len(body)))], body)
    assert grpc_status_of(frames) == OK, frames
