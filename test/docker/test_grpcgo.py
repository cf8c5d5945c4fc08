"""The CRI through grpc-go (crigo, test/grpcgo/README.md), the kubelet's gRPC
stack, against crisp in front of Docker and podman: every RPC family, a pod
lifecycle on one connection, ExecSync, pulls with and without credentials
(the htpasswd registry), stats, GetContainerEvents streamed, v1alpha2 and
the kubelet's negotiation, deadlines and cancellation, a 16 MiB answer and
200 concurrent calls. Expectations are the CRI's; where grpc-go could see an
answer differently from the python (C-core) client of the other tests, both
are asked and compared.

The minute of client keepalive runs once per run, in
test/integration/test_grpcgo.py (crisp's HTTP/2 front end is the same for
every backend)."""
import base64
import os
import re
import sys
import time

import grpc
import pytest

from conftest import SLEEPER, code_of

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grpcgo"))
from crigo import GoCRI, conn_summary, strip  # noqa: E402

AUTH_WORDS = re.compile(r"auth|unauthori[sz]ed|credential|401|denied|password", re.I)
MIB = 1024 * 1024


@pytest.fixture
def go(cri, crisp):
    """A grpc-go client (one ClientConn) on the engine's crisp."""
    g = GoCRI("unix://" + crisp.sock, "go-" + crisp.kind)
    yield g
    g.close()


def as_json(msg):
    from google.protobuf.json_format import MessageToDict
    return MessageToDict(msg)


def unb64(s):
    return base64.b64decode(s or "")


def state(d, zero):
    """protojson leaves an enum's zero value out (SANDBOX_READY, CONTAINER_CREATED)."""
    return d.get("state", zero)


def event_type(ev):
    return ev.get("containerEventType", "CONTAINER_CREATED_EVENT")


class GoK8s:
    """Pods and containers made through grpc-go with the kubelet-like configs
    of conftest.K8s, recorded there so its cleanup removes them."""

    def __init__(self, g, k8s):
        self.g = g
        self.k = k8s

    def run_pod(self, **kw):
        cfg = self.k.pod_config(**kw)
        pid = self.g.rt("RunPodSandbox", {"config": as_json(cfg)}, timeout=240)["podSandboxId"]
        self.k.pod_ids.append(pid)
        self.k.configs[pid] = cfg
        return pid

    def create(self, pid, name, command, start=True, **kw):
        cfg = self.k.container_config(name, command, **kw)
        os.makedirs(os.path.dirname(os.path.join(self.k.configs[pid].log_directory, cfg.log_path)), exist_ok=True)
        cid = self.g.rt("CreateContainer", {"podSandboxId": pid, "config": as_json(cfg),
                                            "sandboxConfig": as_json(self.k.configs[pid])})["containerId"]
        self.k.ctr_ids.append(cid)
        self.k.ctr_configs[cid] = (pid, cfg)
        if start:
            self.g.rt("StartContainer", {"containerId": cid})
        return cid

    def exec(self, cid, cmd, timeout=10, deadline=None):
        return self.g.call("ExecSync", {"containerId": cid, "cmd": cmd, "timeout": timeout},
                           timeout=deadline if deadline is not None else timeout + 120)


@pytest.fixture
def gk(go, k8s):
    return GoK8s(go, k8s)


def wait_log(crisp, pattern, timeout=15.0):
    """crisp's log once `pattern` (regex) is in it."""
    rx = re.compile(pattern)
    deadline = time.time() + timeout
    while True:
        with open(crisp.log, errors="replace") as f:
            text = f.read()
        if rx.search(text):
            return text
        assert time.time() < deadline, "no %r in %s within %.0fs:\n%s" % (pattern, crisp.log, timeout, text[-2000:])
        time.sleep(0.1)


def assert_one_connection(g, what=""):
    w = g.wire()["wire"]
    assert w["dials"] == 1, "%s: %s" % (what, conn_summary(w))
    c = w["conns"][0]
    assert c["goaways"] == [] and c["closed"] == "", "%s: %s" % (what, conn_summary(w))
    return w


# ---------------------------------------------------------------------------


