"""The CRI through grpc-go, the kubelet's and crictl's gRPC stack (crigo, see
test/grpcgo/README.md): containerd directly ("direct", the reference) and
crisp in front of it ("crisp"), with the same assertions, plus tests that
compare both answers (and grpc-go's view with the python C-core client's).

Every test drives one `crigo repl` process, one grpc-go ClientConn dialled as
the kubelet dials (the socket path as target and :authority), so a whole pod
lifecycle runs on one connection, as the kubelet's does. Pods and containers
are removed at the end through containerd directly (conftest.Pods)."""
import base64
import os
import signal
import sys
import time

import grpc
import pytest

from conftest import STOP_TIMEOUT, WRAPPED, Crisp, _crisp_instances, free_unix_path, stop_and_check
from crilib import CRIClient, as_dict, v1

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grpcgo"))
from crigo import GoCRI, conn_summary, one_call, strip  # noqa: E402
# the fixtures of the listener tests: a crisp of one's own, short dirs, certificates
from test_listeners import pki, started, tmpdir_short  # noqa: E402,F401,F811

# a loaded 2-core machine (or valgrind) is slow: budgets, not sleeps
SLOW = 5.0 if WRAPPED else 1.0
SERVE = 'trap "exit 0" TERM; sleep 3600 & wait'


@pytest.fixture
def go(cri):
    """A grpc-go client on the socket under test (parametrized with `cri`)."""
    g = GoCRI(cri.target, cri.name)
    yield g
    g.close()


@pytest.fixture
def go_both(testenv, crisp):
    """(containerd, crisp) grpc-go clients, for same-answer checks."""
    d = GoCRI("unix://" + testenv.CONTAINERD_SOCK, "direct")
    c = GoCRI("unix://" + crisp.sock, "crisp")
    yield d, c
    d.close()
    c.close()


def as_json(msg):
    from google.protobuf.json_format import MessageToDict
    return MessageToDict(msg)


class GoPods:
    """Pods and containers made through grpc-go, recorded in a conftest.Pods
    so that they are removed (through containerd directly) at the end."""

    def __init__(self, g, pods):
        self.g = g
        self.p = pods

    def run_pod(self, **kw):
        cfg = self.p.pod_config(**kw)
        r = self.g.rt("RunPodSandbox", {"config": as_json(cfg)}, timeout=240)
        pid = r["podSandboxId"]
        self.p.pod_ids.append(pid)
        self.p.configs[pid] = cfg
        return pid, cfg

    def create(self, pid, name, command, start=True, **kw):
        cfg = self.p.container_config(name, command, **kw)
        r = self.g.rt("CreateContainer", {"podSandboxId": pid, "config": as_json(cfg),
                                          "sandboxConfig": as_json(self.p.configs[pid])})
        cid = r["containerId"]
        self.p.ctr_ids.append(cid)
        if start:
            self.g.rt("StartContainer", {"containerId": cid})
        return cid

    def exec(self, cid, cmd, timeout=10, deadline=None):
        """ExecSync as the kubelet does it: deadline = its timeout + the runtime timeout."""
        return self.g.call("ExecSync", {"containerId": cid, "cmd": cmd, "timeout": timeout},
                           timeout=deadline if deadline is not None else timeout + 120)


@pytest.fixture
def gpods(go, pods):
    return GoPods(go, pods)


def state(d, zero):
    """An enum field of a protojson dict: absent means its zero value
    (SANDBOX_READY, CONTAINER_CREATED), which protojson leaves out."""
    return d.get("state", zero)


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def unb64(s):
    return base64.b64decode(s or "")


def assert_one_connection(g, what=""):
    """The ClientConn used one connection, still open, no GOAWAY from the server."""
    w = g.wire()["wire"]
    assert w["dials"] == 1, "%s: %s" % (what, conn_summary(w))
    c = w["conns"][0]
    assert c["goaways"] == [] and c["closed"] == "", "%s: %s" % (what, conn_summary(w))
    return w


# ---------------------------------------------------------------------------
# runtime info


def test_go_version(go):
    r = go.call("Version", {"version": "0.1.0"})
    assert r.ok, r
    assert r.response == {"version": "0.1.0", "runtimeName": "containerd",
                          "runtimeVersion": r.response["runtimeVersion"], "runtimeApiVersion": "v1"}
    assert r.response["runtimeVersion"]
    # grpc-go hands the caller the response headers with content-type in
    # them (C-core strips it): the kubelet sees {"content-type": [...]}
    assert r.headers.get("content-type") == ["application/grpc"], r.headers
    assert_one_connection(go)


def test_go_status_and_runtime_config(go, direct_client):
    st = go.rt("Status", {})
    assert {c["type"]: c.get("status", False) for c in st["status"]["conditions"]} == \
        {"RuntimeReady": True, "NetworkReady": True}
    assert "info" not in st
    vst = go.rt("Status", {"verbose": True})
    assert "config" in vst["info"] and "cniconfig" in vst["info"]
    # containerd 1.6 has no RuntimeConfig: crisp relays its very status
    rc = go.call("RuntimeConfig", {})
    try:
        want = ("OK", as_dict(direct_client.rt("RuntimeConfig")))
    except grpc.RpcError as e:
        want = (e.code().name, e.details())
    assert (rc.code, rc.message if not rc.ok else rc.response) == want, rc
    assert go.call("UpdateRuntimeConfig", {"runtimeConfig": {"networkConfig": {"podCidr": ""}}}).ok


