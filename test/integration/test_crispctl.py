"""crispctl (build/crispctl): the CRI client that ships with crisp, against
crisp and against containerd directly (same answers as python's client);
its short forms over a real pod; TLS like a remote endpoint; show and stats
of a trace; replay of a recorded pod lifecycle against containerd and
against crisp, which must find no difference."""
import base64
import json
import os
import signal
import subprocess
import time

import pytest
from google.protobuf.json_format import MessageToDict

import tracelib as tl
from conftest import WORK, Crisp, Pods, _crisp_instances, stop_and_check, wait_for
from crilib import CRIClient, v1
from test_listeners import pki, started, tmpdir_short, tls_crisp  # noqa: F401
from test_trace import Traced

# a container that prints, then stops at once on SIGTERM
SLEEPER = ["sh", "-c", "echo hello from crispctl; echo to stderr >&2; trap 'exit 0' TERM; "
           "while :; do sleep 0.2; done"]


@pytest.fixture(params=["direct", "crisp"])
def endpoint(request, testenv):
    if request.param == "direct":
        return "unix://" + testenv.CONTAINERD_SOCK
    return "unix://" + request.getfixturevalue("crisp").sock


def test_ctl_version(endpoint):
    r = tl.run_ctl("version", endpoint=endpoint)
    assert "RuntimeName:  containerd" in r.out and "RuntimeApiVersion:  v1" in r.out, r.out
    assert tl.ctl_json("version", endpoint=endpoint)["runtimeName"] == "containerd"


def test_ctl_call_same_as_python(endpoint, direct_client, testenv, tmp_path):
    direct_client.img("PullImage", image=v1.ImageSpec(image=testenv.BUSYBOX_IMAGE))
    want = MessageToDict(direct_client.img("ImageStatus", image=v1.ImageSpec(image=testenv.BUSYBOX_IMAGE)))
    req = json.dumps({"image": {"image": testenv.BUSYBOX_IMAGE}})
    for how in ("ImageStatus", "ImageService/ImageStatus", "runtime.v1.ImageService/ImageStatus",
                "/runtime.v1.ImageService/ImageStatus"):
        assert tl.ctl_json("call", how, req, endpoint=endpoint) == want
    f = tmp_path / "req.json"
    f.write_text(req)
    assert tl.ctl_json("call", "ImageStatus", "@" + str(f), endpoint=endpoint) == want
    assert tl.ctl_json("call", "ImageStatus", "-", endpoint=endpoint, input=req.encode()) == want
    # the pretty form is the same JSON
    assert json.loads(tl.run_ctl("call", "ImageStatus", req, endpoint=endpoint).out) == want
    lst = tl.ctl_json("call", "ListContainers", '{"filter":{"state":{"state":"CONTAINER_RUNNING"},'
                      '"labelSelector":{"no-such":"label"}}}', endpoint=endpoint)
    assert lst == {}


def test_ctl_call_errors(endpoint):
    r = tl.run_ctl("call", "RuntimeService/Bogus", endpoint=endpoint, check=False)
    assert r.returncode == 1 and "no such method" in r.err
    r = tl.run_ctl("call", "Version", "{not json", endpoint=endpoint, check=False)
    assert r.returncode == 1 and "not valid JSON" in r.err
    r = tl.run_ctl("call", "Version", '{"versoin":"x"}', endpoint=endpoint, check=False)
    assert r.returncode == 1 and "no such field" in r.err and "versoin" in r.err
    r = tl.run_ctl("call", "ContainerStatus", '{"containerId":"nope"}', endpoint=endpoint, check=False)
    assert r.returncode == 1 and "NOT_FOUND" in r.err
    r = tl.run_ctl("version", endpoint="unix:///nonexistent/crisp.sock", check=False)
    assert r.returncode == 1 and "/nonexistent/crisp.sock" in r.err


