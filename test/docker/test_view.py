"""The view of the node (src/docker/view.c): ListPodSandbox and ListContainers
answered from memory while the engine's event stream says nothing changed.

Correct, not only fast: every list is compared with what the engine says
directly, after changes made through crisp (no wait at all: read-your-writes)
and behind its back (a bounded wait: one event's latency); the view must be
what answers (the engine paused, lists still answer), and an engine restart
must not leave a stale view behind."""
import os
import signal
import time

import grpc
import pytest

from conftest import SLEEPER, WORK, kill_engine, restart_engine, v1, wait_for

TYPE_LABEL = "io.kubernetes.docker.type"
SANDBOX_LABEL = "io.kubernetes.sandbox.id"
STATES = {"running": v1.CONTAINER_RUNNING, "exited": v1.CONTAINER_EXITED,
          "created": v1.CONTAINER_CREATED}


def crisp_ctrs(c, pod):
    return {x.id: x.state for x in c.rt("ListContainers").containers if x.pod_sandbox_id == pod}


def engine_ctrs(engine, pod):
    """What the engine says of the pod's containers, as CRI states."""
    out = {}
    for e in engine.containers(all=True, labels={TYPE_LABEL: "container"}):
        if (e.get("Labels") or {}).get(SANDBOX_LABEL) == pod:
            out[e["Id"]] = STATES.get(e["State"], v1.CONTAINER_UNKNOWN)
    return out


def crisp_pods(c, ids):
    return {p.id: p.state for p in c.rt("ListPodSandbox").items if p.id in ids}


def live_count(crisp):
    """How many times crisp's log said the view went live."""
    with open(crisp.log) as f:
        return sum(1 for line in f if "event=docker_view" in line and "state=live" in line)


def wait_live(crisp, c, before=0, timeout=30):
    """Lists start the event stream; wait until crisp says it is open."""
    def live():
        c.rt("ListContainers")
        return live_count(crisp) > before
    wait_for(live, timeout, what="crisp's view of %s to go live (docker_view state=live in %s)"
             % (crisp.kind, crisp.log))


def test_read_your_writes(k8s, crisp):
    """Each change made through crisp is in the next list, asked at once; the
    view is filled before each change so that it is what gets dropped."""
    c = k8s.c
    wait_live(crisp, c)
    for _ in range(3):
        c.rt("ListPodSandbox")
        pod = k8s.run_pod()
        assert crisp_pods(c, [pod]) == {pod: v1.SANDBOX_READY}
        crisp_ctrs(c, pod)
        cid = k8s.create(pod, "ryw", SLEEPER, start=False)
        assert crisp_ctrs(c, pod) == {cid: v1.CONTAINER_CREATED}
        c.rt("StartContainer", container_id=cid)
        assert crisp_ctrs(c, pod) == {cid: v1.CONTAINER_RUNNING}
        c.rt("StopContainer", container_id=cid, timeout=0)
        assert crisp_ctrs(c, pod) == {cid: v1.CONTAINER_EXITED}
        c.rt("RemoveContainer", container_id=cid)
        assert crisp_ctrs(c, pod) == {}
        c.rt("StopPodSandbox", pod_sandbox_id=pod)
        assert crisp_pods(c, [pod]) == {pod: v1.SANDBOX_NOTREADY}
        c.rt("RemovePodSandbox", pod_sandbox_id=pod)
        assert crisp_pods(c, [pod]) == {}


def test_changes_behind_crisps_back(k8s, crisp, engine):
    """Churn made straight through the engine's API (stop, kill, start, an
    exit of its own, rm -f, a container made by hand in the pod): crisp's
    lists equal the engine's within one event's latency, every step, and
    exec probes (exec events) do not disturb them."""
    c = k8s.c
    wait_live(crisp, c)
    pod = k8s.run_pod()
    a = k8s.create(pod, "churn-a", SLEEPER)
    # b exits on its own when told (a file appears), not at a time of its choosing
    b = k8s.create(pod, "churn-b", ["sh", "-c", "while [ ! -f /tmp/go ]; do sleep 0.1; done; exit 3"])
    steps = [
        ("stop a", lambda: engine.post("/containers/%s/stop" % a, t=0)),
        ("start a", lambda: engine.post("/containers/%s/start" % a)),
        ("b exits by itself", lambda: (
            c.rt("ExecSync", container_id=b, cmd=["touch", "/tmp/go"], timeout=10),
            wait_for(lambda: engine_ctrs(engine, pod).get(b) == v1.CONTAINER_EXITED, 15, what="b to exit"))),
        ("kill a", lambda: engine.post("/containers/%s/kill" % a)),
        ("rm -f b", lambda: engine.remove(b, force=True)),
    ]
    for what, step in steps:
        crisp_ctrs(c, pod)  # the view holds the state before the step
        step()
        wait_for(lambda: crisp_ctrs(c, pod) == engine_ctrs(engine, pod), 15,
                 what="crisp's ListContainers to equal the engine's after: %s (crisp %s, engine %s)"
                 % (what, crisp_ctrs(c, pod), engine_ctrs(engine, pod)))
        # exec events change nothing a list shows: still equal
        if crisp_ctrs(c, pod).get(a) == v1.CONTAINER_RUNNING:
            c.rt("ExecSync", container_id=a, cmd=["true"], timeout=10)
        assert crisp_ctrs(c, pod) == engine_ctrs(engine, pod), what
    # the pod's sandbox stopped by hand
    sandbox = pod
    engine.post("/containers/%s/stop" % sandbox, t=0)
    wait_for(lambda: crisp_pods(c, [pod]) == {pod: v1.SANDBOX_NOTREADY}, 15,
             what="the sandbox stopped behind crisp's back to show NOTREADY")