def test_go_same_answers(go_both, testenv, direct_client):
    """containerd and crisp give grpc-go the same answers, and grpc-go sees
    what the python (C-core) client sees."""
    d, c = go_both
    direct_client.img("PullImage", image=v1.ImageSpec(image=testenv.BUSYBOX_IMAGE))
    sd, sc = d.rt("Status", {"verbose": True}), c.rt("Status", {"verbose": True})
    assert sc["status"] == sd["status"] and sorted(sc["info"]) == sorted(sd["info"])
    assert sc["info"]["config"] == sd["info"]["config"]
    calls = [
        ("Version", {"version": "0.1.0"}),
        ("Status", {}),
        ("ImageService/ImageStatus", {"image": {"image": testenv.BUSYBOX_IMAGE}, "verbose": True}),
        ("ImageService/ImageStatus", {"image": {"image": testenv.REGISTRY + "/crisp-test/nope:1"}}),
        ("ImageService/ImageFsInfo", {}),
        ("ContainerStatus", {"containerId": "no-such-container-go"}),
        ("PodSandboxStatus", {"podSandboxId": "no-such-pod-go"}),
        ("ContainerStats", {"containerId": ""}),
        ("RuntimeConfig", {}),
        ("CheckpointContainer", {"containerId": "x"}),
        ("ListMetricDescriptors", {}),
    ]
    for m, req in calls:
        rd, rc = d.call(m, req), c.call(m, req)
        assert (rc.code, rc.message) == (rd.code, rd.message), m
        assert strip(rc.response) == strip(rd.response), m
        # the metadata grpc-go hands the caller: same keys either way
        assert sorted(rc.headers) == sorted(rd.headers), (m, rc.headers, rd.headers)
        assert sorted(rc.trailers) == sorted(rd.trailers), (m, rc.trailers, rd.trailers)
        assert rc.details == rd.details == [], m
    # grpc-go's decoding of an answer = C-core's
    py = as_dict(direct_client.rt("Version", version="0.1.0"))
    assert c.rt("Version", {"version": "0.1.0"}) == py
    py = as_dict(direct_client.img("ImageStatus", image=v1.ImageSpec(image=testenv.BUSYBOX_IMAGE)))
    assert strip(c.img("ImageStatus", {"image": {"image": testenv.BUSYBOX_IMAGE}})) == py
    imgs_d = sorted(i["id"] for i in d.img("ListImages", {}).get("images", []))
    imgs_c = sorted(i["id"] for i in c.img("ListImages", {}).get("images", []))
    assert imgs_c == imgs_d and imgs_c


def test_go_unknown_method(go, direct_client):
    """A method outside the schema: UNIMPLEMENTED either way (the message is
    the server's own: grpc-go's server names method and service, crisp the path)."""
    r = go.call("/runtime.v1.RuntimeService/NoSuchMethod", request_b64="")
    assert r.code == "UNIMPLEMENTED" and "NoSuchMethod" in r.message, r
    r = go.call("/runtime.v9.RuntimeService/Version", request_b64="")
    assert r.code == "UNIMPLEMENTED", r


# ---------------------------------------------------------------------------
# pods, containers, exec, stats: one connection for all of it


def test_go_pod_lifecycle(go, gpods, testenv):
    pid, cfg = gpods.run_pod(labels={"app": "go-lifecycle"})
    assert len(pid) == 64
    st = go.rt("PodSandboxStatus", {"podSandboxId": pid})["status"]
    assert st["id"] == pid and state(st, "SANDBOX_READY") == "SANDBOX_READY"
    assert st["metadata"] == as_json(cfg.metadata)
    assert st["labels"]["app"] == "go-lifecycle"
    assert st["network"]["ip"]
    vst = go.rt("PodSandboxStatus", {"podSandboxId": pid, "verbose": True})
    assert '"pid"' in vst["info"]["info"]
    items = go.rt("ListPodSandbox", {"filter": {"id": pid}})["items"]
    assert [i["id"] for i in items] == [pid]
    sel = go.rt("ListPodSandbox", {"filter": {"labelSelector": {"app": "go-lifecycle",
                                                                 "crisp-test/uid": cfg.labels["crisp-test/uid"]}}})
    assert [i["id"] for i in sel["items"]] == [pid]

    cid = gpods.create(pid, "main", ["sh", "-c", SERVE], start=False, env={"GREETING": "hi"},
                       labels={"tier": "go"})
    cst = go.rt("ContainerStatus", {"containerId": cid})["status"]
    assert state(cst, "CONTAINER_CREATED") == "CONTAINER_CREATED" and cst["labels"]["tier"] == "go"
    go.rt("StartContainer", {"containerId": cid})
    cst = go.rt("ContainerStatus", {"containerId": cid})["status"]
    assert state(cst, "CONTAINER_CREATED") == "CONTAINER_RUNNING"
    lst = go.rt("ListContainers", {"filter": {"podSandboxId": pid}})["containers"]
    assert [c["id"] for c in lst] == [cid]
    lst = go.rt("ListContainers", {"filter": {"labelSelector": {"tier": "go"}, "podSandboxId": pid,
                                              "state": {"state": "CONTAINER_RUNNING"}}})["containers"]
    assert [c["id"] for c in lst] == [cid]

    r = gpods.exec(cid, ["sh", "-c", "echo out $GREETING; echo err >&2; exit 7"])
    assert r.ok, r
    assert unb64(r.response.get("stdout")) == b"out hi\n"
    assert unb64(r.response.get("stderr")) == b"err\n"
    assert r.response.get("exitCode") == 7

    go.rt("UpdateContainerResources", {"containerId": cid, "linux": {"cpuShares": "512",
                                                                      "memoryLimitInBytes": str(256 << 20)}})
    cs = go.rt("ContainerStats", {"containerId": cid})["stats"]
    assert cs["attributes"]["id"] == cid and "cpu" in cs and "memory" in cs
    lcs = go.rt("ListContainerStats", {"filter": {"podSandboxId": pid}})["stats"]
    assert [s["attributes"]["id"] for s in lcs] == [cid]
    ps = go.rt("PodSandboxStats", {"podSandboxId": pid})["stats"]
    assert ps["attributes"]["id"] == pid
    lps = go.rt("ListPodSandboxStats", {"filter": {"id": pid}})["stats"]
    assert [s["attributes"]["id"] for s in lps] == [pid]
    go.rt("ReopenContainerLog", {"containerId": cid})
    ex = go.rt("Exec", {"containerId": cid, "cmd": ["true"], "stdout": True})
    assert ex["url"].startswith("http")

    # the kubelet's StopContainer deadline: its grace period + the runtime timeout
    go.rt("StopContainer", {"containerId": cid, "timeout": "10"}, timeout=130)
    cst = go.rt("ContainerStatus", {"containerId": cid})["status"]
    assert state(cst, "CONTAINER_CREATED") == "CONTAINER_EXITED"
    go.rt("RemoveContainer", {"containerId": cid})
    r = go.call("ContainerStatus", {"containerId": cid})
    assert r.code == "NOT_FOUND", r
    gpods.p.forget_container(cid)
    go.rt("StopPodSandbox", {"podSandboxId": pid})
    assert state(go.rt("PodSandboxStatus", {"podSandboxId": pid})["status"], "SANDBOX_READY") == "SANDBOX_NOTREADY"
    go.rt("RemovePodSandbox", {"podSandboxId": pid})
    assert go.call("PodSandboxStatus", {"podSandboxId": pid}).code == "NOT_FOUND"
    gpods.p.forget_pod(pid)
    # all of it on one connection, as the kubelet's
    assert_one_connection(go, "pod lifecycle")


