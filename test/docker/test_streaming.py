"""kubectl exec, attach, port-forward and cp through crisp's streaming server,
on Docker and podman (issue 11).

Real clients: test/streamgo (client-go's SPDY and WebSocket executors and
port-forwarder on spdystream and gorilla/websocket, the URL from a CRI call
over grpc-go), python3-kubernetes' WebSocket stream client, and raw sockets
for what no client sends (bad tokens, versions, garbage SPDY frames, a
client that vanishes). Every test runs once per engine.
"""
import base64
import hashlib
import json
import os
import socket
import subprocess
import time

import grpc
import pytest

from conftest import REPO, SLEEPER, rpc_error, v1, wait_for

STREAMGO = os.environ.get("CRISP_TEST_STREAMGO", os.path.join(REPO, "build", "grpcgo", "streamgo"))
TIMEOUT = 120


def streamgo(*args, stdin=b"", timeout=TIMEOUT):
    if not os.path.exists(STREAMGO):
        pytest.fail("%s missing: make streamgo" % STREAMGO, pytrace=False)
    p = subprocess.run([STREAMGO] + [str(a) for a in args], input=stdin, capture_output=True,
                       timeout=timeout)
    return p


def go_exec(crisp, cid, cmd, proto="spdy", stdin=None, tty=False, attach=False, extra=()):
    """streamgo exec: (stdout, stderr, result dict)."""
    args = ["attach" if attach else "exec", "-cri", "unix://" + crisp.sock, "-id", cid,
            "-proto", proto, "-cmd", json.dumps(cmd)]
    if stdin is not None:
        args.append("-stdin")
    if tty:
        args += ["-tty", "-stderr=false"]
    args += list(extra)
    p = streamgo(*args, stdin=stdin or b"")
    err, sep, last = p.stderr.rpartition(b"\nSTREAMGO ")
    assert sep, "streamgo printed no result: rc=%d stderr=%r" % (p.returncode, p.stderr[-2000:])
    try:
        res = json.loads(last)
    except ValueError:
        pytest.fail("streamgo's result is no JSON: %r" % p.stderr[-2000:], pytrace=False)
    return p.stdout, err, res


def status_of(res):
    return json.loads(res["final"]) if res["final"] else None


def exit_code_of(st):
    if st["status"] == "Success":
        return 0
    assert st["reason"] == "NonZeroExitCode", st
    causes = st["details"]["causes"]
    assert causes[0]["reason"] == "ExitCode", st
    return int(causes[0]["message"])


@pytest.fixture
def pod(k8s):
    """A pod with a long-running busybox container: (pod id, container id)."""
    pid = k8s.run_pod()
    cid = k8s.create(pid, "main", SLEEPER)
    return pid, cid


# ---- exec -----------------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["spdy", "ws"])
def test_exec_exit_codes_and_streams(crisp, pod, proto):
    _, cid = pod
    for code in (0, 1, 42):
        out, err, res = go_exec(crisp, cid, ["sh", "-c", "echo out; echo err >&2; exit %d" % code],
                                proto=proto)
        assert res["status"] == 101 and not res["error"], res
        assert out == b"out\n"
        assert err == b"err\n"
        st = status_of(res)
        assert exit_code_of(st) == code, st
        if code:
            assert st["status"] == "Failure" and "exit code %d" % code in st["message"], st
    assert res["protocol"] == ("v5.channel.k8s.io" if proto == "ws" else "v5.channel.k8s.io")


@pytest.mark.parametrize("proto", ["spdy", "ws"])
def test_exec_stdin_roundtrip(crisp, pod, proto):
    _, cid = pod
    data = b"".join(b"line %d\n" % i for i in range(2000))
    out, err, res = go_exec(crisp, cid, ["cat"], proto=proto, stdin=data)
    assert out == data, (len(out), err, res)
    assert exit_code_of(status_of(res)) == 0