def test_ctl_short_forms(endpoint, direct_client, testenv):
    pods = Pods(direct_client, direct_client, testenv, "ctl-short")
    try:
        pod_id, cfg = pods.run_pod(name="ctl-web", labels={"app": "ctl"})
        cid = pods.create_container(pod_id, "ctl-main", SLEEPER)
        out = tl.run_ctl("pods", "--name", "ctl-web", endpoint=endpoint).out
        assert pod_id[:13] in out and "ctl-web" in out and "crisp-test" in out and "Ready" in out, out
        assert tl.run_ctl("pods", "-q", "--name", "ctl-web", endpoint=endpoint).out.split() == [pod_id]
        out = tl.run_ctl("ps", "--pod", pod_id, endpoint=endpoint).out
        assert cid[:13] in out and "ctl-main" in out and "Running" in out, out
        assert tl.run_ctl("--no-trunc", "ps", "-q", "--pod", pod_id, endpoint=endpoint).out.split() == [cid]
        js = tl.ctl_json("ps", "-a", "--pod", pod_id, endpoint=endpoint)
        assert [c["id"] for c in js["containers"]] == [cid]
        assert "busybox" in tl.run_ctl("images", endpoint=endpoint).out
        assert tl.ctl_json("inspect", cid, endpoint=endpoint)["status"]["id"] == cid
        assert tl.ctl_json("inspect", pod_id, endpoint=endpoint)["status"]["id"] == pod_id
        assert tl.ctl_json("inspect", testenv.BUSYBOX_IMAGE, endpoint=endpoint)["image"]["id"]
        r = tl.run_ctl("inspect", "nothing-has-this-id", endpoint=endpoint, check=False)
        assert r.returncode == 1 and "no container, pod or image" in r.err
        wait_for(lambda: "hello from crispctl" in tl.run_ctl("logs", cid, endpoint=endpoint).out,
                 what="the container's log")
        wait_for(lambda: "to stderr" in tl.run_ctl("logs", cid, endpoint=endpoint).out,
                 what="the container's stderr")
        out = tl.run_ctl("logs", cid, endpoint=endpoint).out
        # stdout and stderr come through two pipes: either order
        assert sorted(out.splitlines()) == ["hello from crispctl", "to stderr"], out
        tail = tl.run_ctl("logs", "--tail", "1", cid, endpoint=endpoint).out
        assert tail in ("hello from crispctl\n", "to stderr\n") and tail != out
        assert cid[:13] in tl.run_ctl("stats", endpoint=endpoint).out
        out = tl.run_ctl("pull", testenv.BUSYBOX_IMAGE, endpoint=endpoint).out
        assert out.startswith("Image is up to date for ")
        info = tl.ctl_json("info", endpoint=endpoint)
        assert {c["type"] for c in info["status"]["conditions"]} >= {"RuntimeReady", "NetworkReady"}
    finally:
        assert not pods.cleanup()


def test_ctl_tls(started, tmpdir_short, pki):  # noqa: F811
    c, port = tls_crisp(started, tmpdir_short, pki)
    ep = "tcp://127.0.0.1:%d" % port
    r = tl.run_ctl("--tls-ca", pki.path("ca.pem"), "version", endpoint=ep)
    assert "containerd" in r.out
    r = tl.run_ctl("--tls-ca", pki.path("rogue-ca.pem"), "version", endpoint=ep, check=False)
    assert r.returncode == 1 and "TLS" in r.err