def test_go_exec_sync_timeout(go, gpods):
    """ExecSync's own timeout: the runtime answers DEADLINE_EXCEEDED (and the
    kubelet reports a timed-out probe); crisp relays it unchanged."""
    pid, _ = gpods.run_pod()
    cid = gpods.create(pid, "main", ["sh", "-c", SERVE])
    t0 = time.time()
    r = gpods.exec(cid, ["sleep", "30"], timeout=1)
    assert r.code == "DEADLINE_EXCEEDED", r
    assert "timeout 1s exceeded" in r.message, r
    assert time.time() - t0 < 20 * SLOW
    r = gpods.exec(cid, ["sh", "-c", "exit 0"])
    assert r.ok and r.response.get("exitCode", 0) == 0, r


def test_go_exec_same_answer(go_both, direct_pods):
    d, c = go_both
    pid, _ = direct_pods.run_pod()
    cid = direct_pods.create_container(pid, "main", ["sh", "-c", SERVE])
    for cmd, t in ((["sh", "-c", "echo a; echo b >&2; exit 3"], 10), (["sleep", "10"], 1),
                   (["/no/such/binary"], 10)):
        req = {"containerId": cid, "cmd": cmd, "timeout": t}
        rd, rc = d.call("ExecSync", req, timeout=60), c.call("ExecSync", req, timeout=60)
        assert (rc.code, rc.response) == (rd.code, rd.response), cmd
        if not rd.ok:
            # containerd's messages carry ids of its own (exec ids): same shape
            assert rc.message.split(":")[0] == rd.message.split(":")[0], (rc.message, rd.message)


# ---------------------------------------------------------------------------
# images


def test_go_images(go, testenv):
    ref = testenv.VICTIM_IMAGE
    # the kubelet's PullImage has no deadline (getContextWithCancel); with
    # credentials, which a registry without auth ignores
    r = go.call("ImageService/PullImage", {"image": {"image": ref}, "auth": {"username": "u", "password": "p"}},
                timeout=0)
    assert r.ok, r
    image_ref = r.response["imageRef"]
    assert image_ref.startswith("sha256:")
    assert "grpc-timeout" not in r.headers
    assert go.img("PullImage", {"image": {"image": ref}}, timeout=0)["imageRef"] == image_ref
    st = go.img("ImageStatus", {"image": {"image": ref}, "verbose": True})
    assert st["image"]["id"] == image_ref and ref in st["image"]["repoTags"]
    assert int(st["image"]["size"]) > 0 and "info" in st["info"]
    assert image_ref in [i["id"] for i in go.img("ListImages", {}).get("images", [])]
    go.img("RemoveImage", {"image": {"image": ref}})
    assert go.img("ImageStatus", {"image": {"image": ref}}) == {}
    assert image_ref not in [i["id"] for i in go.img("ListImages", {}).get("images", [])]
    go.img("RemoveImage", {"image": {"image": ref}})  # idempotent
    missing = testenv.REGISTRY + "/crisp-test/does-not-exist:1"
    r = go.call("ImageService/PullImage", {"image": {"image": missing}}, timeout=0)
    assert r.code == "NOT_FOUND" and missing in r.message, r
    fs = go.img("ImageFsInfo", {})["imageFilesystems"]
    assert fs and fs[0]["fsId"]["mountpoint"]