def test_exec_old_spdy_versions(crisp, pod):
    """v3/v2 write text on the error channel, v1 (no negotiation) too."""
    _, cid = pod
    for version in ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "none"):
        out, _, res = go_exec(crisp, cid, ["sh", "-c", "echo hi; exit 3"],
                              extra=["-protocols", version])
        assert out == b"hi\n", (version, res)
        if version == "v4.channel.k8s.io":
            assert exit_code_of(status_of(res)) == 3
        else:
            assert res["protocol"] in ("", version), res
            assert "exit code 3" in res["final"], (version, res)


@pytest.mark.parametrize("proto", ["spdy", "ws"])
def test_exec_tty_and_resize(crisp, pod, proto):
    _, cid = pod
    out, _, res = go_exec(crisp, cid, ["sh", "-c", "sleep 1; stty size; tty"], proto=proto, tty=True,
                          extra=["-resize", "100x40"])
    assert exit_code_of(status_of(res)) == 0, res
    text = out.decode(errors="replace")
    assert "40 100" in text, text
    assert "/dev/pts/" in text, text


def test_exec_big_transfer(crisp, pod):
    """100 MiB through exec stdin -> cat -> stdout (kubectl cp is exec + tar)."""
    _, cid = pod
    data = os.urandom(1 << 20) * 100
    out, err, res = go_exec(crisp, cid, ["cat"], stdin=data)
    assert len(out) == len(data), (len(out), err[-300:], res)
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    assert exit_code_of(status_of(res)) == 0


def test_cp_as_kubectl(crisp, pod, tmp_path):
    """kubectl cp: tar into the container through stdin, tar out through stdout."""
    _, cid = pod
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"alpha\n" * 1000)
    (src / "b.bin").write_bytes(os.urandom(300000))
    tarball = subprocess.run(["tar", "-C", str(src), "-cf", "-", "."], capture_output=True, check=True).stdout
    _, _, res = go_exec(crisp, cid, ["tar", "-xmf", "-", "-C", "/tmp"], stdin=tarball)
    assert exit_code_of(status_of(res)) == 0, res
    out, _, res = go_exec(crisp, cid, ["tar", "cf", "-", "-C", "/tmp", "a.txt", "b.bin"])
    assert exit_code_of(status_of(res)) == 0, res
    dst = tmp_path / "dst"
    dst.mkdir()
    subprocess.run(["tar", "-C", str(dst), "-xf", "-"], input=out, check=True)
    for f in ("a.txt", "b.bin"):
        assert (dst / f).read_bytes() == (src / f).read_bytes()


