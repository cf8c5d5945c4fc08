"""crisp restarted with pods on every handler: nothing it knew is lost (it
knew nothing but a cache), every pod is found again by asking the backends,
no ID changed."""
import signal

import grpc
import pytest

from conftest import handler_table, where
from crilib import as_dict, v1


def snapshot(c):
    """What the kubelet's relist sees: sandboxes and containers, by ID."""
    return ({p.id: as_dict(p) for p in c.rt("ListPodSandbox").items},
            {x.id: as_dict(x) for x in c.rt("ListContainers").containers})


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_every_pod_reachable_after_a_restart(sig, mux, pods, refs, envs):
    made = {}
    for handler in handler_table(envs):
        pid = pods.run(handler, name="restart")
        made[handler] = (pid, pods.create(pid, "c"))
    before = snapshot(mux.client)
    problems = mux.restart(sig)
    assert not problems, problems
    c = mux.client
    pods.c = c
    # IDs first, one call each, in an order that never gives the cache a
    # hint: a container before its sandbox
    for handler, (pid, cid) in made.items():
        st = c.rt("ContainerStatus", container_id=cid).status
        assert (st.id, st.state) == (cid, v1.CONTAINER_RUNNING), handler
        r = c.rt("ExecSync", container_id=cid, cmd=["echo", handler or "default"], timeout=30)
        assert r.stdout == ((handler or "default") + "\n").encode()
        assert c.rt("PodSandboxStats", pod_sandbox_id=pid).stats.attributes.id == pid
        ps = c.rt("PodSandboxStatus", pod_sandbox_id=pid).status
        assert (ps.id, ps.runtime_handler, ps.state) == (pid, handler, v1.SANDBOX_READY)
    after = snapshot(c)
    assert set(after[0]) == set(before[0]) and set(after[1]) == set(before[1]), "IDs changed"
    for i in (0, 1):
        for k, v in before[i].items():
            assert after[i][k] == v, k
    # containers land next to their sandbox, and go away through crisp
    for handler, (pid, cid) in made.items():
        cid2 = pods.create(pid, "after")
        assert where(refs, "ctr", cid2) == [pods.backend_of(handler)]
        c.rt("StopContainer", container_id=cid, timeout=0)
        c.rt("RemoveContainer", container_id=cid)
        c.rt("StopPodSandbox", pod_sandbox_id=pid)
        c.rt("RemovePodSandbox", pod_sandbox_id=pid)
        assert where(refs, "pod", pid) == []
        code = None
        try:
            c.rt("ContainerStatus", container_id=cid2)
        except grpc.RpcError as e:
            code = e.code()
        assert code == grpc.StatusCode.NOT_FOUND, "the sandbox took its containers along"
