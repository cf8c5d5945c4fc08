"""Bad input and failures: unknown ids, a container in a removed sandbox,
calls failing half-way, the engine going away mid-call. Each a clear status,
nothing leaked in the engine."""
import re
import socket
import threading
import time

import grpc
import pytest

from conftest import SLEEPER, code_of, engine_container_ids, kill_engine, restart_engine, v1, wait_for

UNKNOWN_ID = "0123456789abcdef" * 4
NF = grpc.StatusCode.NOT_FOUND
OK = grpc.StatusCode.OK


def call_code(fn, *a, **kw):
    try:
        fn(*a, **kw)
        return OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


@pytest.mark.parametrize("bad_id", [UNKNOWN_ID, "no-such-container"])
def test_unknown_ids_not_found(cri, engine, bad_id):
    before = engine_container_ids(engine)
    must_nf = [
        ("PodSandboxStatus", dict(pod_sandbox_id=bad_id)),
        ("ContainerStatus", dict(container_id=bad_id)),
        ("StartContainer", dict(container_id=bad_id)),
        ("ExecSync", dict(container_id=bad_id, cmd=["true"], timeout=5)),
        ("ContainerStats", dict(container_id=bad_id)),
        ("PodSandboxStats", dict(pod_sandbox_id=bad_id)),
        ("UpdateContainerResources", dict(container_id=bad_id,
                                          linux=v1.LinuxContainerResources(cpu_shares=512))),
        ("ReopenContainerLog", dict(container_id=bad_id)),
    ]
    problems = []
    for m, kw in must_nf:
        code, details = call_code(cri.rt, m, **kw)
        if code != NF:
            problems.append("%s(%s): %s %r (want NOT_FOUND)" % (m, bad_id, code, details))
    # CRI: stop/remove are idempotent; for ids never seen NOT_FOUND is fine too
    for m, kw in (("StopPodSandbox", dict(pod_sandbox_id=bad_id)), ("RemovePodSandbox", dict(pod_sandbox_id=bad_id)),
                  ("StopContainer", dict(container_id=bad_id, timeout=1)), ("RemoveContainer", dict(container_id=bad_id))):
        code, details = call_code(cri.rt, m, **kw)
        if code not in (OK, NF):
            problems.append("%s(%s): %s %r (want OK or NOT_FOUND)" % (m, bad_id, code, details))
    # filters with unknown ids are just empty
    assert not cri.rt("ListPodSandbox", filter=v1.PodSandboxFilter(id=bad_id)).items
    assert not cri.rt("ListContainers", filter=v1.ContainerFilter(id=bad_id)).containers
    assert not cri.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=bad_id)).containers
    assert problems == [], "\n".join(problems)
    assert engine_container_ids(engine) == before


def test_sandbox_id_is_not_a_container_id(k8s):
    """A sandbox (infra container) is not a CRI container, and vice versa."""
    pod = k8s.run_pod()
    cid = k8s.create(pod, "real", SLEEPER)
    code, details = call_code(k8s.c.rt, "ContainerStatus", container_id=pod)
    assert code == NF, (code, details)
    code, details = call_code(k8s.c.rt, "PodSandboxStatus", pod_sandbox_id=cid)
    assert code == NF, (code, details)


def test_create_container_in_removed_sandbox(k8s, engine):
    pod = k8s.run_pod()
    cfg = k8s.configs[pod]
    k8s.c.rt("StopPodSandbox", pod_sandbox_id=pod)
    k8s.c.rt("RemovePodSandbox", pod_sandbox_id=pod)
    before = engine_container_ids(engine)
    ccfg = k8s.container_config("orphan", SLEEPER)
    code, details = code_of(k8s.c.rt, "CreateContainer", pod_sandbox_id=pod, config=ccfg, sandbox_config=cfg)
    assert code in (NF, grpc.StatusCode.FAILED_PRECONDITION), (code, details)
    assert engine_container_ids(engine) == before, "CreateContainer in a removed sandbox left a container"


