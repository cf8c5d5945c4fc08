"""crisp's relay of server-streaming RPCs, mid-stream errors, flow control,
cancellation and odd status messages, against a scripted fake backend
(fakecri.py). "direct" = the fake's own socket, "crisp" = crisp in front of it."""
import threading
import time

import grpc
import pytest

import fakecri
from conftest import Crisp, WORK, free_unix_path, stop_and_check, wait_for, _crisp_instances
from crilib import CRIClient, v1, rpc_error


@pytest.fixture(scope="module")
def fake():
    f = fakecri.FakeCRI(free_unix_path("fake-cri.sock")).start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def fake_crisp(fake):
    c = Crisp("fake", fake.sock)
    _crisp_instances.append(c)
    c.start()
    yield c
    stop_and_check(c)


@pytest.fixture(params=["direct", "crisp"])
def fcri(request, fake):
    if request.param == "direct":
        target = fake.sock
    else:
        crisp = request.getfixturevalue("fake_crisp")
        target = crisp.sock
    c = CRIClient("unix://" + target, request.param)
    yield c
    c.close()
    if request.param == "crisp":
        assert crisp.alive(), "crisp (fake backend) died during this test; see %s" % crisp.log


def test_fake_version(fcri):
    assert fcri.rt("Version").runtime_name == "fake-cri"


def test_stream_all_messages_in_order(fcri):
    evs = list(fcri.rt_stream("GetContainerEvents", deadline=10))
    assert [e.container_id for e in evs] == ["c%d" % i for i in range(fakecri.EVENTS)]
    assert [e.container_event_type for e in evs] == [i % 4 for i in range(fakecri.EVENTS)]
    assert [e.created_at for e in evs] == [1000 + i for i in range(fakecri.EVENTS)]


def test_stream_error_after_messages(fcri):
    call = fcri.rt_stream("StreamContainers", deadline=10)
    got = []
    with pytest.raises(grpc.RpcError) as ei:
        for m in call:
            got.append(m.containers[0].id)
    assert got == ["sc0", "sc1", "sc2"]
    assert ei.value.code() == grpc.StatusCode.ABORTED
    assert ei.value.details() == "fake: mid-stream failure"


def test_stream_large_messages(fcri):
    msgs = list(fcri.img_stream("StreamImages", deadline=20))
    assert [m.images[0].id for m in msgs] == ["img%d" % i for i in range(16)]
    assert all(m.images[0].repo_tags[0] == "t" * 65536 for m in msgs)


def test_stream_not_buffered(fcri):
    """The first message must reach the client before the backend sends the second."""
    call = fcri.rt_stream("StreamPodSandboxes", deadline=10)
    t0 = time.time()
    first = next(call)
    t_first = time.time() - t0
    rest = list(call)
    assert first.pod_sandboxes[0].id == "first"
    assert [m.pod_sandboxes[0].id for m in rest] == ["second"]
    assert t_first < fakecri.SLOW_GAP * 0.8, "first message arrived after %.2fs" % t_first


def test_stream_cancel_reaches_backend(fcri, fake):
    call = fcri.rt_stream("StreamContainerStats", deadline=20)
    got = [next(call) for _ in range(3)]
    assert [g.container_stats[0].attributes.id for g in got] == ["s0", "s1", "s2"]
    call.cancel()
    wait_for(fake.cancelled.is_set, timeout=5, what="the backend to see the cancellation")


def test_odd_error_message(fcri):
    code, details = rpc_error(fcri.rt, "ContainerStatus", container_id="x")
    assert code == grpc.StatusCode.NOT_FOUND
    assert details == fakecri.ODD_MESSAGE


def test_unimplemented_by_backend(fcri):
    code, _ = rpc_error(fcri.rt, "ListContainers")
    assert code == grpc.StatusCode.UNIMPLEMENTED


def test_concurrent_streams(fcri):
    """8 streams at once, each must get all of its messages."""
    results = [None] * 8
    errors = []

    def run(i):
        try:
            results[i] = len(list(fcri.rt_stream("GetContainerEvents", deadline=20)))
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors
    assert results == [fakecri.EVENTS] * 8
