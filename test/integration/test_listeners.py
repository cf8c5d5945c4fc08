"""crisp's listeners, command line and shutdown: unix sockets (mode, folder,
stale/live/foreign files), TLS over TCP (ALPN h2, client certificates),
systemd socket activation (fd://), --help/--version/bad flags, and SIGTERM
(socket removed, exit 0, in-flight calls finish, new connections refused).

Each test starts its own crisp (in front of the session's containerd, or of
a scripted fake backend) so it can stop it, break it or look at its exit."""
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import threading
import time
import uuid

import grpc
import pytest

import scriptfake
from conftest import (CRISP_BIN, CRISP_WRAPPER, START_TIMEOUT, STOP_TIMEOUT, WRAPPED, Crisp, _crisp_instances,
                      _tail, sock_dir, stop_and_check, wait_for)
from crilib import CRIClient, rpc_error, v1
from test_containers import SERVE

SLOW = 5.0 if WRAPPED else 1.0


@pytest.fixture
def tmpdir_short():
    """A fresh folder with a short path (unix socket paths are <= 107 bytes)."""
    d = os.path.join(sock_dir(), "l-" + uuid.uuid4().hex[:8])
    os.makedirs(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def started(testenv):
    """started(name, **Crisp kwargs) -> a running crisp in front of containerd,
    stopped (and checked) at the end of the test unless the test did."""
    made = []

    def start(name, **kw):
        c = Crisp(name, testenv.CONTAINERD_SOCK, **kw)
        _crisp_instances.append(c)
        made.append(c)
        return c.start()
    yield start
    for c in made:
        stop_and_check(c, exited=not c.alive())


def run_crisp(args, timeout=None, env=None):
    """crisp (no wrapper) with `args`; returns the CompletedProcess."""
    return subprocess.run([CRISP_BIN] + args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout or START_TIMEOUT, env=env)


def run_crisp_expect_fail(args, timeout=None):
    """crisp with `args` (under CRISP_WRAPPER too) must exit non-zero by itself."""
    p = subprocess.run(CRISP_WRAPPER + [CRISP_BIN] + args, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout or START_TIMEOUT)
    assert p.returncode != 0, "crisp %s exited 0:\n%s" % (args, p.stderr)
    return p


def free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------
# command line


def test_help():
    p = run_crisp(["--help"])
    assert p.returncode == 0, p.stderr
    for opt in ("--listen", "--backend", "--max-message-size", "--max-streams", "--tls-cert", "--tls-key",
                "--tls-client-ca", "--shutdown-timeout", "--log-level", "--version", "unix://", "tcp://", "fd://"):
        assert opt in p.stdout, "--help does not mention %s:\n%s" % (opt, p.stdout)
    assert p.stderr == ""


def test_version_flag():
    p = run_crisp(["--version"])
    assert p.returncode == 0, p.stderr
    out = p.stdout.strip()
    assert out.startswith("crisp ") and len(out.split()) == 2 and len(out) > 7, out


BE = "cri:unix:///nonexistent/crisp-test.sock"
BAD_FLAGS = [
    ("unknown-flag", ["--no-such-flag", "--backend", BE], "unrecognized option"),
    ("no-backend", ["--listen", "unix:///tmp/x.sock"], "--backend is required"),
    ("two-backends", ["--backend", BE, "--backend", BE], "one --backend"),
    ("positional", ["--backend", BE, "extra"], "unexpected argument extra"),
    ("listen-no-value", ["--backend", BE, "--listen"], "requires an argument"),
    ("max-message-size-tiny", ["--backend", BE, "--max-message-size", "12"], "--max-message-size 12: want 1K..1G"),
    ("max-message-size-huge", ["--backend", BE, "--max-message-size", "2G"], "--max-message-size 2G: want 1K..1G"),
    ("max-message-size-junk", ["--backend", BE, "--max-message-size", "lots"], "--max-message-size lots"),
    ("max-streams-0", ["--backend", BE, "--max-streams", "0"], "--max-streams 0: want 1..1000000"),
    ("shutdown-timeout-negative", ["--backend", BE, "--shutdown-timeout", "-1"], "want 0..3600 seconds"),
    ("shutdown-timeout-junk", ["--backend", BE, "--shutdown-timeout", "soon"], "--shutdown-timeout soon"),
    ("log-level", ["--backend", BE, "--log-level", "loud"], "--log-level loud: want error, warn, info or debug"),
]


@pytest.mark.parametrize("args,phrase", [b[1:] for b in BAD_FLAGS], ids=[b[0] for b in BAD_FLAGS])
def test_bad_flags_exit_2(args, phrase):
    p = run_crisp(args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert phrase in p.stderr, "%r not in stderr:\n%s" % (phrase, p.stderr)


def test_bad_listen_and_backend_urls(tmpdir_short):
    """Well-formed flags with values crisp cannot use: exit 1 with the reason."""
    sock = "unix://" + os.path.join(tmpdir_short, "c.sock")
    port = free_tcp_port()
    cases = [
        (["--listen", "bogus://x", "--backend", BE], "unsupported address bogus://x"),
        (["--listen", "unix://relative.sock", "--backend", BE], "must be absolute"),
        (["--listen", "unix:///" + "x" * 120, "--backend", BE], "unix socket path too long"),
        (["--listen", "tcp://127.0.0.1:%d" % port, "--backend", BE],
         "tcp:// listeners need --tls-cert and --tls-key"),
        (["--listen", "tcp://127.0.0.1:%d" % port, "--tls-cert", "/nonexistent/c.pem", "--tls-key",
          "/nonexistent/k.pem", "--backend", BE], "TLS certificate /nonexistent/c.pem"),
        (["--listen", "tcp://127.0.0.1", "--tls-cert", "x", "--tls-key", "y", "--backend", BE],
         "host:port"),
        (["--listen", "fd://", "--backend", BE], "fd:// listener but no sockets passed"),
        (["--listen", sock, "--backend", "nope:unix:///x.sock"], "unknown kind nope"),
        (["--listen", sock, "--backend", "justapath"], "want KIND:URL"),
        (["--listen", sock, "--backend", "cri:fd://"], "a cri backend needs unix:// or tcp://"),
        (["--listen", sock, "--backend", "docker:unix:///x.sock", "--node-view", "maybe"],
         "--node-view maybe: want on or off"),
        (["--listen", sock, "--backend", "docker:unix:///x.sock", "--writable-layer-every", "soon"],
         "--writable-layer-every soon: want whole seconds"),
        (["--listen", sock, "--backend", "cri:unix:///x.sock", "--node-view", "off"],
         "--node-view is not an option of the cri backend"),
    ]
    for args, phrase in cases:
        p = run_crisp_expect_fail(args)
        assert p.returncode == 1, (args, p.returncode, p.stderr)
        assert "event=startup_failed" in p.stderr and phrase in p.stderr, (args, p.stderr)
        assert not os.path.exists(sock[len("unix://"):]), "socket left behind by %s" % args


# ---------------------------------------------------------------------------
# unix sockets


def test_unix_socket_mode_and_folder(started, tmpdir_short):
    path = os.path.join(tmpdir_short, "a", "b", "crisp.sock")
    c = started("mode", sock=path)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    assert os.path.isdir(os.path.join(tmpdir_short, "a", "b"))
    c.check_serving()
    assert "listening" in c.log_since(0) and 'addr="unix://%s"' % path in c.log_since(0)


def tcp_listening_ports(pid):
    """The TCP ports process pid listens on (its socket inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                    ports.append(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def test_relay_opens_no_streaming_port(started, tmpdir_short):
    """A relay-only crisp (a CRI runtime answers its own streaming URLs)
    opens no streaming listener: no TCP port at all unless asked for."""
    c = started("nostream", sock=os.path.join(tmpdir_short, "a.sock"))
    c.check_serving()
    assert tcp_listening_ports(c.pid) == [], tcp_listening_ports(c.pid)
    assert "streaming_off" in c.log_since(0) and "streaming_listening" not in c.log_since(0)
    # asked for by --streaming-listen: opened
    port = free_tcp_port()
    d = started("askedstream", sock=os.path.join(tmpdir_short, "b.sock"),
                extra_args=["--streaming-listen", "tcp://127.0.0.1:%d" % port])
    d.check_serving()
    assert tcp_listening_ports(d.pid) == [port]


def test_several_listeners(started, tmpdir_short):
    a, b = os.path.join(tmpdir_short, "a.sock"), os.path.join(tmpdir_short, "b.sock")
    c = started("two", sock=a, listen=["unix://" + a, "unix://" + b])
    for p in (a, b):
        cl = CRIClient("unix://" + p, "x")
        try:
            assert cl.rt("Version", deadline=10).runtime_name == "containerd"
        finally:
            cl.close()
    stop_and_check(c)
    assert not os.path.exists(a) and not os.path.exists(b), "a socket was left behind"


def test_stale_socket_replaced(started, tmpdir_short):
    path = os.path.join(tmpdir_short, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # the file stays; nothing answers on it
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    c = started("stale", sock=path, keep_old_socket=True)
    c.check_serving()
    assert 'event=stale_socket_removed path="%s"' % path in c.log_since(0)


def test_live_socket_not_replaced(tmpdir_short):
    path = os.path.join(tmpdir_short, "live.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen(8)
    try:
        p = run_crisp_expect_fail(["--listen", "unix://" + path, "--backend", BE])
        assert p.returncode == 1
        assert "is in use: another process answers on it" in p.stderr, p.stderr
        # still ours: a client reaches our listener
        cl = socket.socket(socket.AF_UNIX)
        cl.connect(path)
        conn, _ = s.accept()
        conn.close()
        cl.close()
    finally:
        s.close()


def test_regular_file_not_replaced(tmpdir_short):
    path = os.path.join(tmpdir_short, "file.sock")
    with open(path, "w") as f:
        f.write("precious\n")
    p = run_crisp_expect_fail(["--listen", "unix://" + path, "--backend", BE])
    assert p.returncode == 1
    assert "exists and is not a socket; not replacing it" in p.stderr, p.stderr
    with open(path) as f:
        assert f.read() == "precious\n"


def test_second_crisp_on_same_socket_refused(started, tmpdir_short):
    path = os.path.join(tmpdir_short, "dup.sock")
    c = started("first", sock=path)
    p = run_crisp_expect_fail(["--listen", "unix://" + path, "--backend", BE])
    assert "is in use" in p.stderr, p.stderr
    c.check_serving("after a second crisp tried its socket")


# ---------------------------------------------------------------------------
# TLS


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki():
    d = os.path.join(sock_dir(), "pki-" + uuid.uuid4().hex[:8])
    os.makedirs(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                 "-subj", "/CN=crisp-test-" + ca, cwd=d)

    def leaf(name, ca, ext):
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext)
        _openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                 "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext", cwd=d)
    leaf("server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    leaf("client", "ca", "extendedKeyUsage=clientAuth\n")
    leaf("rogue-client", "rogue-ca", "extendedKeyUsage=clientAuth\n")

    class P:
        def path(self, name):
            return os.path.join(d, name)

        def read(self, name):
            with open(os.path.join(d, name), "rb") as f:
                return f.read()
    yield P()
    shutil.rmtree(d, ignore_errors=True)


def tls_version(port, pki, client=None, ca="ca.pem"):
    """Version over TLS on 127.0.0.1:port; client = "client" or "rogue-client" for a certificate."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.read(ca),
        private_key=pki.read(client + ".key") if client else None,
        certificate_chain=pki.read(client + ".pem") if client else None)
    ch = grpc.secure_channel("127.0.0.1:%d" % port, creds, options=[
        ("grpc.ssl_target_name_override", "localhost"), ("grpc.use_local_subchannel_pool", 1)])
    try:
        stub = ch.unary_unary("/runtime.v1.RuntimeService/Version",
                              request_serializer=v1.VersionRequest.SerializeToString,
                              response_deserializer=v1.VersionResponse.FromString)
        return stub(v1.VersionRequest(version="0.1.0"), timeout=10 * SLOW)
    finally:
        ch.close()


def tls_crisp(started, tmpdir_short, pki, client_ca=False):
    port = free_tcp_port()
    sock = os.path.join(tmpdir_short, "tls.sock")
    args = ["--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.key")]
    if client_ca:
        args += ["--tls-client-ca", pki.path("ca.pem")]
    c = started("tls", sock=sock, listen=["unix://" + sock, "tcp://127.0.0.1:%d" % port], extra_args=args)
    return c, port


