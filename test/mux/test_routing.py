"""Routing: RunPodSandbox by RuntimeClass handler, every call naming an ID to
the engine that owns it, CreateContainer after its sandbox; unknown handlers
and unknown IDs. Where a pod lands is checked with each engine's own answer
(`where`), never with crisp's."""
import os

import grpc
import pytest

from conftest import handler_table, where
from crisptest import SLEEPER, pod_config, read_container_log, wait_for
from crilib import CRIClient, rpc_error, v1, v1alpha2

NOT_FOUND = grpc.StatusCode.NOT_FOUND
HANDLERS = ["", "crun", "fast", "docker", "docker-alt", "legacy"]


def engine_runtime(refs, engines, envs, backend, pid):
    """The runtime the engine itself says the sandbox runs with."""
    if backend == "containerd":
        return refs["containerd"].rt("PodSandboxStatus", pod_sandbox_id=pid).status.runtime_handler
    if backend == "docker":
        return engines["docker"].runtime_of(pid)
    return None


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda h: h or "default")
def test_pod_lifecycle_on_each_handler(handler, cri, pods, refs, engines, envs):
    table = handler_table(envs)
    if handler not in table:
        pytest.skip("no %r handler in this environment (crun does not work here)" % handler)
    backend, runtime = table[handler]
    pid = pods.run(handler)
    assert where(refs, "pod", pid) == [backend]
    st = cri.rt("PodSandboxStatus", pod_sandbox_id=pid).status
    assert (st.id, st.state, st.runtime_handler) == (pid, v1.SANDBOX_READY, handler)
    # the engine ran it with the runtime the handler names
    got = engine_runtime(refs, engines, envs, backend, pid)
    if backend == "containerd":
        assert got == runtime, "containerd says %r" % got
    elif backend == "docker":
        assert got == (runtime or envs.DEFAULT_RUNTIME), "dockerd says %r" % got

    tag = (handler or "default").replace("-", "")
    cid = pods.create(pid, "main", ["sh", "-c", "echo hello-$TAG; echo oops-$TAG >&2; " + SLEEPER[2]],
                      env={"TAG": tag})
    assert where(refs, "ctr", cid) == [backend]
    cs = cri.rt("ContainerStatus", container_id=cid).status
    assert (cs.id, cs.state, cs.metadata.name) == (cid, v1.CONTAINER_RUNNING, "main")

    r = cri.rt("ExecSync", container_id=cid, cmd=["sh", "-c", "echo out-$TAG; echo err >&2; exit 3"], timeout=30)
    assert (r.stdout, r.stderr, r.exit_code) == (("out-%s\n" % tag).encode(), b"err\n", 3)
    path = pods.log_path(cid)
    wait_for(lambda: os.path.exists(path) and {("stdout", "hello-" + tag), ("stderr", "oops-" + tag)}
             <= set(read_container_log(path)), timeout=20, what="the container's log at %s" % path)

    assert cri.rt("ContainerStats", container_id=cid).stats.attributes.id == cid
    assert cri.rt("PodSandboxStats", pod_sandbox_id=pid).stats.attributes.id == pid
    # lists filtered by an ID go to its owner
    ids = lambda items: sorted(x.id for x in items)  # noqa: E731
    assert ids(cri.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=pid)).containers) == [cid]
    assert ids(cri.rt("ListContainers", filter=v1.ContainerFilter(id=cid)).containers) == [cid]
    items = cri.rt("ListPodSandbox", filter=v1.PodSandboxFilter(id=pid)).items
    assert [(x.id, x.runtime_handler) for x in items] == [(pid, handler)]
    stats = cri.rt("ListContainerStats", filter=v1.ContainerStatsFilter(pod_sandbox_id=pid)).stats
    assert [s.attributes.id for s in stats] == [cid]
    pstats = cri.rt("ListPodSandboxStats", filter=v1.PodSandboxStatsFilter(id=pid)).stats
    assert [s.attributes.id for s in pstats] == [pid]
    cri.rt("ReopenContainerLog", container_id=cid)

    cri.rt("StopContainer", container_id=cid, timeout=2)
    assert cri.rt("ContainerStatus", container_id=cid).status.state == v1.CONTAINER_EXITED
    cri.rt("RemoveContainer", container_id=cid)
    assert rpc_error(cri.rt, "ContainerStatus", container_id=cid)[0] == NOT_FOUND
    assert where(refs, "ctr", cid) == []
    cri.rt("StopPodSandbox", pod_sandbox_id=pid)
    assert cri.rt("PodSandboxStatus", pod_sandbox_id=pid).status.state == v1.SANDBOX_NOTREADY
    cri.rt("RemovePodSandbox", pod_sandbox_id=pid)
    assert rpc_error(cri.rt, "PodSandboxStatus", pod_sandbox_id=pid)[0] == NOT_FOUND
    assert where(refs, "pod", pid) == []


