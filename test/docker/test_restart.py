"""Statelessness: crisp restarted (cleanly, or killed) gives the same answers,
and keeps managing what the previous process made."""
import signal
import time

import pytest

from crilib import as_dict
from conftest import read_container_log, wait_for, v1


def snapshot(c, pods, ctrs):
    snap = {
        "pods": sorted((as_dict(p) for p in c.rt("ListPodSandbox").items if p.id in pods),
                       key=lambda d: d["id"]),
        "ctrs": sorted((as_dict(x) for x in c.rt("ListContainers").containers if x.id in ctrs),
                       key=lambda d: d["id"]),
    }
    for p in pods:
        snap["pod " + p] = as_dict(c.rt("PodSandboxStatus", pod_sandbox_id=p).status)
        snap["pod created_at " + p] = c.rt("PodSandboxStatus", pod_sandbox_id=p).status.created_at
    for x in ctrs:
        st = c.rt("ContainerStatus", container_id=x).status
        snap["ctr " + x] = as_dict(st)
        snap["ctr times " + x] = (st.created_at, st.started_at, st.finished_at)
    snap["images"] = sorted(i.id for i in c.img("ListImages").images)
    return snap


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_restart_same_answers(k8s, crisp, how):
    a = k8s.run_pod(labels={"restart": "a"}, annotations={"restart/ann": "1"})
    b = k8s.run_pod(labels={"restart": "b"})
    ticker = k8s.create(a, "ticker", ["sh", "-c", "trap 'exit 0' TERM; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done"])
    done = k8s.create(a, "done", ["sh", "-c", "exit 7"])
    created = k8s.create(b, "created", ["true"], start=False)
    k8s.wait_exited(done)
    k8s.c.rt("StopPodSandbox", pod_sandbox_id=b)
    pods, ctrs = [a, b], [ticker, done, created]
    before = snapshot(k8s.c, pods, ctrs)

    problems = crisp.restart(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
    k8s.c = crisp.client
    if how == "sigterm":
        assert not problems, problems
    after = snapshot(k8s.c, pods, ctrs)
    assert after == before

    # the log keeps reaching log_path across the restart
    path = k8s.log_path(ticker)

    def ticks():
        return [int(l.split()[1]) for s, l in read_container_log(path) if l.startswith("tick ")]
    n = max(ticks())
    wait_for(lambda: max(ticks()) >= n + 3, timeout=10, what="log lines after the restart")

    # and the new process manages what the old one made
    st = k8s.c.rt("ContainerStatus", container_id=done).status
    assert st.exit_code == 7 and st.reason == "Error"
    k8s.c.rt("StopPodSandbox", pod_sandbox_id=a)
    assert k8s.status(ticker).state == v1.CONTAINER_EXITED
    k8s.c.rt("RemovePodSandbox", pod_sandbox_id=a)
    k8s.c.rt("RemovePodSandbox", pod_sandbox_id=b)
    assert not [p for p in k8s.c.rt("ListPodSandbox").items if p.id in pods]
    for x in ctrs + pods:
        assert k8s.engine.try_inspect(x) is None


def test_restart_while_calls_in_flight(k8s, crisp):
    """crisp killed in the middle of a RunPodSandbox: after the restart the pod
    either exists and works, or nothing of it is left behind in the engine."""
    import threading
    import grpc
    cfg = k8s.pod_config(labels={"inflight": "yes"})
    err = []

    def run():
        try:
            k8s.c.rt("RunPodSandbox", config=cfg, deadline=30)
        except grpc.RpcError as e:
            err.append(e.code())
    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.05)
    crisp.restart(signal.SIGKILL)
    t.join(30)
    k8s.c = crisp.client
    uid = cfg.metadata.uid
    # give a half-made sandbox's engine calls (already sent) time to land
    time.sleep(1)
    listed = [p for p in k8s.c.rt("ListPodSandbox", filter=v1.PodSandboxFilter(
        label_selector={"crisp-test/uid": uid})).items]
    for p in listed:
        k8s.pod_ids.append(p.id)
        k8s.configs[p.id] = cfg
    engine_side = k8s.engine.containers(all=True, labels={"crisp-test/uid": uid})
    # whatever the engine has is visible through crisp (nothing hidden that would leak)
    assert sorted(p.id for p in listed) == sorted(c["Id"] for c in engine_side), (listed, engine_side)
    # and can be removed through crisp
    for p in listed:
        k8s.c.rt("StopPodSandbox", pod_sandbox_id=p.id)
        k8s.c.rt("RemovePodSandbox", pod_sandbox_id=p.id)
    assert not k8s.engine.containers(all=True, labels={"crisp-test/uid": uid})
