"""GetContainerEvents from the engine's event stream."""
import threading
import time

import grpc

from conftest import SLEEPER, v1

WANT = [v1.CONTAINER_CREATED_EVENT, v1.CONTAINER_STARTED_EVENT, v1.CONTAINER_STOPPED_EVENT,
        v1.CONTAINER_DELETED_EVENT]
NAMES = {v: k for k, v in v1.ContainerEventType.items()}


class EventReader:
    def __init__(self, client, deadline=60):
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

    def of(self, cid):
        return [e for e in self.events if e.container_id == cid]

    def wait_types(self, cid, types, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = [e.container_event_type for e in self.of(cid)]
            if all(t in got for t in types):
                return
            if self.error:
                break
            time.sleep(0.1)
        raise AssertionError("events for %s: got %s, want %s (stream error: %s)"
                             % (cid[:12], [NAMES[e.container_event_type] for e in self.of(cid)],
                                [NAMES[t] for t in types], self.error))

    def close(self):
        self.call.cancel()
        self.t.join(5)


def test_container_events_lifecycle(k8s):
    pod = k8s.run_pod()
    reader = EventReader(k8s.c)
    try:
        time.sleep(0.5)  # the subscription is in place
        t0 = time.time()
        cid = k8s.create(pod, "evented", SLEEPER)
        reader.wait_types(cid, WANT[:2])
        k8s.c.rt("StopContainer", container_id=cid, timeout=0)
        reader.wait_types(cid, WANT[:3])
        k8s.c.rt("RemoveContainer", container_id=cid)
        reader.wait_types(cid, WANT)
    finally:
        reader.close()
    evs = reader.of(cid)
    order = []
    for e in evs:
        if e.container_event_type not in order:
            order.append(e.container_event_type)
    assert order == WANT, [NAMES[t] for t in order]
    for e in evs:
        assert t0 - 5 < e.created_at / 1e9 < time.time() + 5, e.created_at
        if e.container_event_type != v1.CONTAINER_DELETED_EVENT:
            # the kubelet's evented PLEG reads the pod from every event
            assert e.pod_sandbox_status.id == pod, (NAMES[e.container_event_type], e.pod_sandbox_status)
            assert e.pod_sandbox_status.metadata.uid == k8s.configs[pod].metadata.uid


def test_events_for_a_container_that_exits(k8s):
    pod = k8s.run_pod()
    reader = EventReader(k8s.c)
    try:
        time.sleep(0.5)
        cid = k8s.create(pod, "quick", ["sh", "-c", "exit 3"])
        reader.wait_types(cid, WANT[:3])
    finally:
        reader.close()
    stopped = [e for e in reader.of(cid) if e.container_event_type == v1.CONTAINER_STOPPED_EVENT]
    statuses = [s for e in stopped for s in e.containers_statuses if s.id == cid]
    if statuses:
        assert statuses[-1].state == v1.CONTAINER_EXITED and statuses[-1].exit_code == 3, statuses[-1]


def test_two_subscribers(k8s):
    pod = k8s.run_pod()
    r1, r2 = EventReader(k8s.c), EventReader(k8s.c)
    try:
        time.sleep(0.5)
        cid = k8s.create(pod, "twice", ["true"])
        r1.wait_types(cid, WANT[:3])
        r2.wait_types(cid, WANT[:3])
    finally:
        r1.close()
        r2.close()


def test_events_carry_the_pods_statuses(k8s):
    """Each event carries the pod as it is when sent, as containerd's do (the
    kubelet's evented PLEG takes it as the pod's state): the sandbox's full
    PodSandboxStatus and every container's ContainerStatus, equal to what
    PodSandboxStatus and ContainerStatus answer (a stopped container's exit
    code and times included)."""
    pod = k8s.run_pod()
    first = k8s.create(pod, "first", SLEEPER)
    reader = EventReader(k8s.c)
    try:
        time.sleep(0.5)
        second = k8s.create(pod, "second", ["sh", "-c", "sleep 0.5; exit 4"])
        reader.wait_types(second, WANT[:3])
    finally:
        reader.close()
    assert reader.error is None, reader.error
    stopped = [e for e in reader.of(second) if e.container_event_type == v1.CONTAINER_STOPPED_EVENT][-1]
    want_pod = k8s.pod_status(pod)
    got_pod = stopped.pod_sandbox_status
    assert got_pod.state == v1.SANDBOX_READY and got_pod.created_at == want_pod.created_at, got_pod
    assert got_pod.metadata == want_pod.metadata and dict(got_pod.labels) == dict(want_pod.labels)
    assert got_pod.network.ip == want_pod.network.ip
    got = {s.id: s for s in stopped.containers_statuses}
    assert set(got) == {first, second}, list(got)
    for cid in (first, second):
        want = k8s.status(cid)
        assert got[cid].state == want.state and got[cid].exit_code == want.exit_code, (got[cid], want)
        assert (got[cid].created_at, got[cid].started_at, got[cid].finished_at) == \
            (want.created_at, want.started_at, want.finished_at)
        assert got[cid].metadata == want.metadata and got[cid].image_ref == want.image_ref
        assert dict(got[cid].labels) == dict(want.labels) and got[cid].log_path == want.log_path
    assert got[second].state == v1.CONTAINER_EXITED and got[second].exit_code == 4
    assert got[first].state == v1.CONTAINER_RUNNING