# ---------------------------------------------------------------------------
# events (containerd 1.6 has none: crisp relays its UNIMPLEMENTED)


def test_go_container_events_unimplemented(go_both):
    """containerd 1.6 answers GetContainerEvents UNIMPLEMENTED (a trailers-only
    answer); crisp must give grpc-go the same: same code, message and
    metadata, no message."""
    d, c = go_both
    rd = d.call("GetContainerEvents", {}, timeout=10)
    rc = c.call("GetContainerEvents", {}, timeout=10)
    assert rd.code == "UNIMPLEMENTED" and rd.count == 0, rd
    assert (rc.code, rc.message, rc.count) == (rd.code, rd.message, 0), rc
    # grpc-go puts a trailers-only answer's metadata in the trailers: the
    # kubelet's evented PLEG sees no headers, content-type in the trailers
    assert (rc.headers, sorted(rc.trailers)) == (rd.headers, sorted(rd.trailers)), (rc, rd)


# ---------------------------------------------------------------------------
# v1alpha2: the kubelets of 1.20 to 1.25


def test_go_negotiate(go):
    """The 1.26/1.27 kubelet asks v1 Version first and falls back to v1alpha2
    only on UNIMPLEMENTED: both endpoints speak v1."""
    r = go.negotiate()
    assert r["code_name"] == "OK", r
    assert (r["api"], r["v1_code_name"]) == ("v1", "OK")
    assert r["version"]["runtimeApiVersion"] == "v1" and r["version"]["version"] == "0.1.0"


def test_go_v1alpha2_kubelet(cri, pods, testenv):
    """A 1.20-1.25 kubelet: every call on /runtime.v1alpha2.*, one connection."""
    g = GoCRI(cri.target, cri.name + "-v1alpha2", api="v1alpha2")
    try:
        v = g.rt("Version", {"version": "0.1.0"})
        assert (v["runtimeName"], v["runtimeApiVersion"], v["version"]) == ("containerd", "v1alpha2", "0.1.0")
        conds = {c["type"]: c.get("status", False) for c in g.rt("Status", {})["status"]["conditions"]}
        assert conds == {"RuntimeReady": True, "NetworkReady": True}
        g.img("PullImage", {"image": {"image": testenv.BUSYBOX_IMAGE}}, timeout=0)
        cfg_pb = pods.pod_config(labels={"api": "v1alpha2-go"})
        cfg = as_json(cfg_pb)
        pid = g.rt("RunPodSandbox", {"config": cfg}, timeout=240)["podSandboxId"]
        pods.pod_ids.append(pid)
        pods.configs[pid] = cfg_pb
        assert state(g.rt("PodSandboxStatus", {"podSandboxId": pid})["status"], "SANDBOX_READY") == "SANDBOX_READY"
        ccfg = as_json(pods.container_config("a2", ["sh", "-c", SERVE]))
        cid = g.rt("CreateContainer", {"podSandboxId": pid, "config": ccfg, "sandboxConfig": cfg})["containerId"]
        pods.ctr_ids.append(cid)
        g.rt("StartContainer", {"containerId": cid})
        assert state(g.rt("ContainerStatus", {"containerId": cid})["status"], "CONTAINER_CREATED") == "CONTAINER_RUNNING"
        r = g.rt("ExecSync", {"containerId": cid, "cmd": ["echo", "alpha"], "timeout": 10}, timeout=130)
        assert unb64(r["stdout"]) == b"alpha\n"
        assert [c["id"] for c in g.rt("ListContainers", {"filter": {"podSandboxId": pid}})["containers"]] == [cid]
        st = g.img("ImageStatus", {"image": {"image": testenv.BUSYBOX_IMAGE}})
        assert testenv.BUSYBOX_IMAGE in st["image"]["repoTags"]
        assert g.rt("ContainerStats", {"containerId": cid})["stats"]["attributes"]["id"] == cid
        g.rt("StopContainer", {"containerId": cid, "timeout": "2"}, timeout=130)
        g.rt("RemoveContainer", {"containerId": cid})
        pods.forget_container(cid)
        g.rt("StopPodSandbox", {"podSandboxId": pid})
        g.rt("RemovePodSandbox", {"podSandboxId": pid})
        pods.forget_pod(pid)
        r = g.call("ContainerStatus", {"containerId": cid})
        assert r.code == "NOT_FOUND", r
        assert_one_connection(g, "v1alpha2 kubelet")
    finally:
        g.close()


# ---------------------------------------------------------------------------
# deadlines and cancellation


PROC_STATE = ('p=$(cat /tmp/%s.pid 2>/dev/null) || { echo none; exit 0; }; '
              'if [ -d /proc/$p ] && ! grep -q "^State:.*Z" /proc/$p/status; then echo alive; else echo gone; fi')


def wait_proc(gpods, cid, tag, want, timeout=20.0):
    deadline = time.time() + timeout * SLOW
    last = None
    while time.time() < deadline:
        r = gpods.exec(cid, ["sh", "-c", PROC_STATE % tag])
        last = r
        if r.ok and unb64(r.response.get("stdout")).decode().strip() == want:
            return
        time.sleep(0.2)
    raise AssertionError("process %s not %s within %.0fs (last: %s)" % (tag, want, timeout * SLOW, last))