def test_lists_are_served_from_the_view(k8s, crisp, engine, denv):
    """With the view current, lists answer while the engine is frozen
    (SIGSTOP): they come from memory, not from an engine listing. Filtered
    lists (labels, pod) too, and the same as the engine gave."""
    c = k8s.c
    pod = k8s.run_pod(labels={"view": "yes"})
    cid = k8s.create(pod, "served", SLEEPER)
    wait_live(crisp, c)
    want_ctrs = {x.id for x in c.rt("ListContainers").containers}
    want_pods = {p.id for p in c.rt("ListPodSandbox").items}
    assert cid in want_ctrs and pod in want_pods
    pidfile = os.path.join(WORK, "pids", "dockerd.pid" if engine.kind == "docker" else "podman.pid")
    pid = int(open(pidfile).read().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        got_ctrs = {x.id for x in c.rt("ListContainers", deadline=5).containers}
        got_pods = {p.id for p in c.rt("ListPodSandbox", deadline=5).items}
        by_label = [p.id for p in c.rt("ListPodSandbox", deadline=5, filter=v1.PodSandboxFilter(
            label_selector={"view": "yes"})).items]
        by_pod = [x.id for x in c.rt("ListContainers", deadline=5, filter=v1.ContainerFilter(
            pod_sandbox_id=pod)).containers]
        by_state = [x.id for x in c.rt("ListContainers", deadline=5, filter=v1.ContainerFilter(
            state=v1.ContainerStateValue(state=v1.CONTAINER_EXITED))).containers]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert (got_ctrs, got_pods) == (want_ctrs, want_pods)
    assert by_label == [pod] and by_pod == [cid] and cid not in by_state


def test_engine_restart_drops_the_view(k8s, crisp, engine, denv):
    """The engine killed: lists fail (UNAVAILABLE) instead of answering from a
    view nobody keeps current; the engine back: lists work and follow changes
    made behind crisp's back again, without restarting crisp."""
    c = k8s.c
    wait_live(crisp, c)
    before = live_count(crisp)
    pod = k8s.run_pod()
    c.rt("ListPodSandbox")
    kill_engine(denv, engine.kind)
    try:
        def unavailable():
            try:
                c.rt("ListPodSandbox", deadline=10)
                return False
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
                return True
        wait_for(unavailable, 10, what="ListPodSandbox to fail once the engine is gone")
    finally:
        restart_engine(denv, engine.kind)
    wait_live(crisp, c, before, timeout=60)
    assert pod in crisp_pods(c, [pod])
    # the sandbox's state after the restart is the engine's (dockerd stops
    # containers when it dies): crisp says what the engine says
    want = {pod: v1.SANDBOX_READY if engine.inspect(pod)["State"]["Running"] else v1.SANDBOX_NOTREADY}
    assert crisp_pods(c, [pod]) == want
    if want[pod] == v1.SANDBOX_READY:
        engine.post("/containers/%s/stop" % pod, t=0)
        wait_for(lambda: crisp_pods(c, [pod]) == {pod: v1.SANDBOX_NOTREADY}, 15,
                 what="a change behind crisp's back after the restart")


def test_restarted_crisp_rebuilds_the_view(k8s, crisp, engine):
    """Nothing is kept: a crisp restarted mid-churn lists what the engine says."""
    c = k8s.c
    pod = k8s.run_pod()
    a = k8s.create(pod, "rebuilt", SLEEPER)
    crisp.restart(signal.SIGKILL)
    k8s.c = crisp.client
    engine.post("/containers/%s/stop" % a, t=0)
    wait_for(lambda: crisp_ctrs(k8s.c, pod) == engine_ctrs(engine, pod) == {a: v1.CONTAINER_EXITED}, 15,
             what="the restarted crisp's list to equal the engine's")
