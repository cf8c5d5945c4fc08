"""Container lifecycle and everything around it: CreateContainer, StartContainer,
ContainerStatus, ListContainers (filters), ExecSync, ContainerStats,
ListContainerStats, the CRI log file, UpdateContainerResources,
ReopenContainerLog, Exec/Attach/PortForward URLs, StopContainer,
RemoveContainer; plus a pod on the `crun` runtime handler."""
import os
import re
import time

import grpc
import pytest

from crilib import as_dict, rpc_error
from conftest import wait_for

# sh as PID 1 of its own pid namespace: exits promptly on SIGTERM
SERVE = 'trap "echo got-term; exit 0" TERM; echo hello-out; echo hello-err >&2; sleep 3600 & wait'
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)) (stdout|stderr) ([FP]) (.*)$")


def read_log(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def parsed_log(path):
    out = []
    for line in read_log(path):
        m = LOG_LINE.match(line)
        assert m, "not a CRI log line: %r" % line
        out.append((m.group(4), m.group(5), m.group(6)))
    return out


def test_container_lifecycle(cri, pods, testenv):
    pb = cri.pb
    pid, pcfg = pods.run_pod()
    cid = pods.create_container(pid, "main", ["sh", "-c", SERVE], start=False,
                                labels={"tier": "web"}, env={"GREETING": "hi"})
    assert len(cid) == 64

    st = cri.rt("ContainerStatus", container_id=cid).status
    assert st.id == cid
    assert st.state == pb.CONTAINER_CREATED
    assert st.metadata.name == "main"
    assert st.image.image == testenv.BUSYBOX_IMAGE
    assert st.image_ref.startswith(testenv.REGISTRY + "/crisp-test/busybox@sha256:") or \
        st.image_ref.startswith("sha256:")
    assert st.labels["tier"] == "web"
    assert st.annotations["crisp-test/container"] == "main"
    assert st.log_path == pods.log_path(pid, "main")
    assert st.created_at > 0 and st.started_at == 0

    cri.rt("StartContainer", container_id=cid)
    st = cri.rt("ContainerStatus", container_id=cid).status
    assert st.state == pb.CONTAINER_RUNNING
    assert st.started_at >= st.created_at > 0

    vst = cri.rt("ContainerStatus", container_id=cid, verbose=True)
    assert vst.status.id == cid
    assert '"pid"' in vst.info["info"]

    # the log file, in CRI format
    logp = pods.log_path(pid, "main")
    wait_for(lambda: len(read_log(logp)) >= 2, what="2 lines in " + logp)
    lines = parsed_log(logp)
    assert ("stdout", "F", "hello-out") in lines
    assert ("stderr", "F", "hello-err") in lines

    # exec
    r = cri.rt("ExecSync", container_id=cid, cmd=["sh", "-c", "echo out $GREETING; echo err >&2; exit 7"],
               timeout=10)
    assert r.stdout == b"out hi\n"
    assert r.stderr == b"err\n"
    assert r.exit_code == 7
    r = cri.rt("ExecSync", container_id=cid, cmd=["cat", "/etc/hostname"], timeout=10)
    assert r.exit_code == 0 and r.stdout.decode().strip() == pcfg.hostname

    # stats
    s = cri.rt("ContainerStats", container_id=cid).stats
    assert s.attributes.id == cid
    assert s.attributes.metadata.name == "main"
    assert s.cpu.timestamp > 0
    assert s.memory.timestamp > 0
    assert s.writable_layer.fs_id.mountpoint
    ls = cri.rt("ListContainerStats", filter=pb.ContainerStatsFilter(id=cid))
    assert [x.attributes.id for x in ls.stats] == [cid]
    ls = cri.rt("ListContainerStats", filter=pb.ContainerStatsFilter(pod_sandbox_id=pid))
    assert [x.attributes.id for x in ls.stats] == [cid]
    ls = cri.rt("ListContainerStats", filter=pb.ContainerStatsFilter(label_selector={"tier": "web", "crisp-test/container": "main"}))
    assert cid in [x.attributes.id for x in ls.stats]
    assert cid in [x.attributes.id for x in cri.rt("ListContainerStats").stats]

    # stop: SIGTERM reaches sh, which logs and exits 0
    t0 = time.time()
    cri.rt("StopContainer", pb.StopContainerRequest(container_id=cid, timeout=10))
    assert time.time() - t0 < 8, "StopContainer waited for the grace period"
    st = cri.rt("ContainerStatus", container_id=cid).status
    assert st.state == pb.CONTAINER_EXITED
    assert st.exit_code == 0
    assert st.finished_at >= st.started_at
    assert st.reason == "Completed"
    wait_for(lambda: ("stdout", "F", "got-term") in parsed_log(logp), what="got-term in log")

    cri.rt("RemoveContainer", container_id=cid)
    code, details = rpc_error(cri.rt, "ContainerStatus", container_id=cid)
    assert code == grpc.StatusCode.NOT_FOUND
    assert cid in details
    pods.forget_container(cid)


def test_container_exit_code(cri, pods):
    pb = cri.pb
    pid, _ = pods.run_pod()
    cid = pods.create_container(pid, "quitter", ["sh", "-c", "echo bye; exit 3"])

    def exited():
        s = cri.rt("ContainerStatus", container_id=cid).status
        return s if s.state == pb.CONTAINER_EXITED else None
    st = wait_for(exited, what="container exit")
    assert st.exit_code == 3
    assert st.reason == "Error"
    assert parsed_log(pods.log_path(pid, "quitter")) == [("stdout", "F", "bye")]


def test_list_containers_filters(cri, pods):
    pb = cri.pb
    p1, _ = pods.run_pod()
    p2, _ = pods.run_pod()
    run1 = pods.create_container(p1, "run1", ["sh", "-c", SERVE], labels={"grp": "g1"})
    new1 = pods.create_container(p1, "new1", ["sh", "-c", SERVE], start=False, labels={"grp": "g1"})
    run2 = pods.create_container(p2, "run2", ["sh", "-c", SERVE], labels={"grp": "g2"})
    mine = {run1, new1, run2}

    def lst(**f):
        r = cri.rt("ListContainers", filter=pb.ContainerFilter(**f)) if f else cri.rt("ListContainers")
        return sorted(c.id for c in r.containers if c.id in mine)

    assert lst() == sorted(mine)
    assert lst(id=run1) == [run1]
    assert lst(id=run1[:12]) == [run1]
    assert lst(pod_sandbox_id=p1) == sorted([run1, new1])
    assert lst(pod_sandbox_id=p2) == [run2]
    assert lst(state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)) == sorted([run1, run2])
    assert lst(state=pb.ContainerStateValue(state=pb.CONTAINER_CREATED)) == [new1]
    assert lst(state=pb.ContainerStateValue(state=pb.CONTAINER_EXITED)) == []
    assert lst(label_selector={"grp": "g1"}) == sorted([run1, new1])
    assert lst(label_selector={"grp": "g1", "crisp-test/container": "run1"}) == [run1]
    assert lst(label_selector={"grp": "nope"}) == []
    assert lst(pod_sandbox_id=p1, state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)) == [run1]

    full = cri.rt("ListContainers", filter=pb.ContainerFilter(id=run2)).containers
    assert len(full) == 1
    c = full[0]
    assert c.pod_sandbox_id == p2
    assert c.metadata.name == "run2"
    assert c.state == pb.CONTAINER_RUNNING
    assert c.labels["grp"] == "g2"
    assert c.created_at > 0