def test_go_deadline(go, gpods):
    """A call's deadline (grpc-timeout, sent by grpc-go) ends the call with
    DEADLINE_EXCEEDED on time, and reaches the runtime: containerd kills the
    exec whose context expired, through crisp too."""
    pid, _ = gpods.run_pod()
    cid = gpods.create(pid, "main", ["sh", "-c", SERVE])
    t0 = time.time()
    r = gpods.exec(cid, ["sh", "-c", "echo $$ > /tmp/dl.pid; exec sleep 60"], timeout=0, deadline=2)
    took = time.time() - t0
    assert r.code == "DEADLINE_EXCEEDED", r
    assert took < 15 * SLOW, took
    assert 0 < r["deadline_s"] <= 2
    wait_proc(gpods, cid, "dl", "gone")
    # the connection is fine afterwards
    assert go.call("Version", {}).ok
    assert_one_connection(go, "after a deadline")


def test_go_cancel(go, gpods, request):
    """Cancelling a call in flight: grpc-go resets the stream (RST_STREAM
    CANCEL) and reports CANCELLED at once; the runtime's call is cancelled
    too (containerd kills the exec), the connection stays up."""
    pid, _ = gpods.run_pod()
    cid = gpods.create(pid, "main", ["sh", "-c", SERVE])
    # the kubelet's ExecSync without a timeout has no deadline either
    call = go.start("ExecSync", {"containerId": cid, "cmd": ["sh", "-c", "echo $$ > /tmp/cx.pid; exec sleep 60"]},
                    timeout=0)
    wait_proc(gpods, cid, "cx", "alive")   # the call is in flight (other calls share the connection)
    before = go.wire()["wire"]["conns"][0]["rsts"]
    crisp = request.getfixturevalue("crisp") if request.node.callspec.params.get("cri") == "crisp" else None
    mark = crisp.log_mark() if crisp else 0
    t0 = time.time()
    assert go.cancel(call) is True
    r = go.wait(call)
    assert r.code == "CANCELLED", r
    assert time.time() - t0 < 5 * SLOW
    wait_proc(gpods, cid, "cx", "gone")
    w = go.wait_wire(lambda w: [x["code"] for x in w["conns"][0]["rsts"][len(before):] if x["dir"] == "out"]
                     == ["CANCEL"], what="the cancelled call's RST_STREAM CANCEL")
    assert_one_connection(go, "after a cancel")
    # the server does not answer a reset stream with a reset of its own
    assert not [x for x in w["conns"][0]["rsts"] if x["dir"] == "in"], w["conns"][0]["rsts"]
    if crisp:
        crisp.wait_log(mark, r"method=ExecSync api=v1 code=CANCELLED .*RST_STREAM CANCEL", timeout=10 * SLOW)


def test_go_client_killed_mid_call(cri, pods, direct_client):
    """The kubelet dies with a call in flight (SIGKILL: no RST_STREAM, no
    GOAWAY, the socket just closes): the runtime's call is cancelled all the
    same (containerd kills the exec), through crisp too."""
    pid, _ = pods.run_pod()
    cid = pods.create_container(pid, "main", ["sh", "-c", SERVE])
    g = GoCRI(cri.target, cri.name + "-killed")
    try:
        g.start("ExecSync", {"containerId": cid, "cmd": ["sh", "-c", "echo $$ > /tmp/kk.pid; exec sleep 60"]},
                timeout=0)
        gp = GoPods(g, pods)
        wait_proc(gp, cid, "kk", "alive")
    finally:
        g.proc.kill()
        g.close(check=False)
    # (asked on a connection of its own)
    gp = GoPods(GoCRI(cri.target, cri.name + "-check"), pods)
    try:
        wait_proc(gp, cid, "kk", "gone")
    finally:
        gp.g.close()


# ---------------------------------------------------------------------------
# big messages


MIB = 1024 * 1024


def test_go_big_answer(go, gpods):
    """An answer of almost 16 MiB (the kubelet's cap) goes through; one over
    it is RESOURCE_EXHAUSTED (grpc-go's own check direct, crisp's through crisp)."""
    pid, _ = gpods.run_pod()
    cid = gpods.create(pid, "main", ["sh", "-c", SERVE])
    n = 16 * MIB - 64 * 1024
    r = gpods.exec(cid, ["head", "-c", str(n), "/dev/zero"], timeout=60)
    assert r.ok, {k: v for k, v in r.items() if k != "response"}
    assert len(unb64(r.response.get("stdout"))) == n
    assert r.response_size > n
    r = gpods.exec(cid, ["head", "-c", str(17 * MIB), "/dev/zero"], timeout=60)
    assert r.code == "RESOURCE_EXHAUSTED", {k: v for k, v in r.items() if k != "response"}
    print("17 MiB answer: %s %s" % (r.code, r.message))
    # and a request of almost 16 MiB, sent whole (an unknown image: an empty answer)
    big = "x" * (16 * MIB - 4096)
    r = go.call("ImageService/ImageStatus", {"image": {"image": "localhost/none:1", "annotations": {"big": big}}})
    assert r.ok and r.response == {}, {k: r[k] for k in ("code_name", "message")}
    assert go.call("Version", {}).ok
    assert_one_connection(go, "after big messages")


def test_go_oversized_request(cri):
    """A client allowed to send more than 16 MiB (crigo -max-msg 64 MiB; the
    kubelet's grpc-go would refuse to send it): the server answers
    RESOURCE_EXHAUSTED (grpc-go's server and crisp each with their own
    message), resets the rest of the upload with RST_STREAM NO_ERROR after
    the status, and the connection keeps serving."""
    g = GoCRI(cri.target, cri.name + "-big", args=["-max-msg", str(64 * MIB)])
    try:
        big = "x" * (17 * MIB)
        r = g.call("ImageService/ImageStatus", {"image": {"image": "localhost/none:1", "annotations": {"big": big}}},
                   timeout=60)
        assert r.code == "RESOURCE_EXHAUSTED" and "16777216" in r.message, (r.code, r.message)
        assert g.call("Version", {}).ok
        w = assert_one_connection(g, "after an oversized request")
        assert [(x["dir"], x["code"]) for x in w["conns"][0]["rsts"]] == [("in", "NO_ERROR")], w["conns"][0]["rsts"]
    finally:
        g.close()