def test_unknown_handler_is_refused_naming_the_known_ones(cri, refs, envs):
    before = {b: len(r.rt("ListPodSandbox").items) for b, r in refs.items()}
    cfg = pod_config("unknown-handler")
    code, msg = rpc_error(cri.rt, "RunPodSandbox", config=cfg, runtime_handler="kata")
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg)
    assert '"kata"' in msg
    for h in handler_table(envs):
        assert '"%s"' % h in msg, (h, msg)
    assert {b: len(r.rt("ListPodSandbox").items) for b, r in refs.items()} == before


def outcome(fn, *a, **kw):
    """(code, details) of a call, OK included."""
    try:
        fn(*a, **kw)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def test_unknown_ids(cri, refs):
    """An ID no engine knows: NOT_FOUND (all engines up), the default
    engine's own words; lists filtered by it are empty."""
    ghost = "0123456789abcdef" * 4
    for method, field in (("ContainerStatus", "container_id"), ("PodSandboxStatus", "pod_sandbox_id"),
                          ("ContainerStats", "container_id"), ("PodSandboxStats", "pod_sandbox_id"),
                          ("StartContainer", "container_id"), ("StopContainer", "container_id"),
                          ("RemoveContainer", "container_id"), ("StopPodSandbox", "pod_sandbox_id"),
                          ("RemovePodSandbox", "pod_sandbox_id")):
        direct = outcome(refs["containerd"].rt, method, **{field: ghost})
        got = outcome(cri.rt, method, **{field: ghost})
        assert got == direct, method
        assert got[0] in (NOT_FOUND, grpc.StatusCode.OK), (method, got)
    code, msg = rpc_error(cri.rt, "ExecSync", container_id=ghost, cmd=["true"], timeout=5)
    assert code == NOT_FOUND, (code, msg)
    code, msg = rpc_error(cri.rt, "CreateContainer", pod_sandbox_id=ghost,
                          config=v1.ContainerConfig(metadata=v1.ContainerMetadata(name="x")))
    assert code == NOT_FOUND, (code, msg)
    assert not cri.rt("ListContainers", filter=v1.ContainerFilter(id=ghost)).containers
    assert not cri.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=ghost)).containers
    assert not cri.rt("ListPodSandbox", filter=v1.PodSandboxFilter(id=ghost)).items
    assert not cri.rt("ListContainerStats", filter=v1.ContainerStatsFilter(id=ghost)).stats
    assert not cri.rt("ListPodSandboxStats", filter=v1.PodSandboxStatsFilter(id=ghost)).stats
    # an empty ID names nothing to route by
    code, _ = rpc_error(cri.rt, "ContainerStatus", container_id="")
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_sandbox_id_is_not_a_container_id(cri, pods):
    for handler in ("", "docker", "legacy"):
        pid = pods.run(handler)
        code, msg = rpc_error(cri.rt, "ContainerStatus", container_id=pid)
        assert code == NOT_FOUND, (handler, code, msg)


def test_pods_made_behind_crisps_back(cri, pods, refs):
    """A sandbox crisp never saw (made through the engine's own endpoint) is
    found by asking every backend; its containers land next to it."""
    for handler, backend in (("", "containerd"), ("legacy", "podman"), ("docker", "docker")):
        pid = pods.run(handler, client=refs[backend])
        cid = pods.create(pid, "behind", client=cri)
        assert where(refs, "ctr", cid) == [backend]
        r = cri.rt("ExecSync", container_id=cid, cmd=["echo", backend], timeout=30)
        assert r.stdout == (backend + "\n").encode()
        assert cri.rt("PodSandboxStatus", pod_sandbox_id=pid).status.id == pid


def test_v1alpha2_client(mux, pods, refs, envs):
    """A 1.20 - 1.25 kubelet speaks runtime.v1alpha2: same routing."""
    c = CRIClient("unix://" + mux.sock, "mux-v1alpha2", version="v1alpha2")
    try:
        assert c.rt("Version").runtime_api_version == "v1alpha2"
        for handler in ("docker", ""):
            cfg = pod_config("alpha-" + (handler or "default"), pb=v1alpha2)
            pid = c.rt("RunPodSandbox", config=cfg, runtime_handler=handler).pod_sandbox_id
            pods.pods[pid] = (pods.backend_of(handler), cfg)
            assert where(refs, "pod", pid) == [pods.backend_of(handler)]
            st = c.rt("PodSandboxStatus", pod_sandbox_id=pid).status
            assert (st.id, st.runtime_handler) == (pid, handler)
        # the merged list is v1alpha2 too (the two APIs' messages are the same on the wire)
        listed = {p.id: p.runtime_handler for p in c.rt("ListPodSandbox").items}
        for pid, (backend, _) in pods.pods.items():
            assert pid in listed, backend
    finally:
        c.close()