def test_exec_sync_large_output(cri, pods):
    """2 MiB of stdout in one ExecSync answer: exercises HTTP/2 flow control."""
    pid, _ = pods.run_pod()
    cid = pods.create_container(pid, "big", ["sh", "-c", SERVE])
    n = 2 * 1024 * 1024
    r = cri.rt("ExecSync", container_id=cid, cmd=["sh", "-c", "head -c %d /dev/zero | tr '\\0' x" % n], timeout=20)
    assert r.exit_code == 0
    assert len(r.stdout) == n and r.stdout == b"x" * n


def test_exec_sync_timeout(cri, pods):
    """ExecSync's own timeout field (not the gRPC deadline): containerd
    answers DEADLINE_EXCEEDED itself, which crisp must relay as it is."""
    pid, _ = pods.run_pod()
    cid = pods.create_container(pid, "slow", ["sh", "-c", SERVE])
    t0 = time.time()
    code, details = rpc_error(cri.rt, "ExecSync", container_id=cid, cmd=["sleep", "30"], timeout=1, deadline=20)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert details == "failed to exec in container: timeout 1s exceeded: context deadline exceeded"
    assert time.time() - t0 < 10


def test_grpc_deadline_shorter_than_call(cri, pods):
    """The client's own deadline expires while the backend is still busy."""
    pid, _ = pods.run_pod()
    cid = pods.create_container(pid, "slow2", ["sh", "-c", SERVE])
    t0 = time.time()
    code, _ = rpc_error(cri.rt, "ExecSync", container_id=cid, cmd=["sleep", "5"], timeout=30, deadline=1)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.time() - t0 < 3
    # the connection is still usable afterwards
    assert cri.rt("ExecSync", container_id=cid, cmd=["true"], timeout=10).exit_code == 0


