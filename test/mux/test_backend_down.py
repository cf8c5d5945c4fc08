"""One engine killed while crisp serves three: lists fail UNAVAILABLE naming
it (never a partial list), Status says which one is not ready, calls routed
to the others go on -- also through a crisp restarted during the outage,
which finds the others' IDs by asking -- an ID no engine that answers has is
UNAVAILABLE, not NOT_FOUND; then the engine comes back and everything with
it, crisp untouched."""
import os
import re
import signal
import time

import grpc
import pytest

from conftest import BACKENDS, handler_table
from crisptest import WORK, kill_engine, restart_engine, wait_for
from crilib import rpc_error, v1

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
HANDLER_OF = {"containerd": "", "docker": "docker", "podman": "legacy"}


def lists_ok(c):
    try:
        for m in ("ListPodSandbox", "ListContainers", "ListContainerStats", "ListPodSandboxStats"):
            c.rt(m, deadline=30)
        c.img("ListImages", deadline=30)
        return True
    except grpc.RpcError:
        return False


def ready(c):
    return all(x.status for x in c.rt("Status").status.conditions)


@pytest.mark.parametrize("down", BACKENDS)
def test_one_backend_down(down, mux, pods, refs, envs):
    c = mux.client
    made = {}
    for b, h in HANDLER_OF.items():
        pid = pods.run(h, name="down-%s" % b)
        made[b] = (pid, pods.create(pid, "c"))
    up = [b for b in BACKENDS if b != down]
    kill_engine(down)
    try:
        for m in ("ListPodSandbox", "ListContainers", "ListContainerStats", "ListPodSandboxStats"):
            code, msg = rpc_error(c.rt, m)
            assert code == UNAVAILABLE and "backend %s" % down in msg, (m, code, msg)
        code, msg = rpc_error(c.img, "ListImages")
        assert code == UNAVAILABLE and "backend %s" % down in msg, (code, msg)
        st = c.rt("Status").status
        for cond in st.conditions:
            assert not cond.status and "backend %s" % down in cond.message, cond
        # the others serve on, the owners known ...
        for b in up:
            pid, cid = made[b]
            assert c.rt("ContainerStatus", container_id=cid).status.state == v1.CONTAINER_RUNNING
            assert c.rt("ExecSync", container_id=cid, cmd=["echo", b], timeout=30).stdout == (b + "\n").encode()
        # ... and found by asking, after a restart during the outage: crisp
        # starts with an engine down (and says so, naming the field)
        mark = mux.log_mark()
        mux.restart()
        c = mux.client
        pods.c = c
        mux.wait_log(mark, r'event=backend_unreachable file="%s" field="backends\.%s\.endpoint"'
                     % (re.escape(mux.argv[mux.argv.index("--config") + 1]), down))
        for b in up:
            pid, cid = made[b]
            assert c.rt("ContainerStatus", container_id=cid).status.id == cid
            assert c.rt("PodSandboxStatus", pod_sandbox_id=pid).status.id == pid
            assert [x.id for x in c.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=pid))
                    .containers] == [cid]
        # whose IDs cannot be told while it is down: UNAVAILABLE, never NOT_FOUND
        pid, cid = made[down]
        for ident, m, f in ((cid, "ContainerStatus", "container_id"), (pid, "PodSandboxStatus", "pod_sandbox_id"),
                            ("0" * 64, "ContainerStatus", "container_id"),
                            (cid, "RemoveContainer", "container_id"), (pid, "StopPodSandbox", "pod_sandbox_id")):
            code, msg = rpc_error(c.rt, m, **{f: ident})
            assert code == UNAVAILABLE and "backend %s" % down in msg, (m, ident[:12], code, msg)
        code, msg = rpc_error(c.rt, "ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=pid))
        assert code == UNAVAILABLE, (code, msg)
        # its handlers are UNAVAILABLE too; another handler works
        for h, (b, _) in handler_table(envs).items():
            if b == down:
                code, msg = rpc_error(pods.run, h, name="while-down")
                assert code == UNAVAILABLE and down in msg, (h, code, msg)
                break
        other = pods.run(HANDLER_OF[up[0]], name="while-down")
        assert c.rt("PodSandboxStatus", pod_sandbox_id=other).status.state == v1.SANDBOX_READY
    finally:
        restart_engine(down)
    # back, without touching crisp
    wait_for(lambda: lists_ok(c), timeout=60, interval=0.2, what="the lists to work again")
    wait_for(lambda: ready(c), timeout=60, interval=0.2, what="Status ready again")
    listed = {p.id for p in c.rt("ListPodSandbox").items}
    for b in BACKENDS:
        assert made[b][0] in listed, b
    assert c.rt("PodSandboxStatus", pod_sandbox_id=made[down][0]).status.id == made[down][0]
    assert c.rt("ContainerStatus", container_id=made[down][1]).status.id == made[down][1]


def test_one_backend_hung(mux, pods, envs):
    """dockerd stopped (SIGSTOP: it accepts connections and never answers):
    after a crisp restart the IDs of the other engines are found as soon as
    their engine answers, without waiting for dockerd; dockerd's own IDs
    wait until the client's deadline (never NOT_FOUND)."""
    made = {}
    for b, h in HANDLER_OF.items():
        pid = pods.run(h, name="hung-%s" % b)
        made[b] = (pid, pods.create(pid, "c"))
    dockerd = int(open(os.path.join(WORK, "pids", "dockerd.pid")).read().strip())
    os.kill(dockerd, signal.SIGSTOP)
    try:
        mux.restart()
        c = mux.client
        pods.c = c
        for b in ("containerd", "podman"):
            pid, cid = made[b]
            t0 = time.time()
            assert c.rt("ContainerStatus", container_id=cid, deadline=20).status.id == cid
            assert c.rt("PodSandboxStatus", pod_sandbox_id=pid, deadline=20).status.id == pid
            assert time.time() - t0 < 10, "waited for the hung engine"
        code, msg = rpc_error(c.rt, "ContainerStatus", container_id=made["docker"][1], deadline=3)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (code, msg)
    finally:
        os.kill(dockerd, signal.SIGCONT)
    wait_for(lambda: lists_ok(c), timeout=60, interval=0.2, what="the lists to work again")
    assert c.rt("ContainerStatus", container_id=made["docker"][1]).status.id == made["docker"][1]