# ---------------------------------------------------------------------------
# concurrency


def test_go_200_concurrent_calls(go, gpods, testenv):
    """200 calls at once on one grpc-go connection (the kubelet's pod workers
    share one): 20 slow ExecSyncs and 180 quick calls; all answered right."""
    pid, _ = gpods.run_pod()
    cid = gpods.create(pid, "main", ["sh", "-c", SERVE])
    quick = [
        ("Version", {"version": "0.1.0"}), ("Status", {}), ("ListPodSandbox", {"filter": {"id": pid}}),
        ("ListContainers", {"filter": {"podSandboxId": pid}}), ("ContainerStatus", {"containerId": cid}),
        ("PodSandboxStatus", {"podSandboxId": pid}), ("ImageService/ImageStatus", {"image": {"image": testenv.BUSYBOX_IMAGE}}),
        ("ImageService/ListImages", {}), ("ImageService/ImageFsInfo", {}),
    ]
    calls = [{"method": "ExecSync", "request": {"containerId": cid, "cmd": ["sleep", "2"], "timeout": 60},
              "timeout": 180} for _ in range(20)]
    for i in range(180):
        m, req = quick[i % len(quick)]
        calls.append({"method": m, "request": req, "timeout": 180})
    r = go.concurrent(calls, responses=True)
    bad = [(x["method"], x["code_name"], x["message"]) for x in r["results"] if x["code_name"] != "OK"]
    assert r["codes"] == {"OK": 200}, bad[:10]
    for x in r["results"]:
        m = x["method"].rsplit("/", 1)[1]
        if m == "Version":
            assert x["response"]["version"] == "0.1.0"
        elif m == "ContainerStatus":
            assert x["response"]["status"]["id"] == cid
        elif m == "ListContainers":
            assert [c["id"] for c in x["response"]["containers"]] == [cid]
        elif m == "ExecSync":
            assert x["response"].get("exitCode", 0) == 0
    w = assert_one_connection(go, "200 concurrent calls")
    c = w["conns"][0]
    assert c["streams_opened"] >= 200
    # the 20 ExecSyncs (2 s each) were in flight together: really concurrent
    assert c["max_open_streams"] >= 20, conn_summary(w)
    assert not [x for x in c["rsts"] if x["dir"] == "in"], c["rsts"][:5]


# ---------------------------------------------------------------------------
# keepalive: once per run (a minute of idling), both endpoints side by side


def test_go_keepalive_idle_minute(testenv, crisp):
    """grpc-go client keepalive (PINGs every 10 s, grpc-go's minimum, with no
    call in flight) over a minute of idling, then calls on the same
    connection. crisp must ACK every PING and keep the connection: no GOAWAY,
    no close, one dial.

    containerd (grpc-go's server, default enforcement policy: MinTime 5 min,
    PermitWithoutStream false) counts such PINGs as strikes and after the
    third sends GOAWAY ENHANCE_YOUR_CALM "too_many_pings"; grpc-go then
    redials (and doubles its ping interval). That is recorded below, not
    required of crisp. The kubelet sets no client keepalive: it never meets
    either behaviour."""
    args = ["-keepalive-time", "10s", "-keepalive-timeout", "10s", "-keepalive-without-stream"]
    d = GoCRI("unix://" + testenv.CONTAINERD_SOCK, "direct-ka", args=args)
    c = GoCRI("unix://" + crisp.sock, "crisp-ka", args=args)
    try:
        for g in (d, c):
            assert g.call("Version", {}).ok
        time.sleep(65)  # the idle minute is what is tested, not a synchronisation
        wd, wc = d.wire()["wire"], c.wire()["wire"]
        for g in (d, c):
            r = g.call("Version", {"version": "0.1.0"})
            assert r.ok, (g.name, r)
        wc2 = c.wire()["wire"]
    finally:
        d.close()
        c.close()
    cc = wc["conns"]
    assert wc["dials"] == 1 and wc2["dials"] == 1, conn_summary(wc2)
    assert cc[0]["pings_sent"] >= 4, conn_summary(wc)
    assert cc[0]["ping_acks_received"] == cc[0]["pings_sent"], conn_summary(wc)
    assert cc[0]["goaways"] == [] and cc[0]["closed"] == "", conn_summary(wc)
    assert wc2["conns"][0]["goaways"] == [], conn_summary(wc2)
    # the reference, for the record (see the docstring)
    print("containerd under client keepalive: %s" % conn_summary(wd))
    assert crisp.alive()


# ---------------------------------------------------------------------------
# dial variants: crictl's blocking dial, newer kubelets' authority, TLS + ALPN


def test_go_dial_variants(cri):
    """crictl <= 1.25 dials blocking (WithBlock + timeout); cri-client 1.31+
    sets :authority to "localhost"; a scheme-less endpoint is the kubelet's
    deprecated fallback to unix://. Each one gets its answer."""
    path = cri.target[len("unix://"):]
    for args, ep in ((["-block", "-connect-timeout", "10s"], cri.target), (["-authority", "localhost"], cri.target),
                     ([], path)):
        r = one_call(ep, "Version", {"version": "0.1.0"}, timeout=30, args=args)
        assert r.ok and r.response["runtimeName"] == "containerd", (args, r)