def test_exec_concurrent_sessions(crisp, pod):
    _, cid = pod
    procs = []
    for i in range(6):
        args = [STREAMGO, "exec", "-cri", "unix://" + crisp.sock, "-id", cid, "-proto",
                "spdy" if i % 2 else "ws", "-stdin", "-cmd", json.dumps(["sh", "-c", "cat; exit %d" % i])]
        procs.append(subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
    for i, p in enumerate(procs):
        out, err = p.communicate(input=(b"session %d\n" % i) * 5000, timeout=TIMEOUT)
        assert out == (b"session %d\n" % i) * 5000
        res = json.loads(err.rpartition(b"\nSTREAMGO ")[2])
        assert exit_code_of(status_of(res)) == i


# ---- attach ---------------------------------------------------------------------------------


def test_attach_running_container(crisp, k8s):
    pid = k8s.run_pod()
    cfg = k8s.container_config("talker", ["sh", "-c", "while read l; do echo got:$l; done; echo bye"])
    cfg.stdin = True
    cfg.stdin_once = True
    os.makedirs(os.path.dirname(os.path.join(k8s.configs[pid].log_directory, cfg.log_path)), exist_ok=True)
    cid = k8s.c.rt("CreateContainer", pod_sandbox_id=pid, config=cfg,
                   sandbox_config=k8s.configs[pid]).container_id
    k8s.ctr_ids.append(cid)
    k8s.c.rt("StartContainer", container_id=cid)
    out, _, res = go_exec(crisp, cid, [], attach=True, stdin=b"one\ntwo\n")
    assert b"got:one\ngot:two\n" in out, (out, res)
    assert status_of(res)["status"] == "Success", res


# ---- port-forward ------------------------------------------------------------------------------


# the engines turn IPv6 off in their containers; a pod asks for it back
IPV6_ON = {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.lo.disable_ipv6": "0"}


@pytest.fixture
def echo_pod(k8s):
    pid = k8s.run_pod(sysctls=IPV6_ON)
    k8s.create(pid, "echo", ["nc", "-ll", "-p", "8080", "-e", "cat"])
    k8s.create(pid, "web6", ["httpd", "-f", "-p", "[::1]:8081", "-h", "/etc"])
    time.sleep(0.2)
    return pid


def go_forward(crisp, pid, *extra, proto="spdy"):
    p = streamgo("portforward", "-cri", "unix://" + crisp.sock, "-id", pid, "-proto", proto, *extra)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def wait_echo(crisp, pid):
    def ok():
        r = go_forward(crisp, pid, "-port", 8080, "-bytes", 10)
        return all(c["same_data"] for c in r["conns"])
    wait_for(ok, timeout=20, what="the echo server in the pod")


@pytest.mark.parametrize("proto", ["spdy", "ws-spdy"])
def test_port_forward_echo(crisp, echo_pod, proto):
    wait_echo(crisp, echo_pod)
    r = go_forward(crisp, echo_pod, "-port", 8080, "-conns", 4, "-bytes", 1 << 20, proto=proto)
    assert r["status"] == 101, r
    for c in r["conns"]:
        assert c["same_data"] and c["error"] == "", c


def test_port_forward_ipv6(crisp, echo_pod):
    r = go_forward(crisp, echo_pod, "-port", 8081, "-request", json.dumps("GET /hostname HTTP/1.0\r\n\r\n"))
    assert r["error"] == "", r
    assert r["reply"].startswith("HTTP/1.") and " 200 " in r["reply"].split("\r\n")[0], r


def test_port_forward_closed_port(crisp, echo_pod):
    r = go_forward(crisp, echo_pod, "-port", 9, "-request", json.dumps("x"))
    assert r["reply"] == ""
    assert r["error"].startswith("error forwarding port 9 to pod %s, uid : " % echo_pod), r
    assert "IPv4: dial tcp4 127.0.0.1:9: connect: connection refused" in r["error"], r
    assert "IPv6: dial tcp6 [::1]:9: connect: connection refused" in r["error"], r


def test_port_forward_closed_port_default_pod(crisp, k8s, engine):
    """A pod as the engine makes it (dockerd turns IPv6 off, podman not): the
    IPv6 attempt says why it failed."""
    pid = k8s.run_pod()
    k8s.create(pid, "main", SLEEPER)
    r = go_forward(crisp, pid, "-port", 9, "-request", json.dumps("x"))
    why6 = "cannot assign requested address" if engine.kind == "docker" else "connection refused"
    assert "IPv4: dial tcp4 127.0.0.1:9: connect: connection refused IPv6: dial tcp6 [::1]:9: " \
        "connect: " + why6 in r["error"], r


def test_port_forward_big_transfer(crisp, echo_pod):
    wait_echo(crisp, echo_pod)
    r = go_forward(crisp, echo_pod, "-port", 8080, "-bytes", 100 << 20)
    c = r["conns"][0]
    assert c["same_data"] and c["received"] == 100 << 20, c


# ---- bad input ----------------------------------------------------------------------------------


def http_raw(crisp_url, request, read=65536):
    host, port = crisp_url.split("//")[1].split("/")[0].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=30)
    s.sendall(request)
    data = b""
    while True:
        try:
            b = s.recv(read)
        except socket.timeout:
            break
        if not b:
            break
        data += b
    s.close()
    return data


def exec_url(crisp, cid, cmd=("true",), **kw):
    req = dict(container_id=cid, cmd=list(cmd), stdout=True, stderr=True)
    req.update(kw)
    return crisp.client.rt("Exec", **req).url


def upgrade_req(url, proto="v4.channel.k8s.io", extra=b""):
    path = "/" + url.split("//")[1].split("/", 1)[1]
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            b"X-Stream-Protocol-Version: %s\r\n%s\r\n" % (path.encode(), proto.encode(), extra))