def test_tls_listener(started, tmpdir_short, pki):
    c, port = tls_crisp(started, tmpdir_short, pki)
    r = tls_version(port, pki)
    assert r.runtime_name == "containerd" and r.runtime_api_version == "v1"
    # a client certificate is not needed, but does no harm
    assert tls_version(port, pki, client="client").runtime_name == "containerd"
    assert 'addr="tcp://127.0.0.1:%d" tls=1' % port in c.log_since(0)


def test_tls_listener_refuses_plaintext(started, tmpdir_short, pki):
    c, port = tls_crisp(started, tmpdir_short, pki)
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    try:
        stub = ch.unary_unary("/runtime.v1.RuntimeService/Version")
        with pytest.raises(grpc.RpcError) as ei:
            stub(b"", timeout=3 * SLOW)
        assert ei.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), ei.value
    finally:
        ch.close()
    c.check_serving()
    assert tls_version(port, pki).runtime_name == "containerd"


def test_tls_wrong_server_ca_refused(started, tmpdir_short, pki):
    """The client checks crisp's certificate (a sanity check of the fixture)."""
    c, port = tls_crisp(started, tmpdir_short, pki)
    with pytest.raises(grpc.RpcError) as ei:
        tls_version(port, pki, ca="rogue-ca.pem")
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    c.check_serving()