def test_go_tls_alpn(started, tmpdir_short, pki):
    """crisp's TLS listener with grpc-go's TLS credentials: ALPN h2 chosen,
    calls served; with client certificates required, a client without one
    is refused (UNAVAILABLE, the handshake fails) and one with one served."""
    from test_listeners import tls_crisp
    c, port = tls_crisp(started, tmpdir_short, pki)
    ep = "tcp://127.0.0.1:%d" % port
    tls = ["-tls-ca", pki.path("ca.pem"), "-tls-server-name", "localhost"]
    g = GoCRI(ep, "tls", args=tls)
    try:
        assert g.rt("Version", {"version": "0.1.0"})["runtimeName"] == "containerd"
        assert g.img("ImageFsInfo", {})["imageFilesystems"]
        w = assert_one_connection(g, "TLS")
        assert w["conns"][0]["alpn"] == "h2", w
    finally:
        g.close()
    r = one_call(ep, "Version", timeout=10, args=["-tls-ca", pki.path("rogue-ca.pem"), "-tls-server-name", "localhost"])
    assert r.code == "UNAVAILABLE" and "certificate" in r.message, r
    c.check_serving()

    c2, port2 = tls_crisp(started, tmpdir_short, pki, client_ca=True)
    ep2 = "tcp://127.0.0.1:%d" % port2
    r = one_call(ep2, "Version", timeout=10, args=tls)
    assert r.code == "UNAVAILABLE", r
    r = one_call(ep2, "Version", timeout=30, args=tls + ["-tls-cert", pki.path("client.pem"),
                                                         "-tls-key", pki.path("client.key")])
    assert r.ok and r.response["runtimeName"] == "containerd", r
    c2.check_serving()


# ---------------------------------------------------------------------------
# a crisp restart under a live grpc-go connection (crisp is stateless)


def test_go_crisp_restart(started, tmpdir_short, direct_pods, direct_client):
    """SIGTERM: crisp tells grpc-go GOAWAY (NO_ERROR), lets the call in flight
    finish, exits; the client's calls fail UNAVAILABLE while it is gone, and
    once crisp is back the same ClientConn reconnects by itself (the
    kubelet's backoff, 100 ms to 3 s) and is served on a new connection."""
    sock = os.path.join(tmpdir_short, "restart.sock")
    c = started("go-restart", sock=sock)
    pid, _ = direct_pods.run_pod()
    cid = direct_pods.create_container(pid, "main", ["sh", "-c", SERVE])
    g = GoCRI("unix://" + sock, "restart")
    try:
        assert g.call("Version", {}).ok
        slow = g.start("ExecSync", {"containerId": cid, "cmd": ["sh", "-c", "sleep 3; echo done"], "timeout": 30},
                       timeout=60)
        deadline = time.time() + 20 * SLOW
        while b"sleep 3" not in direct_client.rt("ExecSync", container_id=cid, cmd=["ps"], timeout=10).stdout:
            assert time.time() < deadline, "the ExecSync did not start"
            time.sleep(0.1)
        c.proc.send_signal(signal.SIGTERM)
        r = g.wait(slow)
        assert r.ok and unb64(r.response.get("stdout")) == b"done\n", r
        c.proc.wait(timeout=STOP_TIMEOUT)
        assert c.proc.returncode == 0
        w = g.wire()["wire"]
        conn = w["conns"][0]
        assert [(x["dir"], x["code"]) for x in conn["goaways"]] == [("in", "NO_ERROR")], conn_summary(w)
        # the connection is gone once the call finished: crisp closes it, or
        # grpc-go does first (it may close a connection that got GOAWAY as
        # soon as its last stream ends: a race both ways, both correct)
        assert conn["closed"].startswith(("server", "client")), conn_summary(w)
        r = g.call("Version", {}, timeout=5)
        assert r.code == "UNAVAILABLE", r
        c.start()
        deadline = time.time() + 30 * SLOW
        while True:
            r = g.call("Version", {"version": "0.1.0"}, timeout=5)
            if r.ok:
                break
            assert r.code == "UNAVAILABLE" and time.time() < deadline, r
            time.sleep(0.2)
        assert r.response["runtimeName"] == "containerd"
        w = g.wire()["wire"]
        assert w["conns"][-1]["goaways"] == [] and w["conns"][-1]["closed"] == "", conn_summary(w)
    finally:
        g.close()


# ---------------------------------------------------------------------------
# what grpc-go makes of status details and metadata (vs C-core), relayed


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(field, data):
    return bytes([field << 3 | 2]) + _varint(len(data)) + data


def rpc_status_bytes(code, message, type_url, value):
    """google.rpc.Status{code, message, details: [Any{type_url, value}]}."""
    anyb = _ld(1, type_url.encode()) + _ld(2, value)
    return bytes([0x08]) + _varint(code) + _ld(2, message.encode()) + _ld(3, anyb)


DETAIL_URL = "type.googleapis.com/runtime.v1.VersionResponse"
DETAIL_VALUE = v1.VersionResponse(runtime_name="detail").SerializeToString()