def test_tokens_single_use_and_unknown(crisp, pod):
    _, cid = pod
    url = exec_url(crisp, cid)
    assert url.startswith("http://127.0.0.1:") and "/exec/" in url
    first = http_raw(url, upgrade_req(url))
    assert first.startswith(b"HTTP/1.1 101 "), first[:200]
    again = http_raw(url, upgrade_req(url))
    assert again.startswith(b"HTTP/1.1 404 ") and b"404 page not found" in again, again
    bogus = url.rsplit("/", 1)[0] + "/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    assert http_raw(bogus, upgrade_req(bogus)).startswith(b"HTTP/1.1 404 ")
    # an exec token is no attach token
    url = exec_url(crisp, cid)
    wrong = url.replace("/exec/", "/attach/")
    assert http_raw(wrong, upgrade_req(wrong)).startswith(b"HTTP/1.1 404 ")


def test_unknown_protocol_version(crisp, pod):
    _, cid = pod
    url = exec_url(crisp, cid)
    r = http_raw(url, upgrade_req(url, proto="v9.channel.k8s.io"))
    assert r.startswith(b"HTTP/1.1 403 "), r[:200]
    assert b"unable to negotiate protocol: client supports [v9.channel.k8s.io]" in r, r
    assert b"X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io" in r
    url = exec_url(crisp, cid)
    r = http_raw(url, b"GET /" + url.split("/", 3)[3].encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 400 ") and b"missing upgrade headers" in r, r


def test_garbage_spdy_frames(crisp, pod):
    _, cid = pod
    for garbage in (b"\x80\x02\x00\x01\x00\x00\x00\x00",            # SPDY/2
                    b"\x80\x03\x00\x01\x00\x00\x00\x12" + b"\x00\x00\x00\x01" + b"\x00" * 6 + b"garbage!",
                    b"\x80\x03\x00\x04\xff\xff\xff\xff",            # 16 MiB SETTINGS
                    os.urandom(4096)):
        url = exec_url(crisp, cid)
        r = http_raw(url, upgrade_req(url) + garbage)
        assert r.startswith(b"HTTP/1.1 101 "), r[:100]
    assert crisp.alive()
    # and crisp still serves
    out, _, res = go_exec(crisp, cid, ["echo", "alive"])
    assert out == b"alive\n"


def test_expired_token(denv, engine, k8s, tmp_path):
    """A crisp with a 1 s token lifetime: a URL unused for longer is gone.
    (The token cache knows no engine: dockerd only.)"""
    from conftest import DockerCrisp
    if engine.kind != "docker":
        pytest.skip("the token cache is the same for every engine")
    c = DockerCrisp(denv, engine.kind)
    c.sock = c.sock.replace(".sock", "-ttl.sock")
    c.args = [a if not a.startswith("unix://" + os.path.dirname(c.sock)) or "crisp-docker" not in a
              else "unix://" + c.sock for a in c.args] + ["--streaming-token-ttl", "1"]
    c.start()
    orig = k8s.c
    try:
        k8s.c = c.client
        pid = k8s.run_pod()
        cid = k8s.create(pid, "main", SLEEPER)
        url = c.client.rt("Exec", container_id=cid, cmd=["true"], stdout=True).url
        time.sleep(1.5)
        assert http_raw(url, upgrade_req(url)).startswith(b"HTTP/1.1 404 ")
    finally:
        k8s.c = orig
        assert c.stop() == []


def test_exec_request_checks(crisp, pod):
    _, cid = pod
    code, msg = rpc_error(crisp.client.rt, "Exec", container_id=cid, cmd=["sh"], tty=True, stderr=True,
                          stdout=True)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "tty and stderr" in msg
    code, msg = rpc_error(crisp.client.rt, "Exec", container_id=cid, cmd=["sh"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "one of stdin, stdout, or stderr" in msg
    code, _ = rpc_error(crisp.client.rt, "Exec", container_id="0" * 64, cmd=["sh"], stdout=True)
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = rpc_error(crisp.client.rt, "PortForward", pod_sandbox_id="0" * 64, port=[80])
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("proto", ["spdy", "ws"])
def test_vanishing_client_kills_the_exec(crisp, pod, proto):
    """The client goes away mid-session: the exec'd process is gone afterwards."""
    _, cid = pod
    marker = "sleep 3%d1" % (0 if proto == "spdy" else 1)
    p = subprocess.Popen([STREAMGO, "exec", "-cri", "unix://" + crisp.sock, "-id", cid, "-proto", proto,
                          "-stdin", "-cmd", json.dumps(["sh", "-c", "exec " + marker]),
                          "-vanish-after", "1s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)

    def running():
        out, _, _ = go_exec(crisp, cid, ["ps", "-o", "args"])
        return marker.encode() in out
    wait_for(running, timeout=20, what="the exec'd process to run")
    p.communicate(timeout=30)
    wait_for(lambda: not running(), timeout=20, what="the exec'd process to be killed")


# ---- python3-kubernetes' WebSocket client (v4) -------------------------------------------------


def test_python_kubernetes_ws_client(crisp, pod):
    """kubernetes.stream.ws_client.WSClient speaks v4.channel.k8s.io to the URL."""
    from kubernetes.client import Configuration
    from kubernetes.stream.ws_client import WSClient, STDOUT_CHANNEL, STDERR_CHANNEL  # noqa: F401
    _, cid = pod
    url = exec_url(crisp, cid, cmd=["sh", "-c", "echo from-python; echo oops >&2; exit 5"])
    cfg = Configuration()
    ws = WSClient(cfg, url.replace("http://", "ws://"), headers=None, capture_all=False)
    ws.run_forever(timeout=30)
    assert ws.read_stdout() == "from-python\n"
    assert ws.read_stderr() == "oops\n"
    assert ws.returncode == 5


# ---- ExecSync leaves no process behind -------------------------------------------------------


def ps_args(cri, cid):
    return cri.rt("ExecSync", container_id=cid, cmd=["ps", "-o", "args"], timeout=10).stdout


def test_exec_sync_timeout_kills(crisp, pod):
    """ExecSync's own timeout: DEADLINE_EXCEEDED, and the command is killed."""
    _, cid = pod
    code, _ = rpc_error(crisp.client.rt, "ExecSync", container_id=cid, cmd=["sleep", "3177"], timeout=1,
                        deadline=30)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: b"sleep 3177" not in ps_args(crisp.client, cid), timeout=20,
             what="the timed-out command to be killed")


def test_exec_sync_client_gone_kills(crisp, pod):
    """The client's own deadline (the call cancelled): the command is killed too."""
    _, cid = pod
    code, _ = rpc_error(crisp.client.rt, "ExecSync", container_id=cid, cmd=["sleep", "3178"], timeout=0,
                        deadline=1)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: b"sleep 3178" not in ps_args(crisp.client, cid), timeout=20,
             what="the abandoned command to be killed")


def test_python_kubernetes_port_forward(crisp, echo_pod):
    """python3-kubernetes' PortForward: WebSocket v4.channel.k8s.io, a data and
    an error channel per port (as the kubelet's websocket port-forward)."""
    from kubernetes.client import Configuration
    from kubernetes.stream.ws_client import PortForward, create_websocket
    wait_echo(crisp, echo_pod)
    url = crisp.client.rt("PortForward", pod_sandbox_id=echo_pod, port=[8080, 9]).url
    ws = create_websocket(Configuration(), url.replace("http://", "ws://"))
    pf = PortForward(ws, [8080, 9])
    s = pf.socket(8080)
    s.setblocking(True)
    s.sendall(b"hello over websocket\n")
    got = b""
    deadline = time.time() + 20
    while got != b"hello over websocket\n" and time.time() < deadline:
        s.settimeout(max(0.1, deadline - time.time()))
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    assert got == b"hello over websocket\n"
    wait_for(lambda: pf.error(9) is not None, timeout=20, what="port 9's error")
    assert pf.error(9).startswith("error forwarding port 9 to pod %s, uid : " % echo_pod), pf.error(9)
    pf.close()


def test_streaming_over_tls(denv, engine, k8s, tmp_path):
    """--streaming-tls-cert/-key: https:// URLs, ALPN http/1.1, the same sessions."""
    from conftest import DockerCrisp
    if engine.kind != "docker":
        pytest.skip("TLS is the listener's business, the same for every engine")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True,
                   capture_output=True)
    c = DockerCrisp(denv, engine.kind)
    c.sock = c.sock.replace(".sock", "-tls.sock")
    c.args = [("unix://" + c.sock if a.startswith("unix://") and "crisp-docker" in a else a) for a in c.args]
    c.args += ["--streaming-tls-cert", str(cert), "--streaming-tls-key", str(key)]
    c.start()
    orig = k8s.c
    try:
        k8s.c = c.client
        pid = k8s.run_pod()
        cid = k8s.create(pid, "main", SLEEPER)
        url = c.client.rt("Exec", container_id=cid, cmd=["echo", "secure"], stdout=True).url
        assert url.startswith("https://127.0.0.1:"), url
        p = streamgo("exec", "-url", url, "-proto", "spdy", "-stderr=false", "-cmd", "[]")
        assert p.stdout == b"secure\n", p.stderr[-500:]
        url = c.client.rt("Exec", container_id=cid, cmd=["echo", "secure-ws"], stdout=True).url
        p = streamgo("exec", "-url", url, "-proto", "ws", "-stderr=false", "-cmd", "[]")
        assert p.stdout == b"secure-ws\n", p.stderr[-500:]
    finally:
        k8s.c = orig
        assert c.stop() == []


def test_crisp_stopping_kills_running_execs(denv, engine, crisp, k8s):
    """SIGTERM with an exec session open: its process is gone afterwards.
    (dockerd only: a second crisp in front of podman waits for podman's slow
    /version to come up; podman's kill path is the vanishing client's.)"""
    from conftest import DockerCrisp
    if engine.kind != "docker":
        pytest.skip("the same kill path as test_vanishing_client_kills_the_exec on podman")
    pid = k8s.run_pod()
    cid = k8s.create(pid, "main", SLEEPER)
    c = DockerCrisp(denv, engine.kind)
    c.sock = c.sock.replace(".sock", "-stop.sock")
    c.args = [("unix://" + c.sock if a.startswith("unix://") and "crisp-docker" in a else a) for a in c.args]
    c.start()
    p = None
    try:
        p = subprocess.Popen([STREAMGO, "exec", "-cri", "unix://" + c.sock, "-id", cid, "-stdin", "-cmd",
                              json.dumps(["sleep", "3192"])], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def running():
            return b"sleep 3192" in ps_args(crisp.client, cid)
        wait_for(running, timeout=20, what="the exec'd process to run")
        time.sleep(0.5)  # its PID learnt
    finally:
        problems = c.stop()
        if p:
            p.communicate(timeout=30)
    assert problems == []
    wait_for(lambda: not running(), timeout=20, what="the exec'd process to be killed at crisp's exit")
