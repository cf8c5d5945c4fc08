"""Input that used to be cut silently by fixed-size buffers in the Docker
backend (issue 9, items 1-4): it goes to the engine whole, or is refused with
a clear status; never cut. Against the real engines, and against a scripted
fake engine that records exactly what crisp sent. (ExecSync output over
16 MiB is still cut to fit the kubelet's cap, as containerd and CRI-O do:
test_grpcgo.py::test_go_big_answer.)"""
import base64
import http.server
import json
import os
import signal
import socketserver
import subprocess
import tempfile
import threading
import urllib.parse

import grpc
import pytest

from conftest import (CRISP_BIN, SANITIZER_RE, SLEEPER, CRIClient, code_of, tail, v1,
                      wait_cri_ready)

OK = grpc.StatusCode.OK


def call_code(fn, *a, **kw):
    try:
        fn(*a, **kw)
        return OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def old_escape_cut(s):
    """What crisp's former dk_esc kept of s: escaped into 512 bytes, cut."""
    out = ""
    for ch in s:
        if len(out) + 4 >= 512:
            break
        out += ch if (ch.isascii() and ch.isalnum()) or ch in "-_.~" else "%%%02X" % ord(ch)
    return out


def image_ref_cut_to(existing):
    """A reference that does not exist, which the former 512-byte escape cut
    to `existing` (which escapes to exactly 508 bytes)."""
    missing = existing + "9"
    assert old_escape_cut(missing) == urllib.parse.quote(existing, safe="")
    return missing


def test_long_image_name_not_cut(cri, engine, denv):
    """RemoveImage of a long name that does not exist deleted another image
    (issue 9, item 1): the name is looked up whole."""
    repo = denv.REGISTRY + "/" + "a/" * 119 + "b"  # 255 characters, the reference maximum
    existing = repo + ":12345678"
    assert len(urllib.parse.quote(existing, safe="")) == 508
    engine.post("/images/%s/tag" % urllib.parse.quote(denv.BUSYBOX_IMAGE, safe=""),
                repo=repo, tag="12345678")
    try:
        busybox = engine.image(denv.BUSYBOX_IMAGE)["Id"]
        assert cri.img("ImageStatus", image=v1.ImageSpec(image=existing)).image.id == busybox
        missing = image_ref_cut_to(existing)
        st = cri.img("ImageStatus", image=v1.ImageSpec(image=missing))
        assert not st.image.id, "ImageStatus of %s... answered image %s" % (missing[:40], st.image.id)
        code, details = call_code(cri.img, "RemoveImage", image=v1.ImageSpec(image=missing))
        assert code in (OK, grpc.StatusCode.NOT_FOUND), (code, details)
        assert engine.image(denv.BUSYBOX_IMAGE) is not None, "RemoveImage deleted busybox"
        assert engine.image(existing) is not None, "RemoveImage deleted the long-named tag"
    finally:
        engine.request("DELETE", "/images/%s" % urllib.parse.quote(existing, safe=""))


def test_kubernetes_maximum_lengths(k8s, engine):
    """Pod name 253, namespace 63, container name 63, uid 36: Kubernetes'
    maxima make a Docker name of ~440 characters (issue 9, item 2)."""
    name = ("p" * 60 + ".") * 4 + "p" * 9          # a DNS subdomain of 253
    ns = "n" * 63
    uid = "0123abcd-0000-4000-8000-%s" % engine.kind.ljust(12, "0")[:12]
    cname = "c" * 63
    assert (len(name), len(ns), len(uid), len(cname)) == (253, 63, 36, 63)
    cfg = k8s.pod_config(namespace=ns, uid=uid)
    cfg.metadata.name = name
    pod = k8s.run_pod(config=cfg)
    cid = k8s.create(pod, cname, SLEEPER)
    st = k8s.pod_status(pod)
    assert (st.metadata.name, st.metadata.namespace, st.metadata.uid) == (name, ns, uid)
    cst = k8s.status(cid)
    assert cst.metadata.name == cname and cst.state == v1.CONTAINER_RUNNING, cst
    listed = k8s.c.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=pod)).containers
    assert [c.metadata.name for c in listed] == [cname]
    assert engine.inspect(cid)["Name"].lstrip("/").startswith("k8s_%s_%s_%s_%s_0" % (cname, name, ns, uid))