def test_update_resources_and_reopen_log(cri, pods):
    pb = cri.pb
    pid, _ = pods.run_pod()
    cid = pods.create_container(pid, "upd", ["sh", "-c", SERVE])
    cri.rt("UpdateContainerResources", container_id=cid,
           linux=pb.LinuxContainerResources(cpu_shares=512))
    r = cri.rt("ExecSync", container_id=cid, cmd=["cat", "/sys/fs/cgroup/cpu/cpu.shares"], timeout=10)
    if r.exit_code == 0:
        assert r.stdout.strip() == b"512"
    logp = pods.log_path(pid, "upd")
    wait_for(lambda: read_log(logp), what="log file")
    os.rename(logp, logp + ".1")
    cri.rt("ReopenContainerLog", container_id=cid)
    assert os.path.exists(logp)


def test_streaming_urls(cri, pods):
    """Exec/Attach/PortForward answer with a URL on containerd's stream server."""
    pid, _ = pods.run_pod()
    cid = pods.create_container(pid, "stream", ["sh", "-c", SERVE])
    url_re = re.compile(r"^http://127\.0\.0\.1:\d+/(exec|attach|portforward)/[A-Za-z0-9_-]+$")
    r = cri.rt("Exec", container_id=cid, cmd=["sh"], stdout=True, stderr=True)
    assert url_re.match(r.url) and "/exec/" in r.url, r.url
    r = cri.rt("Attach", container_id=cid, stdout=True)
    assert url_re.match(r.url) and "/attach/" in r.url, r.url
    r = cri.rt("PortForward", pod_sandbox_id=pid, port=[80])
    assert url_re.match(r.url) and "/portforward/" in r.url, r.url


def test_crun_runtime_handler(cri, pods, testenv):
    if not testenv.get("CRUN_HANDLER"):
        pytest.skip("crun does not work on this machine (see test/env/up.sh)")
    pb = cri.pb
    pid, _ = pods.run_pod(runtime_handler="crun")
    item = cri.rt("ListPodSandbox", filter=pb.PodSandboxFilter(id=pid)).items[0]
    assert item.runtime_handler == "crun"
    cid = pods.create_container(pid, "oncrun", ["sh", "-c", SERVE])
    r = cri.rt("ExecSync", container_id=cid, cmd=["echo", "crun-ok"], timeout=10)
    assert r.stdout == b"crun-ok\n"
    cri.rt("StopContainer", pb.StopContainerRequest(container_id=cid, timeout=5))
    assert cri.rt("ContainerStatus", container_id=cid).status.exit_code == 0


def test_containers_same_answer(both, direct_pods):
    pid, _ = direct_pods.run_pod()
    cid = direct_pods.create_container(pid, "same", ["sh", "-c", SERVE], labels={"x": "y"})
    d, c = (x.rt("ContainerStatus", container_id=cid, verbose=True) for x in both)
    assert c == d
    f = both.direct.pb.ContainerFilter(pod_sandbox_id=pid)
    d, c = (x.rt("ListContainers", filter=f) for x in both)
    assert c == d
    d, c = (x.rt("ExecSync", container_id=cid, cmd=["sh", "-c", "echo 1; echo 2 >&2; exit 4"]) for x in both)
    assert c == d
    d, c = (x.rt("ContainerStats", container_id=cid) for x in both)
    assert as_dict(c) == as_dict(d)
    f = both.direct.pb.ContainerStatsFilter(id=cid)
    d, c = (x.rt("ListContainerStats", filter=f) for x in both)
    assert as_dict(c) == as_dict(d)