@pytest.mark.parametrize("alpn", [["http/1.1"], ["spdy/3", "http/1.1"]])
def test_tls_alpn_without_h2_refused(started, tmpdir_short, pki, alpn):
    c, port = tls_crisp(started, tmpdir_short, pki)
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.recv(1)
    # and with h2 offered, the same client is served
    ctx.set_alpn_protocols(alpn + ["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "h2"
    c.check_serving()


def test_tls_client_certificate_required(started, tmpdir_short, pki):
    c, port = tls_crisp(started, tmpdir_short, pki, client_ca=True)
    mark = c.log_mark()
    with pytest.raises(grpc.RpcError) as ei:
        tls_version(port, pki)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value
    with pytest.raises(grpc.RpcError) as ei:
        tls_version(port, pki, client="rogue-client")
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value
    r = tls_version(port, pki, client="client")
    assert r.runtime_name == "containerd"
    c.wait_log(mark, r"event=tls_error", count=2)
    c.check_serving()


# ---------------------------------------------------------------------------
# systemd socket activation


def activated(started, tmpdir_short, url="fd://"):
    path = os.path.join(tmpdir_short, "activated.sock")
    return started("fdlisten", sock=path, listen=[url], owns_socket=False,
                   launcher=["systemd-socket-activate", "-l", path])


@pytest.mark.parametrize("url", ["fd://", "fd://3"])
def test_systemd_socket_activation(started, tmpdir_short, url):
    c = activated(started, tmpdir_short, url)
    c.check_serving()
    assert 'event=listening addr="fd://3"' in c.log_since(0)
    if not WRAPPED:  # the activator exec'd crisp in its place
        assert os.readlink("/proc/%d/exe" % c.pid) == CRISP_BIN
    stop_and_check(c)
    # the socket belongs to the activator (systemd): crisp does not remove it
    assert stat.S_ISSOCK(os.stat(c.sock).st_mode)


def test_systemd_wrong_fd(tmpdir_short):
    """fd://4 when only fd 3 is passed: exit 1 with the reason."""
    path = os.path.join(tmpdir_short, "act.sock")
    p = subprocess.Popen(["systemd-socket-activate", "-l", path] + CRISP_WRAPPER +
                         [CRISP_BIN, "--listen", "fd://4", "--backend", BE],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: os.path.exists(path), timeout=10, what="the activation socket")
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)  # the first connection makes the activator exec crisp
        _, err = p.communicate(timeout=START_TIMEOUT)
        s.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 1, (p.returncode, err)
    assert "fd://4 was not passed (LISTEN_FDS=1)" in err, err


# ---------------------------------------------------------------------------
# signals and shutdown


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_removes_socket_and_exits_0(started, tmpdir_short, sig):
    path = os.path.join(tmpdir_short, "sig.sock")
    c = started("sig", sock=path)
    cl = CRIClient("unix://" + path, "idle")   # an idle client connection is no reason to wait
    try:
        cl.rt("Version", deadline=10)
        t0 = time.time()
        c.proc.send_signal(sig)
        rc = c.proc.wait(STOP_TIMEOUT)
        took = time.time() - t0
    finally:
        cl.close()
    assert rc == 0, _tail(c.log)
    assert not os.path.exists(path)
    assert took < 3 * SLOW, "crisp took %.1fs to stop with one idle connection" % took
    log = c.log_since(0)
    assert "event=shutdown signal=%d" % sig in log and "event=stopped" in log
    stop_and_check(c, exited=True)  # exit status, no sanitizer/valgrind report


def _connect_fails(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        return True
    finally:
        s.close()
    return False


def test_sigterm_lets_inflight_call_finish(started, tmpdir_short, direct_pods):
    """ExecSync `sleep 2` in flight at SIGTERM: it finishes with OK, new
    connections are refused meanwhile, then crisp exits 0."""
    pid, _ = direct_pods.run_pod()
    cid = direct_pods.create_container(pid, "sleeper", ["sh", "-c", SERVE])
    path = os.path.join(tmpdir_short, "term.sock")
    c = started("term", sock=path)
    cl = CRIClient("unix://" + path, "inflight")
    out = {}

    def slow():
        t0 = time.time()
        try:
            r = cl.rt("ExecSync", container_id=cid, cmd=["sh", "-c", "sleep 2; echo done"], timeout=20,
                      deadline=30)
            out["resp"] = r
        except grpc.RpcError as e:
            out["err"] = (e.code(), e.details())
        out["took"] = time.time() - t0
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.8 * SLOW)  # the ExecSync is at containerd now
    t_term = time.time()
    c.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: not os.path.exists(path), timeout=2 * SLOW, what="crisp to remove its socket")
    assert _connect_fails(path)
    # a new client gets nothing either
    other = CRIClient("unix://" + path, "late")
    try:
        code, _ = rpc_error(other.rt, "Version", deadline=2)
        assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        other.close()
    # and the in-flight call's own connection takes no new call after GOAWAY
    code, _ = rpc_error(cl.rt, "Version", deadline=2)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert c.alive(), "crisp exited with a call in flight"
    t.join(30)
    cl.close()
    assert "err" not in out, out
    assert out["resp"].exit_code == 0 and out["resp"].stdout == b"done\n", out
    assert out["took"] >= 1.9
    c.proc.wait(STOP_TIMEOUT)
    stopped_after = time.time() - t_term
    assert c.proc.returncode == 0, _tail(c.log)
    assert stopped_after < 2 + 3 * SLOW, "crisp took %.1fs after SIGTERM" % stopped_after
    log = c.log_since(0)
    assert "event=shutdown signal=15 connections=1" in log and "event=stopped" in log
    stop_and_check(c, exited=True)