def test_go_runtime_info(go, cri, engine):
    """Version, Status, RuntimeConfig, UpdateRuntimeConfig, ImageFsInfo: grpc-go
    gets what the C-core client gets."""
    v = go.rt("Version", {"version": "v1"})
    assert v["runtimeVersion"] == engine.version()["Version"] and v["runtimeApiVersion"] == "v1", v
    assert v == as_json(cri.rt("Version", version="v1"))
    st = go.rt("Status", {})
    conds = {c["type"]: c.get("status", False) for c in st["status"]["conditions"]}
    assert conds == {"RuntimeReady": True, "NetworkReady": True}, st
    assert strip(st) == strip(as_json(cri.rt("Status")))
    rc = go.rt("RuntimeConfig", {})
    want = {"cgroupfs": "CGROUPFS", "systemd": "SYSTEMD"}[engine.info()["CgroupDriver"]]
    assert rc.get("linux", {}).get("cgroupDriver", "SYSTEMD") == want, rc
    assert go.call("UpdateRuntimeConfig", {"runtimeConfig": {"networkConfig": {"podCidr": "10.216.0.0/24"}}}).ok
    fs = go.img("ImageFsInfo", {})["imageFilesystems"]
    assert fs and fs[0]["fsId"]["mountpoint"]
    # what crisp answers UNIMPLEMENTED: same code and message as C-core sees
    for m, req in (("CheckpointContainer", {"containerId": "x"}), ("ListMetricDescriptors", {})):
        r = go.call(m, req, timeout=10)
        py = code_of(cri.rt, m, **({"container_id": "x"} if req else {}))
        assert (r.code, r.message) == (py[0].name, py[1]), (m, r)
        assert r.code == "UNIMPLEMENTED" and r.message, r
    assert_one_connection(go)


def test_go_pod_lifecycle(go, gk, engine):
    pid = gk.run_pod(labels={"app": "go"})
    st = go.rt("PodSandboxStatus", {"podSandboxId": pid})["status"]
    assert st["id"] == pid and state(st, "SANDBOX_READY") == "SANDBOX_READY" and st["network"]["ip"]
    assert engine.inspect(pid)["State"]["Running"]
    assert [i["id"] for i in go.rt("ListPodSandbox", {"filter": {"id": pid}})["items"]] == [pid]
    cid = gk.create(pid, "main", SLEEPER, start=False, env={"GREETING": "hi"}, labels={"tier": "go"})
    cst = go.rt("ContainerStatus", {"containerId": cid})["status"]
    assert state(cst, "CONTAINER_CREATED") == "CONTAINER_CREATED" and cst["labels"]["tier"] == "go"
    go.rt("StartContainer", {"containerId": cid})
    cst = go.rt("ContainerStatus", {"containerId": cid, "verbose": True})["status"]
    assert state(cst, "CONTAINER_CREATED") == "CONTAINER_RUNNING"
    assert engine.inspect(cid)["State"]["Running"]
    lst = go.rt("ListContainers", {"filter": {"podSandboxId": pid, "labelSelector": {"tier": "go"}}})["containers"]
    assert [c["id"] for c in lst] == [cid]
    r = gk.exec(cid, ["sh", "-c", "echo out $GREETING; echo err >&2; exit 7"])
    assert r.ok, r
    assert (unb64(r.response.get("stdout")), unb64(r.response.get("stderr")), r.response.get("exitCode")) == \
        (b"out hi\n", b"err\n", 7)
    go.rt("UpdateContainerResources", {"containerId": cid, "linux": {"cpuShares": "512"}})
    cs = go.rt("ContainerStats", {"containerId": cid})["stats"]
    assert cs["attributes"]["id"] == cid and "cpu" in cs and "memory" in cs, cs
    assert [s["attributes"]["id"] for s in go.rt("ListContainerStats", {"filter": {"podSandboxId": pid}})["stats"]] == [cid]
    ps = go.rt("PodSandboxStats", {"podSandboxId": pid})["stats"]
    assert ps["attributes"]["id"] == pid
    assert [s["attributes"]["id"] for s in go.rt("ListPodSandboxStats", {"filter": {"id": pid}})["stats"]] == [pid]
    go.rt("ReopenContainerLog", {"containerId": cid})
    go.rt("StopContainer", {"containerId": cid, "timeout": "10"}, timeout=130)
    assert state(go.rt("ContainerStatus", {"containerId": cid})["status"], "CONTAINER_CREATED") == "CONTAINER_EXITED"
    go.rt("RemoveContainer", {"containerId": cid})
    assert go.call("ContainerStatus", {"containerId": cid}).code == "NOT_FOUND"
    assert engine.try_inspect(cid) is None
    go.rt("StopPodSandbox", {"podSandboxId": pid})
    assert state(go.rt("PodSandboxStatus", {"podSandboxId": pid})["status"], "SANDBOX_READY") == "SANDBOX_NOTREADY"
    go.rt("RemovePodSandbox", {"podSandboxId": pid})
    assert go.call("PodSandboxStatus", {"podSandboxId": pid}).code == "NOT_FOUND"
    assert engine.try_inspect(pid) is None
    assert_one_connection(go, "pod lifecycle")