def test_long_label_keys_and_selectors(k8s):
    """A label key over 1 KiB and a selector value over 2 KiB go whole
    (issue 9, item 4): the pod is found by its own label, and shows it."""
    key = "example.com/" + "k" * 1500
    value = "v" * 3000
    pod = k8s.run_pod(labels={key: "1", "big": value}, annotations={key: "a"})
    st = k8s.pod_status(pod)
    assert st.labels.get(key) == "1" and st.labels.get("big") == value, sorted(st.labels)
    assert st.annotations.get(key) == "a", sorted(st.annotations)
    found = k8s.c.rt("ListPodSandbox", filter=v1.PodSandboxFilter(label_selector={"big": value})).items
    assert [p.id for p in found] == [pod]
    assert not k8s.c.rt("ListPodSandbox", filter=v1.PodSandboxFilter(
        label_selector={"big": value[:-1]})).items


def test_env_value_with_nul_refused(k8s, engine):
    """An env value holding a NUL byte was cut there; it is refused."""
    pod = k8s.run_pod()
    cfg = k8s.container_config("nul", SLEEPER)
    cfg.envs.append(v1.KeyValue(key="BAD", value=b"before\0after"))
    before = set(c["Id"] for c in engine.containers(all=True))
    code, details = code_of(k8s.c.rt, "CreateContainer", pod_sandbox_id=pod, config=cfg,
                            sandbox_config=k8s.configs[pod])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "NUL" in details, (code, details)
    assert set(c["Id"] for c in engine.containers(all=True)) == before


