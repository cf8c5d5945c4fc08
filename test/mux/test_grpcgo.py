"""The mux through grpc-go (test/grpcgo: the kubelet's gRPC stack, dialled
as the kubelet dials): pods on three engines on one connection, the merged
lists, errors as grpc-go reports them, concurrent calls routed by ID."""
import base64
import os
import sys

import pytest
from google.protobuf.json_format import MessageToDict

from conftest import where
from crisptest import SLEEPER, container_config, pod_config

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grpcgo"))
from crigo import GoCRI, conn_summary  # noqa: E402

HANDLER_OF = {"containerd": "", "docker": "docker", "podman": "legacy"}


@pytest.fixture
def go(cri, mux):
    g = GoCRI("unix://" + mux.sock, "go-mux")
    yield g
    g.close()


def test_go_pods_on_three_engines_one_connection(go, pods, refs, envs):
    assert go.negotiate()["api"] == "v1"
    made = {}
    for b, h in HANDLER_OF.items():
        cfg = pod_config("go-" + b)
        pid = go.rt("RunPodSandbox", {"config": MessageToDict(cfg), "runtimeHandler": h}, timeout=240)["podSandboxId"]
        pods.pods[pid] = (b, cfg)
        assert where(refs, "pod", pid) == [b]
        ccfg = container_config("main", SLEEPER, envs.BUSYBOX_IMAGE)
        os.makedirs(os.path.join(cfg.log_directory, "main"), exist_ok=True)
        cid = go.rt("CreateContainer", {"podSandboxId": pid, "config": MessageToDict(ccfg),
                                        "sandboxConfig": MessageToDict(cfg)})["containerId"]
        pods.ctrs[cid] = (pid, b, ccfg)
        go.rt("StartContainer", {"containerId": cid})
        made[b] = (pid, cid)
    for b, (pid, cid) in made.items():
        r = go.call("ExecSync", {"containerId": cid, "cmd": ["sh", "-c", "echo %s; exit 4" % b], "timeout": 30})
        assert r.ok and base64.b64decode(r.response["stdout"]) == (b + "\n").encode(), r
        assert r.response.get("exitCode") == 4
        st = go.rt("PodSandboxStatus", {"podSandboxId": pid})["status"]
        assert st["id"] == pid and st.get("runtimeHandler", "") == HANDLER_OF[b]
    listed = {c["id"] for c in go.rt("ListContainers", {})["containers"]}
    assert {cid for _, cid in made.values()} <= listed
    # every ID routed to its own engine at once, on the one connection
    calls = []
    for _ in range(20):
        for pid, cid in made.values():
            calls.append({"method": "ContainerStatus", "request": {"containerId": cid}})
            calls.append({"method": "PodSandboxStatus", "request": {"podSandboxId": pid}})
    res = go.concurrent(calls)
    assert res["codes"] == {"OK": len(calls)}, res["codes"]
    for b, (pid, cid) in made.items():
        go.rt("StopContainer", {"containerId": cid, "timeout": "0"})
        go.rt("RemoveContainer", {"containerId": cid})
        go.rt("StopPodSandbox", {"podSandboxId": pid})
        go.rt("RemovePodSandbox", {"podSandboxId": pid})
        assert go.call("PodSandboxStatus", {"podSandboxId": pid}).code == "NOT_FOUND"
        assert where(refs, "pod", pid) == []
    w = go.wire()["wire"]
    assert w["dials"] == 1 and len(w["conns"]) == 1, conn_summary(w)
    assert w["conns"][0]["goaways"] == [] and w["conns"][0]["closed"] == "", conn_summary(w)


def test_go_errors(go, envs):
    r = go.call("RunPodSandbox", {"config": MessageToDict(pod_config("go-unknown")), "runtimeHandler": "kata"})
    assert r.code == "INVALID_ARGUMENT" and '"kata"' in r.message and '"legacy"' in r.message, r
    r = go.call("ContainerStatus", {"containerId": "f" * 64})
    assert r.code == "NOT_FOUND", r
    s = go.start("GetContainerEvents", {})
    r = go.wait(s)
    assert r.code == "UNIMPLEMENTED" and "backend containerd" in r.message, r
    v = go.rt("Version", {"version": "0.1.0"})
    assert v["runtimeName"] == "crisp" and v["runtimeApiVersion"] == "v1"