@pytest.fixture(scope="module")
def details_backend():
    """A grpcio backend whose PodSandboxStatus fails NOT_FOUND "plain message"
    with grpc-status-details-bin (NOT_FOUND "rich message" + one detail),
    initial metadata and a custom trailer (containerd never sends details),
    and whose ListPodSandbox echoes the request's metadata as x-echo-* trailers."""
    import grpc
    import fakecri

    class Fake(fakecri.FakeCRI):
        def PodSandboxStatus(self, req, ctx):
            ctx.send_initial_metadata([("x-crisp-initial", "i1")])
            ctx.set_trailing_metadata([
                ("x-crisp-trailer", "t1"),
                ("grpc-status-details-bin", rpc_status_bytes(5, "rich message", DETAIL_URL, DETAIL_VALUE))])
            ctx.abort(grpc.StatusCode.NOT_FOUND, "plain message")

        def ListPodSandbox(self, req, ctx):
            ctx.set_trailing_metadata([("x-echo-" + k, v) for k, v in ctx.invocation_metadata()
                                       if not k.endswith("-bin")])
            return v1.ListPodSandboxResponse()

    f = Fake(free_unix_path("fake-details.sock")).start()
    c = Crisp("fake-details", f.sock)
    _crisp_instances.append(c)
    c.start()
    yield f, c
    stop_and_check(c)
    f.stop()


def test_go_metadata_forwarded(details_backend):
    """What grpc-go sends beside the message reaches the runtime through
    crisp: the kubelet's traceparent (tracing on) and any custom metadata."""
    fake, crisp = details_backend
    md = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x-crisp-custom": "c1"}
    seen = {}
    for name, sock in (("direct", fake.sock), ("crisp", crisp.sock)):
        g = GoCRI("unix://" + sock, name)
        try:
            r = g.call("ListPodSandbox", {}, timeout=10, metadata=md)
            assert r.ok, r
            seen[name] = {k[len("x-echo-"):]: v for k, v in r.trailers.items() if k.startswith("x-echo-")}
        finally:
            g.close()
    d, c = seen["direct"], seen["crisp"]
    for k, v in md.items():
        assert d.get(k) == [v] and c.get(k) == [v], (k, d, c)
    assert "grpc-timeout" not in d and "grpc-timeout" not in c  # grpcio keeps it to itself
    print("metadata the backend saw: direct %s, through crisp %s" % (sorted(d), sorted(c)))
    # user-agent: the runtime sees grpc-go's from the kubelet directly, and
    # crisp's own through crisp (by design: crisp is the runtime's client)
    assert d["user-agent"][0].startswith("grpc-go/1.33"), d
    assert c["user-agent"][0].startswith("crisp/"), c


def test_go_status_details_view(details_backend):
    """grpc-go 1.33 (the kubelet's) takes the status from
    grpc-status-details-bin when there is one: code, message AND details
    from it. C-core keeps grpc-status/grpc-message and leaves the -bin in the
    trailing metadata. crisp relays trailers unchanged, so grpc-go through
    crisp sees exactly what it sees from the backend itself."""
    fake, crisp = details_backend
    req = {"podSandboxId": "p"}
    seen = {}
    for name, sock in (("direct", fake.sock), ("crisp", crisp.sock)):
        g = GoCRI("unix://" + sock, name)
        try:
            seen[name] = g.call("PodSandboxStatus", req, timeout=10)
        finally:
            g.close()
    d, c = seen["direct"], seen["crisp"]
    # the kubelet's view
    assert (d.code, d.message) == ("NOT_FOUND", "rich message"), d
    assert d.details == [{"type_url": DETAIL_URL, "value": b64(DETAIL_VALUE)}], d
    assert d.headers.get("x-crisp-initial") == ["i1"], d.headers
    assert d.trailers.get("x-crisp-trailer") == ["t1"], d.trailers
    for k in ("code", "message", "details"):
        assert c[k] == d[k], (k, c, d)
    assert c.headers.get("x-crisp-initial") == ["i1"], c.headers
    assert c.trailers.get("x-crisp-trailer") == ["t1"], c.trailers
    assert c.trailers.get("grpc-status-details-bin") == d.trailers.get("grpc-status-details-bin")
    # C-core's view of the very same answer through crisp
    py = CRIClient("unix://" + crisp.sock, "py")
    try:
        fut = py.channel.unary_unary("/runtime.v1.RuntimeService/PodSandboxStatus",
                                     request_serializer=v1.PodSandboxStatusRequest.SerializeToString,
                                     response_deserializer=v1.PodSandboxStatusResponse.FromString)
        with pytest.raises(grpc.RpcError) as ei:
            fut(v1.PodSandboxStatusRequest(pod_sandbox_id="p"), timeout=10)
        e = ei.value
        assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "plain message")
        tm = dict(e.trailing_metadata())
        assert tm.get("x-crisp-trailer") == "t1"
        assert tm.get("grpc-status-details-bin") == rpc_status_bytes(5, "rich message", DETAIL_URL, DETAIL_VALUE)
    finally:
        py.close()


# ---------------------------------------------------------------------------
# crisp's log: grpc-go's calls are not refused or misreported


def test_go_calls_logged_cleanly(go_both, crisp):
    """grpc-go's calls leave no protocol refusal or reset in crisp's log."""
    mark = crisp.log_mark()
    _, c = go_both
    for _ in range(3):
        assert c.call("Version", {}).ok
        assert c.call("ImageService/ListImages", {}).ok
    c.close()
    text = crisp.log_since(mark)
    assert "method=Version api=v1 code=OK" in text
    for bad in ("PROTOCOL_ERROR", "refused", "level=error"):
        assert bad not in text, text[-2000:]

