"""Raw HTTP/2 and gRPC-framing helpers for the protocol tests.

grpcio validates what it sends, so the bad input crisp must survive is made
here: `H2Client` (python3-h2, outbound validation off) for requests with odd
headers, framing or stream handling, and `frame()`/`read_frames()` for bytes
that are not even valid HTTP/2.

    c = H2Client.unix("/path/crisp.sock")
    r = c.call("/runtime.v1.RuntimeService/Version", grpc_frame(b""))
    r.status, r.grpc_status, r.grpc_message, r.headers, r.trailers, r.messages()
"""
import os
import socket
import struct
import time
import urllib.parse

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types / flags / error codes (RFC 9113)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = range(10)


def grpc_frame(msg, compressed=False, declared=None):
    """A length-prefixed gRPC message; `declared` overrides the length field."""
    n = len(msg) if declared is None else declared
    return struct.pack(">BI", 1 if compressed else 0, n) + msg


def frame(ftype, flags, stream_id, payload, length=None):
    """One raw HTTP/2 frame; `length` overrides the 24-bit length field."""
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + struct.pack(">BBI", ftype, flags, stream_id & 0x7FFFFFFF) + payload


def unix_connect(path, timeout=10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def _parse_frames(buf):
    frames = []
    while len(buf) >= 9:
        n = int.from_bytes(buf[:3], "big")
        if len(buf) < 9 + n:
            break
        ftype, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        frames.append((ftype, flags, sid, buf[9:9 + n]))
        buf = buf[9 + n:]
    return frames


def read_frames(sock, timeout=5.0, until=None):
    """Reads frames until the peer closes, `until(frames)` is true, or
    `timeout` passes. Returns (frames [(type, flags, stream_id, payload)], closed)."""
    buf = b""
    end = time.time() + timeout
    closed = False
    while time.time() < end:
        if until is not None and until(_parse_frames(buf)):
            break
        sock.settimeout(max(0.01, end - time.time()))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not d:
            closed = True
            break
        buf += d
    return _parse_frames(buf), closed


def goaway_of(frames):
    """(last_stream_id, error_code, debug) of the first GOAWAY, or None."""
    for t, _, _, p in frames:
        if t == GOAWAY:
            last, code = struct.unpack(">II", p[:8])
            return last & 0x7FFFFFFF, code, p[8:]
    return None


class Response:
    def __init__(self, stream_id):
        self.stream_id = stream_id
        self.headers = {}
        self.header_list = []
        self.trailers = {}
        self.data = b""
        self.ended = False
        self.reset_code = None   # RST_STREAM from the server
        self.terminated = None   # GOAWAY error code, if the connection ended

    @property
    def status(self):
        s = self.headers.get(":status")
        return int(s) if s is not None else None

    def _grpc(self, name):
        # Trailers-Only answers carry the status in the headers
        return self.trailers.get(name, self.headers.get(name))

    @property
    def grpc_status(self):
        s = self._grpc("grpc-status")
        return int(s) if s is not None else None

    @property
    def grpc_message(self):
        m = self._grpc("grpc-message")
        return urllib.parse.unquote(m) if m is not None else None

    def messages(self):
        out, b = [], self.data
        while len(b) >= 5:
            flag, n = struct.unpack(">BI", b[:5])
            out.append(b[5:5 + n])
            b = b[5 + n:]
        assert not b, "trailing bytes after the last gRPC message: %r" % b[:20]
        return out

    @property
    def done(self):
        return self.ended or self.reset_code is not None or self.terminated is not None

    def __repr__(self):
        return ("Response(stream=%d status=%s grpc=%s %r reset=%s ended=%s goaway=%s)"
                % (self.stream_id, self.status, self.grpc_status, self.grpc_message,
                   self.reset_code, self.ended, self.terminated))


class H2Client:
    """A deliberately permissive HTTP/2 client on a connected socket."""

    def __init__(self, sock, settings=None):
        self.sock = sock
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False,
                                        validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings or {
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16 << 20,
        })
        # hpack's pure-Python Huffman coder is very slow on large values
        enc, orig = self.conn.encoder, self.conn.encoder.encode
        enc.encode = lambda headers, huffman=False: orig(headers, huffman=False)
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(64 << 20)
        self.responses = {}
        self.closed = False
        self.goaway = None
        self.ping_acks = set()
        self.flush()

    @classmethod
    def unix(cls, path, timeout=10.0, **kw):
        return cls(unix_connect(path, timeout), **kw)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    # ---- requests
    def headers_for(self, path, method="POST", content_type="application/grpc", extra=(), grpc_timeout=None):
        hs = [(":method", method), (":scheme", "http"), (":path", path), (":authority", "localhost")]
        if content_type is not None:
            hs.append(("content-type", content_type))
        hs.append(("te", "trailers"))
        if grpc_timeout is not None:
            hs.append(("grpc-timeout", grpc_timeout))
        hs.extend(extra)
        return hs

    def start(self, path, body=None, end_stream=True, **kw):
        """Opens a stream: HEADERS, then `body` as DATA (if any); returns the stream id."""
        sid = self.conn.get_next_available_stream_id()
        self.responses[sid] = Response(sid)
        self.conn.send_headers(sid, self.headers_for(path, **kw), end_stream=end_stream and body is None)
        if body is not None:
            self.send_data(sid, body, end_stream=end_stream)
        self.flush()
        return sid

    def send_data(self, sid, data, end_stream=False):
        # small bodies only: larger ones would need to wait for WINDOW_UPDATEs
        chunk = self.conn.max_outbound_frame_size
        for i in range(0, len(data), chunk):
            self.conn.send_data(sid, data[i:i + chunk],
                                end_stream=end_stream and i + chunk >= len(data))
        if not data and end_stream:
            self.conn.send_data(sid, b"", end_stream=True)
        self.flush()

    def reset(self, sid, code=CANCEL):
        self.conn.reset_stream(sid, error_code=code)
        self.flush()

    def call(self, path, body=b"", timeout=10.0, **kw):
        sid = self.start(path, body, **kw)
        return self.wait(sid, timeout)

    # ---- responses
    def pump(self, timeout):
        """Reads once (up to `timeout`) and processes the events."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            for r in self.responses.values():
                if not r.done:
                    r.terminated = r.terminated if r.terminated is not None else -1
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.StreamClosedError as e:
            # a frame after the stream's end (e.g. HEADERS after RST_STREAM):
            # the rest of this read is lost; the stream counts as reset
            r = self.responses.get(e.stream_id)
            if r is not None and not r.done:
                r.reset_code = -2
            self.flush()
            return True
        except h2.exceptions.ProtocolError:
            self.closed = True
            raise
        for ev in events:
            sid = getattr(ev, "stream_id", None)
            r = self.responses.get(sid)
            if isinstance(ev, h2.events.ResponseReceived) and r:
                r.header_list = list(ev.headers)
                r.headers = dict(ev.headers)
            elif isinstance(ev, h2.events.TrailersReceived) and r:
                r.trailers = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                if r:
                    r.data += ev.data
                if ev.flow_controlled_length:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and r:
                r.ended = True
            elif isinstance(ev, h2.events.StreamReset) and r:
                r.reset_code = int(ev.error_code)
            elif isinstance(ev, h2.events.PingAckReceived):
                self.ping_acks.add(bytes(ev.ping_data))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = (int(ev.error_code), ev.last_stream_id, ev.additional_data)
                for s, rr in self.responses.items():
                    if not rr.done and s > (ev.last_stream_id or 0):
                        rr.terminated = int(ev.error_code)
        self.flush()
        return True

    def sync(self, timeout=10.0):
        """PING and wait for its ACK: the server has processed every frame
        sent before it."""
        data = os.urandom(8)
        self.conn.ping(data)
        self.flush()
        end = time.time() + timeout
        while data not in self.ping_acks:
            if self.closed or time.time() > end:
                raise AssertionError("no PING ACK within %.1fs (closed=%s)" % (timeout, self.closed))
            self.pump(max(0.01, end - time.time()))

    def wait(self, sid, timeout=10.0):
        r = self.responses[sid]
        end = time.time() + timeout
        while not r.done and not self.closed and time.time() < end:
            self.pump(max(0.01, end - time.time()))
        if not r.done:
            raise AssertionError("no answer on stream %d within %.1fs (closed=%s, %r)"
                                 % (sid, timeout, self.closed, r))
        return r


class H2Backend:
    """A bare HTTP/2 gRPC server on a unix socket that records each request's
    headers exactly as they arrived and answers every call with OK and an
    empty message (or never, with hang=True). For checking what crisp
    forwards (grpc-timeout's exact value, metadata, path)."""

    def __init__(self, path, hang=False):
        import threading
        self.path = path
        self.hang = hang
        self.requests = []     # [(headers list, body bytes)]
        self.resets = []       # stream ids the client reset
        self.lock = threading.Lock()
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        self.srv.listen(16)
        self.stop_ev = threading.Event()
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self):
        import threading
        self.srv.settimeout(0.2)
        while not self.stop_ev.is_set():
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, sock):
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                        validate_inbound_headers=False)
        conn = h2.connection.H2Connection(config=cfg)
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        heads, bodies = {}, {}
        sock.settimeout(0.2)
        try:
            while not self.stop_ev.is_set():
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        heads[ev.stream_id] = list(ev.headers)
                        bodies[ev.stream_id] = b""
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        with self.lock:
                            self.requests.append((heads.get(ev.stream_id), bodies.get(ev.stream_id)))
                        if not self.hang:
                            conn.send_headers(ev.stream_id, [(":status", "200"),
                                                             ("content-type", "application/grpc")])
                            conn.send_data(ev.stream_id, grpc_frame(b""))
                            conn.send_headers(ev.stream_id, [("grpc-status", "0")], end_stream=True)
                    elif isinstance(ev, h2.events.StreamReset):
                        with self.lock:
                            self.resets.append((ev.stream_id, int(ev.error_code)))
                sock.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            return
        finally:
            sock.close()

    def last_headers(self):
        with self.lock:
            return dict(self.requests[-1][0]) if self.requests else None

    def close(self):
        self.stop_ev.set()
        self.srv.close()
        for t in self.threads:
            t.join(2)
        try:
            os.unlink(self.path)
        except OSError:
            pass
