"""GetContainerEvents and the Stream* RPCs over several backends.

containerd 1.6 answers UNIMPLEMENTED to them. The merged stream then fails
with that code (naming the backend) rather than leaving containerd out: a
kubelet with Evented PLEG relists only every 5 minutes while its event
stream works, so a stream without containerd's events would hide its
containers' deaths for minutes; on a failed stream the kubelet retries and
falls back to relisting every second, which covers every backend.
With backends that all serve events (docker + podman), one stream carries
the events of both."""
import os
import threading
import time

import grpc
import pytest

from conftest import make_config
from crisptest import SLEEPER, container_config, pod_config, remove_cgroup
from crilib import v1

UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED


def test_events_fail_when_a_backend_has_none(cri, refs, mux):
    direct = refs["containerd"]
    with pytest.raises(grpc.RpcError) as e:
        list(direct.rt_stream("GetContainerEvents", v1.GetEventsRequest(), deadline=10))
    assert e.value.code() == UNIMPLEMENTED
    t0 = time.time()
    with pytest.raises(grpc.RpcError) as e:
        list(cri.rt_stream("GetContainerEvents", v1.GetEventsRequest(), deadline=20))
    assert e.value.code() == UNIMPLEMENTED, e.value.details()
    assert "backend containerd" in e.value.details()
    assert time.time() - t0 < 10, "the stream did not fail at once"
    for method, req in (("StreamPodSandboxes", v1.StreamPodSandboxesRequest()),
                        ("StreamContainers", v1.StreamContainersRequest())):
        with pytest.raises(grpc.RpcError) as e:
            list(cri.rt_stream(method, req, deadline=20))
        assert e.value.code() == UNIMPLEMENTED, (method, e.value.details())
    # the docker streams started beside it were cancelled, crisp serves on
    mux.client.rt("Version")


class Events:
    """A GetContainerEvents stream read by a thread."""

    def __init__(self, client, deadline=120):
        self.events = []
        self.error = None
        self.call = client.rt_stream("GetContainerEvents", v1.GetEventsRequest(), deadline=deadline)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for ev in self.call:
                self.events.append(ev)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.error = (e.code(), e.details())

    def types(self, cid):
        return [e.container_event_type for e in self.events if e.container_id == cid]

    def wait(self, cid, types, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all(t in self.types(cid) for t in types) or self.error:
                break
            time.sleep(0.05)
        assert not self.error, self.error
        return all(t in self.types(cid) for t in types)

    def close(self):
        self.call.cancel()
        self.t.join(10)


def test_events_of_docker_and_podman_on_one_stream(own_crisp, envs, refs):
    p = own_crisp("mux-events", make_config(envs, backends=("docker", "podman")))
    c = p.client
    made = []  # (backend, pod id)
    ev = Events(c)
    try:
        for backend, handler in (("docker", "docker"), ("podman", "legacy")):
            cfg = pod_config("events-" + backend)
            pid = c.rt("RunPodSandbox", config=cfg, runtime_handler=handler, deadline=120).pod_sandbox_id
            made.append((backend, pid, cfg))
            # the engine's event subscription is in place once a container's
            # events arrive: make containers until one's do (no sleep)
            for i in range(10):
                ccfg = container_config("ev%d" % i, SLEEPER, envs.BUSYBOX_IMAGE)
                os.makedirs(os.path.join(cfg.log_directory, "ev%d" % i), exist_ok=True)
                cid = c.rt("CreateContainer", pod_sandbox_id=pid, config=ccfg, sandbox_config=cfg).container_id
                c.rt("StartContainer", container_id=cid)
                if ev.wait(cid, [v1.CONTAINER_CREATED_EVENT, v1.CONTAINER_STARTED_EVENT], timeout=10):
                    break
            else:
                raise AssertionError("no events from %s: %s" % (backend, ev.events[-5:]))
            c.rt("StopContainer", container_id=cid, timeout=0)
            c.rt("RemoveContainer", container_id=cid)
            assert ev.wait(cid, [v1.CONTAINER_STOPPED_EVENT, v1.CONTAINER_DELETED_EVENT]), \
                (backend, ev.types(cid))
            got = [e for e in ev.events if e.container_id == cid]
            assert got[0].pod_sandbox_status.id == pid, got[0]
        assert ev.error is None
        # Stream* merge the same way: every backend's items, no others
        for method, req, field in (("StreamPodSandboxes", v1.StreamPodSandboxesRequest(), "pod_sandboxes"),
                                   ("StreamContainers", v1.StreamContainersRequest(), "containers")):
            got = sorted(x.id for m in c.rt_stream(method, req, deadline=30) for x in getattr(m, field))
            lst = "ListPodSandbox" if method == "StreamPodSandboxes" else "ListContainers"
            want = sorted(x.id for b in ("docker", "podman")
                          for x in getattr(refs[b].rt(lst), "items" if lst == "ListPodSandbox" else "containers"))
            assert got == want, method
    finally:
        ev.close()
        for backend, pid, cfg in made:
            refs[backend].rt("StopPodSandbox", pod_sandbox_id=pid, deadline=60)
            refs[backend].rt("RemovePodSandbox", pod_sandbox_id=pid, deadline=60)
            remove_cgroup(cfg.linux.cgroup_parent)
