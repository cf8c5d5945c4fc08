"""crisp's Docker backend over tcp:// with TLS client certificates (the
DOCKER_HOST / DOCKER_CERT_PATH / DOCKER_TLS_VERIFY conventions).

The engine is the suite's real dockerd; a small TLS terminator in this test
(Python's ssl, client certificates required) stands where dockerd's own
--tlsverify listener would, so the test does not need a second daemon."""
import os
import socket
import ssl
import subprocess
import threading
import time

import grpc
import pytest
from conftest import CRISP_BIN, REPO, tail, wait_cri_ready
from crilib import CRIClient, v1


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=%s" % name,
            "-keyout", "%s-key.pem" % name, "-out", "%s.pem" % name, cwd=d)


def make_cert(d, ca, name, san=None):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % name,
            "-keyout", "%s-key.pem" % name, "-out", "%s.csr" % name, cwd=d)
    ext = os.path.join(d, "%s.ext" % name)
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\n" % (san or "DNS:%s" % name))
        f.write("extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", "%s.csr" % name, "-CA", "%s.pem" % ca, "-CAkey", "%s-key.pem" % ca,
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", "%s.pem" % name, cwd=d)


class TLSTerminator:
    """127.0.0.1:port, TLS with client certificates required, piped to the
    engine's unix socket."""

    def __init__(self, d, engine_sock):
        self.engine_sock = engine_sock
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server-key.pem"))
        self.ctx.load_verify_locations(os.path.join(d, "ca.pem"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.accepted = 0
        self.refused = 0
        self.stopped = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopped:
            try:
                raw, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(raw,), daemon=True).start()

    def handle(self, raw):
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.refused += 1
            raw.close()
            return
        self.accepted += 1
        up = socket.socket(socket.AF_UNIX)
        up.connect(self.engine_sock)

        def pump(src, dst):
            try:
                while True:
                    b = src.recv(65536)
                    if not b:
                        break
                    dst.sendall(b)
            except OSError:
                pass
            if dst is conn:
                # the engine closed: end TLS properly (close_notify), as
                # dockerd's own TLS listener does
                try:
                    conn.unwrap()
                except (OSError, ValueError):
                    pass
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except (OSError, ValueError):
                    pass

        threading.Thread(target=pump, args=(up, conn), daemon=True).start()
        pump(conn, up)

    def close(self):
        self.stopped = True
        self.lsock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory, denv):
    if "docker" not in denv.ENGINES.split():
        pytest.skip("the TLS tests use the suite's dockerd, which this run did not start")
    d = str(tmp_path_factory.mktemp("docker-tls"))
    make_ca(d, "ca")
    make_cert(d, "ca", "server", san="IP:127.0.0.1")
    make_cert(d, "ca", "client")
    make_ca(d, "other")
    make_cert(d, "other", "stranger")
    # DOCKER_CERT_PATH layouts: ca.pem, cert.pem, key.pem
    for name, cert in (("good", "client"), ("bad", "stranger")):
        p = os.path.join(d, name)
        os.makedirs(p)
        os.symlink(os.path.join(d, "ca.pem"), os.path.join(p, "ca.pem"))
        os.symlink(os.path.join(d, "%s.pem" % cert), os.path.join(p, "cert.pem"))
        os.symlink(os.path.join(d, "%s-key.pem" % cert), os.path.join(p, "key.pem"))
    return d


def start_crisp(denv, port, cert_dir, tag, expect_ready=True):
    sock = os.path.join(os.path.dirname(denv.DOCKER_SOCK), "crisp-tls-%s.sock" % tag)
    log = os.path.join(denv.CRISP_TEST_WORK, "logs", "crisp-tls-%s.log" % tag)
    if os.path.exists(sock):
        os.unlink(sock)
    env = dict(os.environ, DOCKER_CERT_PATH=cert_dir, DOCKER_TLS_VERIFY="1")
    logf = open(log, "ab")
    proc = subprocess.Popen([CRISP_BIN, "--listen", "unix://" + sock,
                             "--backend", "docker:tcp://127.0.0.1:%d" % port,
                             "--pod-infra-image", denv.PAUSE_IMAGE, "--log-level", "debug"],
                            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env, cwd=REPO)
    logf.close()
    if expect_ready:
        err = wait_cri_ready(sock, 15, proc)
    else:
        deadline, err = time.time() + 15, "no socket"
        while err and time.time() < deadline and proc.poll() is None:
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(sock)
                err = None
            except OSError:
                time.sleep(0.05)
            finally:
                probe.close()
    if err:
        proc.kill()
        pytest.fail("crisp did not come up: %s\n%s" % (err, tail(log)))
    return proc, CRIClient("unix://" + sock, "crisp-tls"), log


def stop(proc, client):
    client.close()
    proc.terminate()
    assert proc.wait(timeout=15) == 0


def test_docker_over_tls_with_client_certificate(denv, pki):
    term = TLSTerminator(pki, denv.DOCKER_SOCK)
    proc, c, log = start_crisp(denv, term.port, os.path.join(pki, "good"), "good")
    try:
        ver = c.rt("Version", v1.VersionRequest())
        assert ver.runtime_name == "docker", ver
        assert term.accepted >= 1
        # a pod and an exec: the hijacked exec stream runs over TLS too
        cfg = v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(
            name="tls-pod", namespace="crisp-test", uid="tls-%d" % int(time.time()), attempt=0))
        pod = c.rt("RunPodSandbox", v1.RunPodSandboxRequest(config=cfg), timeout=120).pod_sandbox_id
        try:
            c.img("PullImage", v1.PullImageRequest(image=v1.ImageSpec(image=denv.BUSYBOX_IMAGE)),
                  timeout=120)
            ccfg = v1.ContainerConfig(metadata=v1.ContainerMetadata(name="tls"),
                                      image=v1.ImageSpec(image=denv.BUSYBOX_IMAGE),
                                      command=["sleep", "1000"])
            cid = c.rt("CreateContainer", v1.CreateContainerRequest(
                pod_sandbox_id=pod, config=ccfg, sandbox_config=cfg)).container_id
            c.rt("StartContainer", v1.StartContainerRequest(container_id=cid))
            r = c.rt("ExecSync", v1.ExecSyncRequest(container_id=cid, cmd=["echo", "over tls"],
                                                    timeout=10))
            assert (r.exit_code, r.stdout) == (0, b"over tls\n"), r
        finally:
            c.rt("StopPodSandbox", v1.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
            c.rt("RemovePodSandbox", v1.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    finally:
        stop(proc, c)
        term.close()


def test_docker_tls_wrong_client_certificate(denv, pki):
    """A client certificate the engine does not trust: a clear UNAVAILABLE
    naming the engine, not a hang; Status says the runtime is not ready."""
    term = TLSTerminator(pki, denv.DOCKER_SOCK)
    proc, c, log = start_crisp(denv, term.port, os.path.join(pki, "bad"), "bad", expect_ready=False)
    try:
        t0 = time.time()
        with pytest.raises(grpc.RpcError) as e:
            c.rt("Version", v1.VersionRequest(), timeout=20)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
        assert "tcp://127.0.0.1:%d" % term.port in e.value.details(), e.value.details()
        assert time.time() - t0 < 10
        st = c.rt("Status", v1.StatusRequest())
        ready = {x.type: x for x in st.status.conditions}["RuntimeReady"]
        assert not ready.status and ready.message, st
        assert term.refused >= 1
    finally:
        stop(proc, c)
        term.close()
