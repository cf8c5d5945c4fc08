"""Server-streaming RPCs: GetContainerEvents during a concurrent container
lifecycle, and the Stream* RPCs. containerd 1.6 implements none of them
(UNIMPLEMENTED); then crisp must relay exactly the same status code and
message. test_fake_backend.py checks crisp's relay of real streamed data."""
import threading
import time

import grpc
import pytest

from conftest import wait_for
from test_containers import SERVE

STREAM_RPCS = [
    ("RuntimeService", "StreamPodSandboxes"),
    ("RuntimeService", "StreamContainers"),
    ("RuntimeService", "StreamContainerStats"),
    ("RuntimeService", "StreamPodSandboxStats"),
    ("RuntimeService", "StreamPodSandboxMetrics"),
    ("ImageService", "StreamImages"),
]


def stream_outcome(client, service, method, timeout=10):
    """(code, details, n_messages) of a whole server-streaming call."""
    call = client.stream(service, method, deadline=timeout)
    n = 0
    try:
        for _ in call:
            n += 1
    except grpc.RpcError as e:
        return e.code(), e.details(), n
    return call.code(), call.details(), n


@pytest.mark.parametrize("service,method", STREAM_RPCS, ids=[m for _, m in STREAM_RPCS])
def test_stream_rpc_relayed(cri, direct_client, service, method):
    want = stream_outcome(direct_client, service, method)
    got = stream_outcome(cri, service, method)
    if want[0] == grpc.StatusCode.UNIMPLEMENTED:
        assert got == want
    else:  # a backend that implements it: same status and message count
        assert got[0] == want[0] and got[2] == want[2]


EVENT_NAMES = {0: "CREATED", 1: "STARTED", 2: "STOPPED", 3: "DELETED"}


def test_get_container_events(cri, pods, direct_client):
    pb = cri.pb
    pid, _ = pods.run_pod()
    events, errors = [], []
    call = cri.rt_stream("GetContainerEvents", pb.GetEventsRequest(), deadline=60)

    def reader():
        try:
            for ev in call:
                events.append(ev)
        except grpc.RpcError as e:
            errors.append(e)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(0.5)  # let the stream open (or fail)

    if errors and errors[0].code() == grpc.StatusCode.UNIMPLEMENTED:
        got = (errors[0].code(), errors[0].details())
        ref = direct_client.rt_stream("GetContainerEvents", pb.GetEventsRequest(), deadline=10)
        try:
            for _ in ref:
                pass
            want = (ref.code(), ref.details())
        except grpc.RpcError as e:
            want = (e.code(), e.details())
        assert got == want, "crisp relayed another status than the backend's"
        if cri.name == "direct":
            pytest.skip("backend does not implement GetContainerEvents: %s %r" % got)
        return  # crisp relayed the backend's UNIMPLEMENTED unchanged
    assert not errors, errors

    try:
        cid = pods.create_container(pid, "evented", ["sh", "-c", SERVE])
        cri.rt("StopContainer", pb.StopContainerRequest(container_id=cid, timeout=5))
        cri.rt("RemoveContainer", container_id=cid)
        pods.forget_container(cid)

        def seen():
            return [EVENT_NAMES.get(e.container_event_type) for e in list(events) if e.container_id == cid]
        wait_for(lambda: "DELETED" in seen(), timeout=10, what="DELETED event")
        assert seen() == ["CREATED", "STARTED", "STOPPED", "DELETED"]
        mine = [e for e in events if e.container_id == cid]
        assert all(e.pod_sandbox_status.id == pid for e in mine if e.HasField("pod_sandbox_status"))
        assert [e.created_at for e in mine] == sorted(e.created_at for e in mine)
    finally:
        call.cancel()
        t.join(5)