def test_ctl_show_and_stats(testenv):
    with Traced(testenv, "ctlshow", "--trace-level", "full") as t:
        for _ in range(5):
            t.client.rt("Version")
        t.client.img("ListImages")
        from crilib import rpc_error
        rpc_error(t.client.rt, "ContainerStatus", container_id="nope")
        t.records(lambda r: r["method"] == "ContainerStatus")
        env = dict(os.environ, NO_COLOR="1")
        out = tl.run_ctl("show", t.path).out
        lines = out.splitlines()
        assert len(lines) == 8, out   # the readiness probe, 5 + 1 + 1
        assert "RuntimeService/Version OK" in lines[1]
        assert "RuntimeService/ContainerStatus NOT_FOUND" in lines[-1] and "container nope" in lines[-1]
        assert "\033[" not in out
        assert "\033[31m" in tl.run_ctl("--color", "always", "show", t.path).out
        out = tl.run_ctl("show", "--errors", t.path).out
        assert len(out.splitlines()) == 1 and "NOT_FOUND" in out
        out = tl.run_ctl("show", "-v", "--method", "ListImages", t.path).out
        assert "request: {}" in out and "response:" in out
        st = tl.ctl_json("stats", t.path)
        by = {m["method"]: m for m in st["methods"]}
        assert by["RuntimeService/Version"]["calls"] == 6 and by["RuntimeService/Version"]["errors"] == 0
        assert by["RuntimeService/ContainerStatus"]["errors"] == 1
        assert by["RuntimeService/Version"]["p50_us"] <= by["RuntimeService/Version"]["max_us"]
        out = tl.run_ctl("stats", t.path).out
        assert "RuntimeService/Version" in out and "P99" in out
        # -f follows the file as it grows
        p = subprocess.Popen([tl.CRISPCTL, "show", "-f", t.path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        try:
            time.sleep(0.5)
            t.client.img("ImageFsInfo")
            deadline = time.time() + 10
            got = b""
            os.set_blocking(p.stdout.fileno(), False)
            while b"ImageFsInfo" not in got and time.time() < deadline:
                got += p.stdout.read() or b""
                time.sleep(0.1)
            assert b"ImageService/ImageFsInfo OK" in got
        finally:
            p.send_signal(signal.SIGINT)
            assert p.wait(5) == 0


def lifecycle(c, testenv, direct_client, name):
    """A pod's life through client c, the calls a kubelet makes."""
    pods = Pods(c, direct_client, testenv, name)
    try:
        c.rt("Version", version="0.1.0")
        c.img("PullImage", image=v1.ImageSpec(image=testenv.BUSYBOX_IMAGE))
        c.img("ImageStatus", image=v1.ImageSpec(image=testenv.BUSYBOX_IMAGE))
        pod_id, cfg = pods.run_pod(name="replayed", labels={"app": "replay"})
        c.rt("PodSandboxStatus", pod_sandbox_id=pod_id)
        cid = pods.create_container(pod_id, "main", SLEEPER, env={"MODE": "replay"})
        c.rt("ContainerStatus", container_id=cid)
        c.rt("ExecSync", container_id=cid, cmd=["sh", "-c", "echo $MODE; exit 4"], timeout=10)
        sel = {"crisp-test/uid": cfg.labels["crisp-test/uid"]}
        c.rt("ListPodSandbox", filter=v1.PodSandboxFilter(label_selector=sel))
        c.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=pod_id))
        c.rt("StopContainer", container_id=cid, timeout=10)
        c.rt("ContainerStatus", container_id=cid)
        c.rt("RemoveContainer", container_id=cid)
        c.rt("StopPodSandbox", pod_sandbox_id=pod_id)
        c.rt("RemovePodSandbox", pod_sandbox_id=pod_id)
        from crilib import rpc_error
        rpc_error(c.rt, "ContainerStatus", container_id=cid)
        pods.forget_container(cid)
        pods.forget_pod(pod_id)
        return pod_id, cid, cfg
    finally:
        assert not pods.cleanup()


def test_ctl_replay(testenv, direct_client, crisp):
    with Traced(testenv, "replay", "--trace-level", "full") as t:
        pod_id, cid, cfg = lifecycle(t.client, testenv, direct_client, "ctl-replay")
        recs = t.records(lambda r: r["method"] == "ContainerStatus" and r["status"] == "NOT_FOUND")
    for target in ("unix://" + testenv.CONTAINERD_SOCK, "unix://" + crisp.sock):
        r = tl.run_ctl("replay", t.path, "--to", target, "-v", check=False, timeout=180)
        assert r.returncode == 0, r.out + r.err
        last = r.out.splitlines()[-1]
        assert "18 same, 0 different, 0 not sent" in last and "18 calls" in last and "2 IDs mapped" in last, r.out
        assert pod_id not in r.out or "same" in r.out
        # the replay made and removed its own pod: nothing of it is left
        left = direct_client.rt("ListPodSandbox", filter=v1.PodSandboxFilter(
            label_selector={"crisp-test/uid": cfg.labels["crisp-test/uid"]}))
        assert not left.items
    # a summary trace has nothing to replay: every call skipped, said so
    with Traced(testenv, "replay-summary") as t2:
        t2.client.rt("Version")
        t2.records(n=2)
    r = tl.run_ctl("replay", t2.path, "--to", "unix://" + testenv.CONTAINERD_SOCK, "-v")
    assert "0 calls" in r.out and "2 skipped" in r.out and "record with --trace-level full" in r.out
