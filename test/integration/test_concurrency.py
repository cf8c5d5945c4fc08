"""Several calls at once on one connection and on many connections."""
import os
import threading
import time

import grpc

from conftest import Crisp, _crisp_instances, free_unix_path, stop_and_check
from crilib import CRIClient, v1
from sockproxy import UnixProxy
from test_containers import SERVE


def test_parallel_unary_one_connection(cri):
    calls = ["Version", "Status", "ListPodSandbox", "ListContainers"]
    errors, done = [], []

    def worker(k):
        try:
            for i in range(25):
                m = calls[(i + k) % len(calls)]
                cri.rt(m, deadline=10)
                cri.img("ListImages", deadline=10) if i % 5 == 0 else None
            done.append(k)
        except grpc.RpcError as e:
            errors.append((e.code(), e.details()))
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[:3]
    assert sorted(done) == list(range(8))


def test_many_connections(cri):
    clients = [CRIClient(cri.target, cri.name) for _ in range(16)]
    try:
        for c in clients:
            assert c.rt("Version", deadline=10).runtime_name == "containerd"
        # and all of them again, now that they are all open at once
        for c in clients:
            assert c.rt("Status", deadline=10).status.conditions
    finally:
        for c in clients:
            c.close()


def test_slow_call_does_not_block_others(cri, pods):
    """While one ExecSync sleeps 2 s, other calls on the same connection go through."""
    pid, _ = pods.run_pod()
    cid = pods.create_container(pid, "sleeper", ["sh", "-c", SERVE])
    out = {}

    def slow():
        t0 = time.time()
        r = cri.rt("ExecSync", container_id=cid, cmd=["sleep", "2"], timeout=10, deadline=20)
        out["slow"] = (r.exit_code, time.time() - t0)
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    t0 = time.time()
    for _ in range(10):
        cri.rt("Version", deadline=5)
    fast = time.time() - t0
    t.join(30)
    assert out["slow"][0] == 0 and out["slow"][1] >= 1.9
    assert fast < 1.5, "10 Version calls took %.2fs behind a slow ExecSync" % fast
    assert t.is_alive() is False


def test_backend_connection_pool_bounded_by_cpus(testenv):
    """Many calls in flight spread over more than one connection to the
    runtime, but never more than one per CPU crisp may use (2 to 4): more
    only split the runtime's batches. The pool holds once opened."""
    cpus = len(os.sched_getaffinity(0))
    most = min(4, max(2, cpus))
    proxy = UnixProxy(free_unix_path("count-ctrd.sock"), testenv.CONTAINERD_SOCK)
    c = Crisp("pool", proxy.path)
    _crisp_instances.append(c)
    c.start()
    cli = CRIClient("unix://" + c.sock, "pool")
    try:
        stub = cli.channel.unary_unary("/runtime.v1.RuntimeService/Version",
                                       request_serializer=v1.VersionRequest.SerializeToString,
                                       response_deserializer=v1.VersionResponse.FromString)
        for _ in range(20):
            futs = [stub.future(v1.VersionRequest(), timeout=30) for _ in range(64)]
            assert all(f.result().runtime_name == "containerd" for f in futs)
        assert 2 <= proxy.most_open <= most, (proxy.most_open, most)
        assert proxy.accepted == proxy.most_open, (proxy.accepted, proxy.most_open)
    finally:
        cli.close()
        stop_and_check(c)
        proxy.close()