def test_go_exec_sync(go, gk, cri):
    pid = gk.run_pod()
    cid = gk.create(pid, "main", SLEEPER)
    r = gk.exec(cid, ["cat", "/etc/hostname"])
    assert r.ok and unb64(r.response["stdout"]).strip(), r
    t0 = time.time()
    r = gk.exec(cid, ["sleep", "30"], timeout=1)
    assert r.code == "DEADLINE_EXCEEDED", r
    assert time.time() - t0 < 20
    py = code_of(cri.rt, "ExecSync", container_id=cid, cmd=["sleep", "30"], timeout=1)
    assert (r.code, r.message) == (py[0].name, py[1])
    r = gk.exec(cid, ["/no/such/binary"])
    py = code_of(cri.rt, "ExecSync", container_id=cid, cmd=["/no/such/binary"], timeout=10) \
        if not r.ok else (grpc.StatusCode.OK, "")
    assert r.code == py[0].name, (r, py)


def test_go_images(go, engine, denv):
    """Pull from the htpasswd registry with credentials (no deadline, as the
    kubelet pulls) and without; status, list, remove."""
    img = denv.AUTH_VICTIM_IMAGE
    engine.remove_image(img, force=True)
    r = go.call("ImageService/PullImage", {"image": {"image": img}}, timeout=0)
    assert r.code not in ("OK", "UNIMPLEMENTED", "UNAVAILABLE"), r
    assert AUTH_WORDS.search(r.message), r
    assert engine.image(img) is None
    r = go.call("ImageService/PullImage", {"image": {"image": img},
                                           "auth": {"username": denv.AUTH_USER, "password": denv.AUTH_PASS}}, timeout=0)
    assert r.ok and r.response["imageRef"], r
    eng = engine.image(img)
    assert eng is not None
    st = go.img("ImageStatus", {"image": {"image": img}})["image"]
    assert st["id"] == eng["Id"] and img in st["repoTags"] and int(st["size"]) > 0, st
    assert eng["Id"] in [i["id"] for i in go.img("ListImages", {})["images"]]
    go.img("RemoveImage", {"image": {"image": img}})
    assert engine.image(img) is None
    assert go.img("ImageStatus", {"image": {"image": img}}) == {}
    go.img("RemoveImage", {"image": {"image": img}})  # idempotent
    missing = denv.REGISTRY + "/crisp-test/does-not-exist:1"
    r = go.call("ImageService/PullImage", {"image": {"image": missing}}, timeout=0)
    assert r.code not in ("OK", "UNAVAILABLE") and r.message, r


def test_go_container_events(go, gk, k8s, crisp):
    """GetContainerEvents streamed to grpc-go as they happen: created,
    started, stopped, deleted; then the kubelet goes away (cancels): crisp
    ends the engine subscription and keeps serving the connection."""
    pid = gk.run_pod()
    stream = go.start("GetContainerEvents", {}, timeout=300)
    # the subscription is in place once a probe container's event arrives
    for i in range(10):
        probe = k8s.create(pid, "probe%d" % i, ["true"], start=False)
        try:
            go.wait_messages(stream, lambda ms: any(m.get("containerId") == probe for m in ms), timeout=5,
                             what="the probe's created event")
            break
        except AssertionError:
            if i == 9:
                raise
    cid = gk.create(pid, "evented", SLEEPER)
    go.rt("StopContainer", {"containerId": cid, "timeout": "0"}, timeout=130)
    go.rt("RemoveContainer", {"containerId": cid})
    k8s.ctr_ids.remove(cid)
    want = ["CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT", "CONTAINER_STOPPED_EVENT", "CONTAINER_DELETED_EVENT"]

    def mine(ms):
        seen = []
        for m in ms:
            if m.get("containerId") == cid and event_type(m) not in seen:
                seen.append(event_type(m))
        return seen
    msgs = go.wait_messages(stream, lambda ms: mine(ms) == want, timeout=60, what="the 4 events in order")
    for m in msgs:
        if m.get("containerId") == cid and event_type(m) != "CONTAINER_DELETED_EVENT":
            assert m["podSandboxStatus"]["id"] == pid, m
            # the pod's statuses as they are when sent, whole, as grpc-go decodes them:
            # the sandbox's (with its creation time) and every container's: the probes,
            # which live on, with image_ref and creation time; this one once (as the
            # event says it when it was already removed by the time the event was sent)
            assert m["podSandboxStatus"].get("createdAt") and m["podSandboxStatus"].get("metadata"), m
            others = [x for x in m.get("containersStatuses", []) if x.get("id") != cid]
            assert others and all(x.get("imageRef") and x.get("createdAt") for x in others), m
            assert len([x for x in m["containersStatuses"] if x.get("id") == cid]) == 1, m
    assert go.cancel(stream)
    r = go.wait(stream)
    assert r.code == "CANCELLED", r
    assert r.count == len(go.messages(stream))
    go.wait_wire(lambda w: [x["code"] for x in w["conns"][0]["rsts"] if x["dir"] == "out"] == ["CANCEL"],
                 what="the stream's RST_STREAM CANCEL")
    assert_one_connection(go, "after cancelling the event stream")
    assert go.call("Version", {}).ok
    wait_log(crisp, r"method=GetContainerEvents api=v1 code=CANCELLED")


