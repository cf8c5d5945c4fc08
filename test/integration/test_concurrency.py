"""Several calls at once on one connection and on many connections."""
import threading
import time

import grpc

from crilib import CRIClient
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