@pytest.fixture
def hang_fake():
    f = scriptfake.ScriptedFake(os.path.join(sock_dir(), "hang-%s.sock" % uuid.uuid4().hex[:6])).start()
    yield f
    f.stop()


def test_shutdown_timeout_cancels_stuck_call(hang_fake, tmpdir_short):
    """--shutdown-timeout 1: a call that never ends is cancelled about 1 s
    after SIGTERM (the backend sees the cancellation) and crisp exits 0."""
    path = os.path.join(tmpdir_short, "st.sock")
    c = Crisp("shuttimeout", hang_fake.sock, sock=path, extra_args=["--shutdown-timeout", "1"])
    _crisp_instances.append(c)
    c.start()
    try:
        cl = CRIClient("unix://" + path, "stuck")
        out = {}

        def stuck():
            out["err"] = rpc_error(cl.rt, "ListPodSandbox", deadline=60)
        t = threading.Thread(target=stuck)
        t.start()
        assert hang_fake.wait_count("hang_started", 1, 10 * SLOW)
        t0 = time.time()
        c.proc.send_signal(signal.SIGTERM)
        c.proc.wait(STOP_TIMEOUT)
        took = time.time() - t0
        t.join(10)
        cl.close()
        assert c.proc.returncode == 0, _tail(c.log)
        assert 0.9 <= took < 1 + 2 * SLOW, "exit %.2fs after SIGTERM with --shutdown-timeout 1" % took
        assert out["err"][0] in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), out
        assert hang_fake.wait_count("hang_cancelled", 1, 5), "the backend call was not cancelled"
        assert "event=shutdown_timeout" in c.log_since(0)
    finally:
        stop_and_check(c, exited=not c.alive())


def test_second_signal_forces_exit(hang_fake, tmpdir_short):
    path = os.path.join(tmpdir_short, "st2.sock")
    c = Crisp("forced", hang_fake.sock, sock=path, extra_args=["--shutdown-timeout", "60"])
    _crisp_instances.append(c)
    c.start()
    try:
        cl = CRIClient("unix://" + path, "stuck")
        t = threading.Thread(target=lambda: rpc_error(cl.rt, "ListPodSandbox", deadline=60))
        t.start()
        assert hang_fake.wait_count("hang_started", 1, 10 * SLOW)
        c.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3 * SLOW)
        assert c.alive(), "crisp did not wait for the call in flight"
        t0 = time.time()
        c.proc.send_signal(signal.SIGTERM)
        c.proc.wait(STOP_TIMEOUT)
        assert time.time() - t0 < 2 * SLOW
        assert c.proc.returncode == 0, _tail(c.log)
        assert "event=shutdown_forced" in c.log_since(0)
        t.join(10)
        cl.close()
    finally:
        stop_and_check(c, exited=not c.alive())