def test_go_v1alpha2(go, gk, engine, denv):
    """The kubelet's 1.26 negotiation settles on v1; a 1.20-1.25 kubelet's
    v1alpha2 calls are served too."""
    n = go.negotiate()
    assert (n["code_name"], n["api"], n["v1_code_name"]) == ("OK", "v1", "OK"), n
    g = GoCRI(go.endpoint, go.name + "-v1alpha2", api="v1alpha2")
    try:
        v = g.rt("Version", {"version": "0.1.0"})
        assert v["runtimeVersion"] == engine.version()["Version"] and v["runtimeApiVersion"] in ("v1alpha2", "v1"), v
        conds = {c["type"]: c.get("status", False) for c in g.rt("Status", {})["status"]["conditions"]}
        assert conds == {"RuntimeReady": True, "NetworkReady": True}
        pid = gk.run_pod()
        cid = gk.create(pid, "a2", SLEEPER)
        assert [p["id"] for p in g.rt("ListPodSandbox", {"filter": {"id": pid}})["items"]] == [pid]
        assert state(g.rt("ContainerStatus", {"containerId": cid})["status"], "CONTAINER_CREATED") == "CONTAINER_RUNNING"
        r = g.rt("ExecSync", {"containerId": cid, "cmd": ["echo", "alpha"], "timeout": 10}, timeout=130)
        assert unb64(r["stdout"]) == b"alpha\n"
        st = g.img("ImageStatus", {"image": {"image": denv.BUSYBOX_IMAGE}})
        assert denv.BUSYBOX_IMAGE in st["image"]["repoTags"]
        assert g.call("ContainerStatus", {"containerId": "no-such-container-a2"}).code == "NOT_FOUND"
        assert_one_connection(g, "v1alpha2")
    finally:
        g.close()