def test_nul_in_any_string_refused(k8s, engine):
    """A NUL byte in any string of a request (protobuf-c's C strings would cut
    it there: a label "a\\0b" became "a") is refused with the field's path,
    and nothing is made."""
    before = set(c["Id"] for c in engine.containers(all=True))
    cfg = k8s.pod_config(labels={"nul": "before\0after"})
    code, details = code_of(k8s.c.rt, "RunPodSandbox", config=cfg)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "config.labels.value" in details \
        and "NUL" in details, (code, details)
    cfg = k8s.pod_config()
    cfg.metadata.name = "nul\0name"
    code, details = code_of(k8s.c.rt, "RunPodSandbox", config=cfg)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "config.metadata.name" in details, (code, details)
    code, details = code_of(k8s.c.img, "ImageStatus", image=v1.ImageSpec(image="busybox\0:1"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "image.image" in details, (code, details)
    assert set(c["Id"] for c in engine.containers(all=True)) == before


def test_mount_paths_with_colons(k8s, engine):
    """A ':' in a mount's path cannot go in a bind's "host:container:ro"
    (the engines answered "invalid volume specification"): such mounts work
    (HostConfig.Mounts); one that asks for SELinux relabelling is refused."""
    d = tempfile.mkdtemp(prefix="crisp-a:b-", dir="/tmp")
    with open(os.path.join(d, "in.txt"), "w") as f:
        f.write("colon\n")
    try:
        pod = k8s.run_pod()
        cid = k8s.create(pod, "colon", SLEEPER, mounts=[
            v1.Mount(container_path="/data:x", host_path=d, readonly=True)])
        r = k8s.c.rt("ExecSync", container_id=cid, cmd=["cat", "/data:x/in.txt"], timeout=10)
        assert r.stdout == b"colon\n", r
        assert k8s.c.rt("ExecSync", container_id=cid, cmd=["touch", "/data:x/new"], timeout=10).exit_code != 0
        m = [m for m in k8s.status(cid).mounts if m.container_path == "/data:x"]
        assert m and m[0].host_path == d and m[0].readonly, k8s.status(cid).mounts
        cfg = k8s.container_config("relabel", SLEEPER, mounts=[
            v1.Mount(container_path="/data", host_path=d, selinux_relabel=True)])
        code, details = code_of(k8s.c.rt, "CreateContainer", pod_sandbox_id=pod, config=cfg,
                                sandbox_config=k8s.configs[pod])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "SELinux" in details, (code, details)
    finally:
        subprocess.run(["rm", "-rf", d])


# ---------------------------------------------------------------------------
# a scripted engine that records what crisp sends


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path):
        self.requests = []
        super().__init__(path, FakeHandler)


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def address_string(self):
        return "fake"

    def answer(self, status, body):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        path = urllib.parse.urlsplit(self.path).path
        if path.endswith("/version"):
            self.answer(200, {"ApiVersion": "1.41", "Version": "fake"})
        elif path.endswith("/images/create"):
            self.answer(200, {"status": "pulled"})
        elif path.endswith("/json") and "/images/" in path:
            self.answer(404, {"message": "no such image"})
        else:
            self.answer(404, {"message": "not faked"})

    do_GET = do_POST = do_DELETE = do_any


@pytest.fixture
def fake():
    d = tempfile.mkdtemp(prefix="crisp-fake-", dir="/tmp")
    eng = FakeEngine(os.path.join(d, "engine.sock"))
    threading.Thread(target=eng.serve_forever, daemon=True).start()
    sock = os.path.join(d, "crisp.sock")
    log = open(os.path.join(d, "crisp.log"), "wb")
    proc = subprocess.Popen([CRISP_BIN, "--listen", "unix://" + sock, "--backend",
                             "docker:unix://" + os.path.join(d, "engine.sock"), "--log-level", "debug"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    err = wait_cri_ready(sock, 15, proc)
    assert not err, "crisp in front of the fake engine: %s\n%s" % (err, tail(log.name))
    client = CRIClient("unix://" + sock, "fake")
    yield eng, client
    client.close()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=15)
    eng.shutdown()
    eng.server_close()
    text = open(log.name, "rb").read().decode(errors="replace")
    assert rc == 0 and not SANITIZER_RE.search(text), "crisp exited %s:\n%s" % (rc, tail(log.name))


def decode_registry_auth(value):
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def test_long_registry_credentials_sent_whole(fake):
    """A password over 1 KiB (a registry token) and a username over 511
    bytes were cut (issue 9, item 3): X-Registry-Auth carries them whole."""
    eng, c = fake
    user, password = "u" * 700, "p" * 5000
    call_code(c.img, "PullImage", image=v1.ImageSpec(image="reg.example:5000/app:1"),
              auth=v1.AuthConfig(username=user, password=password))
    pulls = [r for r in eng.requests if "/images/create" in r[1]]
    assert len(pulls) == 1, eng.requests
    headers = {k.lower(): v for k, v in pulls[0][2].items()}
    auth = decode_registry_auth(headers["x-registry-auth"])
    assert auth == {"username": user, "password": password}, {k: len(v) for k, v in auth.items()}
    assert "fromImage=reg.example%3A5000%2Fapp&tag=1" in pulls[0][1]
    basic = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    call_code(c.img, "PullImage", image=v1.ImageSpec(image="reg.example:5000/app:1"),
              auth=v1.AuthConfig(auth=basic))
    pulls = [r for r in eng.requests if "/images/create" in r[1]]
    auth = decode_registry_auth({k.lower(): v for k, v in pulls[-1][2].items()}["x-registry-auth"])
    assert auth == {"username": user, "password": password}


def test_long_names_reach_the_engine_whole(fake):
    """An image reference is escaped whole into the request target, or
    refused past the target's cap (64 KiB); never cut."""
    eng, c = fake
    name = "reg.example:5000/" + "x/" * 2000 + "app:1"
    st = c.img("ImageStatus", image=v1.ImageSpec(image=name))
    assert not st.image.id
    target = [r[1] for r in eng.requests if "/images/" in r[1] and r[1].endswith("/json")][-1]
    assert urllib.parse.unquote(target.split("/images/", 1)[1][:-len("/json")]) == name
    huge = "reg.example:5000/" + "y" * 70000
    code, details = code_of(c.img, "ImageStatus", image=v1.ImageSpec(image=huge))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "65536" in details, (code, details)
    assert not any("yyyy" in r[1] for r in eng.requests), "a cut name reached the engine"