def test_run_pod_failing_half_way_removes_what_it_made(k8s, engine):
    """The infra container is created, then fails to start (a sysctl the
    kernel does not have): RunPodSandbox fails and nothing is left."""
    before = engine_container_ids(engine)
    cfg = k8s.pod_config(sysctls={"net.ipv4.crisp_no_such_sysctl": "1"})
    code, details = code_of(k8s.c.rt, "RunPodSandbox", config=cfg)
    assert code not in (OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED), (code, details)
    assert details, "no message"
    assert engine_container_ids(engine) == before, "RunPodSandbox failing half-way left containers behind"
    assert not k8s.c.rt("ListPodSandbox", filter=v1.PodSandboxFilter(
        label_selector={"crisp-test/uid": cfg.metadata.uid})).items


def test_run_pod_host_port_taken(k8s, engine):
    """Start fails on a host port already in use: an error, nothing left."""
    hold = socket.socket()
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hold.bind(("0.0.0.0", 0))
    hold.listen()
    port = hold.getsockname()[1]
    try:
        before = engine_container_ids(engine)
        cfg = k8s.pod_config(ports=[v1.PortMapping(protocol=v1.TCP, container_port=80, host_port=port)])
        code, details = code_of(k8s.c.rt, "RunPodSandbox", config=cfg)
        assert code not in (OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED), (code, details)
        assert str(port) in (details or "") or re.search(r"in use|allocated", details or "", re.I), details
        assert engine_container_ids(engine) == before
    finally:
        hold.close()


def test_start_container_failing_reports_error(k8s, engine):
    pod = k8s.run_pod()
    cid = k8s.create(pod, "nocmd", ["/no/such/binary"], start=False)
    code, details = code_of(k8s.c.rt, "StartContainer", container_id=cid)
    assert code not in (OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED), (code, details)
    assert "/no/such/binary" in (details or "") or re.search(r"no such file|not found", details or "", re.I), details
    st = k8s.status(cid)
    assert st.state in (v1.CONTAINER_CREATED, v1.CONTAINER_EXITED), st


def test_engine_gone_mid_call(k8s, engine, denv, crisp):
    """Kill the engine while a slow ExecSync is in flight: UNAVAILABLE naming
    the engine, quick calls fail the same way while it is gone, and crisp
    serves again once it is back."""
    pod = k8s.run_pod()
    cid = k8s.create(pod, "victim", SLEEPER)
    result = {}

    def slow():
        t = time.time()
        try:
            k8s.c.rt("ExecSync", container_id=cid, cmd=["sleep", "5"], timeout=30, deadline=40)
            result["code"] = OK
        except grpc.RpcError as e:
            result["code"], result["details"] = e.code(), e.details()
        result["took"] = time.time() - t
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(1.0)
    t_kill = time.time()
    kill_engine(denv, engine.kind)
    try:
        t.join(40)
        assert result.get("code") == grpc.StatusCode.UNAVAILABLE, result
        assert result["took"] < 4.0, "the in-flight call was not failed promptly: %s" % result
        assert re.search(r"engine|docker|podman|%s" % re.escape(engine.sock), result.get("details") or "", re.I), \
            "UNAVAILABLE without naming the engine: %r" % result.get("details")
        assert time.time() - t_kill < 10
        for m in ("ListPodSandbox", "ListContainers", "Version"):
            code, details = call_code(k8s.c.rt, m, deadline=10)
            assert code == grpc.StatusCode.UNAVAILABLE, (m, code, details)
        code, details = call_code(k8s.c.rt, "ContainerStatus", container_id=cid, deadline=10)
        assert code == grpc.StatusCode.UNAVAILABLE, ("ContainerStatus", code, details)
    finally:
        restart_engine(denv, engine.kind)
    # back: crisp serves again without a restart of its own
    wait_for(lambda: call_code(k8s.c.rt, "Version", deadline=5)[0] == OK, timeout=15,
             what="crisp to serve again after the engine came back")
    assert k8s.c.rt("Version").runtime_version == engine.version()["Version"]
    assert pod in [p.id for p in k8s.c.rt("ListPodSandbox").items]
    k8s.c.rt("ContainerStatus", container_id=cid)
    assert crisp.alive()