def test_go_deadline_and_cancel(go, gk, crisp):
    """A call's deadline ends it with DEADLINE_EXCEEDED on time; a cancelled
    call is CANCELLED at once (RST_STREAM CANCEL); crisp logs both and the
    connection keeps serving. (Docker has no call to kill an exec: the
    command is abandoned, not killed; nothing to check in the container.)"""
    pid = gk.run_pod()
    cid = gk.create(pid, "main", SLEEPER)
    t0 = time.time()
    r = gk.exec(cid, ["sleep", "30"], timeout=0, deadline=2)
    assert r.code == "DEADLINE_EXCEEDED", r
    assert time.time() - t0 < 15
    call = go.start("ExecSync", {"containerId": cid, "cmd": ["sh", "-c", "touch /tmp/cx; exec sleep 60"]}, timeout=0)
    deadline = time.time() + 30
    while True:  # in flight once its command runs
        x = gk.exec(cid, ["test", "-e", "/tmp/cx"])
        if x.ok and x.response.get("exitCode", 0) == 0:
            break
        assert time.time() < deadline, x
        time.sleep(0.2)
    # (grpc-go resets a stream whose deadline passed too, racing crisp's
    # DEADLINE_EXCEEDED: count the resets from here on)
    before = go.wire()["wire"]["conns"][0]["rsts"]
    t0 = time.time()
    assert go.cancel(call)
    r = go.wait(call)
    assert r.code == "CANCELLED", r
    assert time.time() - t0 < 5
    w = go.wait_wire(lambda w: [x["code"] for x in w["conns"][0]["rsts"][len(before):] if x["dir"] == "out"]
                     == ["CANCEL"], what="the cancelled call's RST_STREAM CANCEL")
    assert_one_connection(go, "after deadline and cancel")
    rsts = w["conns"][0]["rsts"]
    assert not [x for x in rsts if x["dir"] == "in"], rsts
    # crisp logs the cancelled call once it has read the client's RST_STREAM
    crisp_log = wait_log(crisp, r"method=ExecSync api=v1 code=CANCELLED .*RST_STREAM CANCEL")
    # the deadline's call ended in crisp too: its own DEADLINE_EXCEEDED, or
    # grpc-go's RST_STREAM CANCEL when the client's timer fired first
    assert re.search(r"method=ExecSync api=v1 code=(DEADLINE_EXCEEDED|CANCELLED) dur_us=(19|20|21)\d{5} ",
                     crisp_log), crisp_log[-2000:]
    r = gk.exec(cid, ["echo", "still"])
    assert r.ok and unb64(r.response["stdout"]) == b"still\n"


def test_go_big_answer(go, gk):
    """An ExecSync answer of almost 16 MiB reaches grpc-go whole; more output
    than that is cut to fit the kubelet's 16 MiB cap."""
    pid = gk.run_pod()
    cid = gk.create(pid, "main", SLEEPER)
    n = 16 * MIB - 64 * 1024
    r = gk.exec(cid, ["head", "-c", str(n), "/dev/zero"], timeout=60)
    assert r.ok, {k: v for k, v in r.items() if k != "response"}
    assert len(unb64(r.response.get("stdout"))) == n
    # more than the cap: crisp keeps what fits (as containerd 1.7 and CRI-O
    # cap ExecSync output at 16 MiB), the answer stays under the kubelet's cap
    r = gk.exec(cid, ["head", "-c", str(17 * MIB), "/dev/zero"], timeout=60)
    assert r.ok, {k: v for k, v in r.items() if k != "response"}
    out = len(unb64(r.response.get("stdout")))
    assert 16 * MIB - 64 * 1024 <= out < 16 * MIB and r.response_size <= 16 * MIB, (out, r.response_size)
    assert go.call("Version", {}).ok
    assert_one_connection(go, "after big answers")


def test_go_200_concurrent_calls(go, gk, denv):
    """200 calls at once on one connection: 10 ExecSyncs of 2 s and 190 quick
    ones. (podman runs the execs of one container one after the other, each
    with its conmon: 20 of them took a minute on a loaded machine; the
    execs have no timeout of their own, as the kubelet's with timeout 0.)"""
    pid = gk.run_pod()
    cid = gk.create(pid, "main", SLEEPER)
    quick = [
        ("Version", {}), ("Status", {}), ("ListPodSandbox", {"filter": {"id": pid}}),
        ("ListContainers", {"filter": {"podSandboxId": pid}}), ("ContainerStatus", {"containerId": cid}),
        ("PodSandboxStatus", {"podSandboxId": pid}), ("ImageService/ImageStatus", {"image": {"image": denv.BUSYBOX_IMAGE}}),
        ("ImageService/ListImages", {}), ("ImageService/ImageFsInfo", {}),
    ]
    calls = [{"method": "ExecSync", "request": {"containerId": cid, "cmd": ["sleep", "2"]},
              "timeout": 300} for _ in range(10)]
    for i in range(190):
        m, req = quick[i % len(quick)]
        calls.append({"method": m, "request": req, "timeout": 300})
    r = go.concurrent(calls, responses=True)
    bad = [(x["method"], x["code_name"], x["message"]) for x in r["results"] if x["code_name"] != "OK"]
    assert r["codes"] == {"OK": 200}, bad[:10]
    for x in r["results"]:
        m = x["method"].rsplit("/", 1)[1]
        if m == "ContainerStatus":
            assert x["response"]["status"]["id"] == cid
        elif m == "ListContainers":
            assert [c["id"] for c in x["response"]["containers"]] == [cid]
    w = assert_one_connection(go, "200 concurrent calls")
    assert w["conns"][0]["max_open_streams"] >= 10, conn_summary(w)
