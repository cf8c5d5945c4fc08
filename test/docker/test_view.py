"""The view of the node (src/docker/view.c): ListPodSandbox and ListContainers
answered from memory while the engine's event stream says nothing changed.

Correct, not only fast: every list is compared with what the engine says
directly, after changes made through crisp (no wait at all: read-your-writes)
and behind its back (a bounded wait: one event's latency); the view must be
what answers (the engine paused, lists still answer), and an engine restart
must not leave a stale view behind."""
import contextlib
import os
import re
import signal
import time
import urllib.parse

import grpc
import pytest

from conftest import SLEEPER, WORK, DockerCrisp, kill_engine, restart_engine, v1, wait_for
from sockproxy import UnixProxy
from test_events import EventReader

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


@contextlib.contextmanager
def engine_frozen(engine):
    """The engine's API process stopped (SIGSTOP) for the block: whatever
    answers meanwhile came from crisp's memory."""
    pidfile = os.path.join(WORK, "pids", "dockerd.pid" if engine.kind == "docker" else "podman.pid")
    pid = int(open(pidfile).read().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


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
    with engine_frozen(engine):
        got_ctrs = {x.id for x in c.rt("ListContainers", deadline=5).containers}
        got_pods = {p.id for p in c.rt("ListPodSandbox", deadline=5).items}
        by_label = [p.id for p in c.rt("ListPodSandbox", deadline=5, filter=v1.PodSandboxFilter(
            label_selector={"view": "yes"})).items]
        by_pod = [x.id for x in c.rt("ListContainers", deadline=5, filter=v1.ContainerFilter(
            pod_sandbox_id=pod)).containers]
        by_state = [x.id for x in c.rt("ListContainers", deadline=5, filter=v1.ContainerFilter(
            state=v1.ContainerStateValue(state=v1.CONTAINER_EXITED))).containers]
    assert (got_ctrs, got_pods) == (want_ctrs, want_pods)
    assert by_label == [pod] and by_pod == [cid] and cid not in by_state


def test_engine_restart_drops_the_view(k8s, crisp, engine, denv):
    """The engine killed: lists fail (UNAVAILABLE) instead of answering from a
    view nobody keeps current; the engine back: lists and statuses work and
    follow changes made behind crisp's back again, without restarting crisp;
    no status kept from before the restart is served after it."""
    c = k8s.c
    wait_live(crisp, c)
    before = live_count(crisp)
    pod = k8s.run_pod()
    c.rt("ListPodSandbox")
    for _ in range(2):  # kept in the view
        assert c.rt("PodSandboxStatus", pod_sandbox_id=pod).status.state == v1.SANDBOX_READY
    root = c.img("ImageFsInfo").image_filesystems[0].fs_id.mountpoint
    reader = EventReader(c, deadline=120)  # fed by the view's stream
    time.sleep(0.5)
    kill_engine(denv, engine.kind)
    try:
        # the stream the events came from is gone: the call ends (the kubelet
        # asks again), it is not left open with nothing coming
        wait_for(lambda: reader.error, 15, what="GetContainerEvents to end once the engine is gone")
        assert reader.error[0] == grpc.StatusCode.UNAVAILABLE and "event stream" in reader.error[1], reader.error

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
    assert c.rt("PodSandboxStatus", pod_sandbox_id=pod).status.state == want[pod]
    assert c.img("ImageFsInfo").image_filesystems[0].fs_id.mountpoint == root
    if want[pod] == v1.SANDBOX_READY:
        engine.post("/containers/%s/stop" % pod, t=0)
        wait_for(lambda: crisp_pods(c, [pod]) == {pod: v1.SANDBOX_NOTREADY}, 15,
                 what="a change behind crisp's back after the restart")
        wait_for(lambda: c.rt("PodSandboxStatus", pod_sandbox_id=pod).status.state == v1.SANDBOX_NOTREADY, 15,
                 what="the status of a change behind crisp's back after the restart")


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


# ---- stats from the view ----------------------------------------------------------------------

def size_rw(engine, cid):
    """The container's writable layer as the engine measures it now."""
    for e in engine.get("/containers/json", all=1, size=1):
        if e["Id"] == cid:
            return e.get("SizeRw")
    return None


def ctr_stats(c, deadline=None, **flt):
    return {s.attributes.id: s for s in
            c.rt("ListContainerStats", deadline=deadline, filter=v1.ContainerStatsFilter(**flt)).stats}


def pod_stats(c, deadline=None, **flt):
    return {s.attributes.id: s for s in
            c.rt("ListPodSandboxStats", deadline=deadline, filter=v1.PodSandboxStatsFilter(**flt)).stats}


@pytest.fixture
def stats_crisp(denv, engine):
    """A second crisp in front of the same engine, measuring the writable
    layers every 2 s (--writable-layer-every) so that a test sees a size
    change without waiting the default minute."""
    c = DockerCrisp(denv, engine.kind, ["--writable-layer-every", "2"], name="stats")
    c.start()
    yield c
    c.stop()


def test_stats_are_served_from_the_view(k8s, engine, stats_crisp):
    """With the view live and the sizes measured, ListContainerStats and
    ListPodSandboxStats (filters too) answer while the engine is frozen: the
    PIDs, lists and sizes come from memory, the figures from the cgroups.
    The writable layer is the engine's SizeRw with the time it was measured,
    measured again in the background after it grows."""
    pod = k8s.run_pod(labels={"viewstats": "yes"})
    fill = "dd if=/dev/zero of=/tmp/fill bs=1024 count=300 2>/dev/null; exec sleep 100000"
    cid = k8s.create(pod, "viewstats", ["sh", "-c", fill], labels={"viewstats": "ctr"})
    wait_for(lambda: (size_rw(engine, cid) or 0) >= 300 * 1024, 30, what="the container to write its file")
    c = stats_crisp.client
    wait_live(stats_crisp, c)

    def answered_frozen():
        # the first calls fill the view (lists, PIDs by inspect, sizes in
        # the background); then the engine is frozen: only the view answers
        ctr_stats(c)
        pod_stats(c)
        c.rt("ListContainers")
        c.rt("ListPodSandbox")
        time.sleep(0.5)
        ctr_stats(c)
        try:
            with engine_frozen(engine):
                return (ctr_stats(c, deadline=5), pod_stats(c, deadline=5),
                        ctr_stats(c, deadline=5, pod_sandbox_id=pod), ctr_stats(c, deadline=5, id=cid[:12]),
                        ctr_stats(c, deadline=5, label_selector={"viewstats": "ctr"}),
                        pod_stats(c, deadline=5, label_selector={"viewstats": "yes"}),
                        c.rt("PodSandboxStats", pod_sandbox_id=pod, deadline=5).stats)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            return None  # not all from the view yet: warm up again
    every, pods, by_pod, by_id, by_label, pods_by_label, one_pod = wait_for(
        answered_frozen, 60, interval=1, what="stats answered with the engine frozen")
    now_ns = time.time_ns()
    assert list(by_pod) == [cid] and list(by_id) == [cid] and list(by_label) == [cid], (by_pod, by_id, by_label)
    assert list(pods_by_label) == [pod] and pod in pods and pod not in every
    s = every[cid]
    assert s.cpu.usage_core_nano_seconds.value > 0 and s.memory.working_set_bytes.value > 0, s
    want = size_rw(engine, cid)
    assert s.writable_layer.used_bytes.value == want, (s.writable_layer, want)
    assert 0 < s.writable_layer.timestamp <= now_ns, s.writable_layer
    assert s.writable_layer.fs_id.mountpoint, s.writable_layer
    assert [x.attributes.id for x in pods[pod].linux.containers] == [cid]
    assert one_pod.attributes.id == pod and pods[pod].linux.memory.working_set_bytes.value > 0

    # the layer grows: the next measure (at most every 2 s here) shows it
    k8s.c.rt("ExecSync", container_id=cid, cmd=["sh", "-c", "dd if=/dev/zero of=/tmp/more bs=1024 count=500"],
             timeout=20)
    grown = size_rw(engine, cid)
    assert grown >= want + 500 * 1024
    wait_for(lambda: ctr_stats(c, id=cid)[cid].writable_layer.used_bytes.value == grown, 30, interval=0.5,
             what="the grown writable layer (%d bytes) in ListContainerStats" % grown)


def test_stats_follow_changes_behind_crisps_back(k8s, engine, stats_crisp):
    """A container stopped, started, killed behind crisp's back: its stats
    go and come back with the new process (not a stale PID), within one
    event's latency; a container made since shows 0 bytes of writable
    layer at time 0 (not measured yet, as containerd before its sync) until
    its size is measured."""
    c = stats_crisp.client
    wait_live(stats_crisp, c)
    pod = k8s.run_pod()
    a = k8s.create(pod, "behind-a", SLEEPER)
    wait_for(lambda: a in ctr_stats(c) and ctr_stats(c)[a].memory.working_set_bytes.value > 0, 15,
             what="a's stats")
    for what, step, listed in (
            ("stop", lambda: engine.post("/containers/%s/stop" % a, t=0), False),
            ("start", lambda: engine.post("/containers/%s/start" % a), True),
            ("kill", lambda: engine.post("/containers/%s/kill" % a), False),
            ("start again", lambda: engine.post("/containers/%s/start" % a), True)):
        step()
        wait_for(lambda: (a in ctr_stats(c)) == listed, 15,
                 what="a %s in ListContainerStats after %s behind crisp's back" % (
                     "listed" if listed else "not listed", what))
        if listed:
            pid = engine.inspect(a)["State"]["Pid"]
            # the new process's cgroup: its memory, and the pod's sum with it
            s = ctr_stats(c)[a]
            assert s.memory.working_set_bytes.value > 0 and s.cpu.usage_core_nano_seconds.value > 0, (what, s)
            assert pid > 0 and a in [x.attributes.id for x in pod_stats(c)[pod].linux.containers]
    # a new container: not measured yet, then measured
    b = k8s.create(pod, "behind-b", SLEEPER)
    s = wait_for(lambda: ctr_stats(c).get(b), 15, what="b's stats")
    if s.writable_layer.timestamp == 0:
        assert s.writable_layer.used_bytes.value == 0, s.writable_layer
    wait_for(lambda: ctr_stats(c)[b].writable_layer.timestamp > 0, 30, interval=0.5,
             what="b's writable layer measured (%s)" % ctr_stats(c)[b])


# ---- field by field, against a crisp without a view -------------------------------------------

@pytest.fixture
def reference(denv, engine):
    """A second crisp on the same engine with --node-view off: every list an
    engine listing, nothing kept, the same translation."""
    c = DockerCrisp(denv, engine.kind, ["--node-view", "off"], name="noview")
    c.start()
    yield c.client
    c.stop()


def status_of(c, rpc, **req):
    """The status a status call answers, or its error code (a removed one)."""
    try:
        return c.rt(rpc, **req).status
    except grpc.RpcError as e:
        return e.code()


def listed(c, pods, ids=()):
    """ListContainers and ListPodSandbox of these pods, each item whole (every
    field the kubelet reads), keyed by ID; then the ContainerStatus of the
    containers ids and the PodSandboxStatus of the pods, in that order (the
    kubelet's relist, then its status calls)."""
    ctrs = {x.id: x for x in c.rt("ListContainers").containers if x.pod_sandbox_id in pods}
    sbs = {x.id: x for x in c.rt("ListPodSandbox").items if x.id in pods}
    statuses = {i: status_of(c, "ContainerStatus", container_id=i) for i in sorted(set(ids) | set(ctrs))}
    statuses.update({p: status_of(c, "PodSandboxStatus", pod_sandbox_id=p) for p in pods})
    return ctrs, sbs, statuses


def differences(got, want):
    out = []
    for kind, g, w in (("container", got[0], want[0]), ("sandbox", got[1], want[1]),
                       ("status", got[2], want[2])):
        for i in sorted(set(g) | set(w)):
            if g.get(i) != w.get(i):
                out.append("%s %s: crisp %s / reference %s" % (kind, i[:12], g.get(i), w.get(i)))
    return out


def event_differences(reader, pod, statuses):
    """How the last event of pod a GetContainerEvents reader got differs from
    the statuses the reference answers now (a removed container's is
    NOT_FOUND there; an event of it carries it as the event says)."""
    evs = [e for e in list(reader.events) if e.pod_sandbox_status.id == pod]
    if not evs:
        return ["no event of the pod yet"]
    ev = evs[-1]
    want_pod = statuses[pod]
    if want_pod.state == v1.SANDBOX_NOTREADY and ev.pod_sandbox_status.state == v1.SANDBOX_NOTREADY:
        # podman tears a stopped sandbox's network down after its "died"
        # event, and no container event follows: the last event may carry
        # the IP it had when it died (the kubelet reads no IP of a sandbox
        # that is not ready); every other field must be equal
        want_pod = type(want_pod)()
        want_pod.CopyFrom(statuses[pod])
        want_pod.network.CopyFrom(ev.pod_sandbox_status.network)
    out = [] if ev.pod_sandbox_status == want_pod else [
        "sandbox: event %s / reference %s" % (ev.pod_sandbox_status, statuses[pod])]
    got = {s.id: s for s in ev.containers_statuses}
    want = {i: s for i, s in statuses.items() if i != pod and not isinstance(s, grpc.StatusCode)}
    if ev.container_id not in want:
        got.pop(ev.container_id, None)
    for i in sorted(set(got) | set(want)):
        if got.get(i) != want.get(i):
            out.append("container %s: event %s / reference %s" % (i[:12], got.get(i), want.get(i)))
    return out


def test_lists_equal_the_reference_field_by_field_under_churn(k8s, crisp, engine, reference):
    """Under churn through crisp and behind its back (stop, start, kill, an
    exit of its own, rm -f, a container made and removed), crisp's lists and
    statuses (from its view) equal, item by item and field by field, those
    of a crisp without a view (--node-view off: an engine listing or inspect
    per call): at once after a change made through crisp, within one event's
    latency after one made behind its back. A removed container's status is
    NOT_FOUND on both. The statuses the pod's last container event carries,
    on both (GetContainerEvents fed by the view's stream, and by a stream of
    its own on the reference), equal the reference's statuses after each
    step, within one event's latency."""
    c = k8s.c
    wait_live(crisp, c)
    readers = {"crisp": EventReader(c, deadline=600), "the reference": EventReader(reference, deadline=600)}
    try:
        churn_and_compare(k8s, engine, reference, readers)
    finally:
        for r in readers.values():
            r.close()


def churn_and_compare(k8s, engine, reference, readers):
    c = k8s.c
    pod = k8s.run_pod(labels={"churn": "field"})
    a = k8s.create(pod, "field-a", SLEEPER, labels={"which": "a"})
    b = k8s.create(pod, "field-b", ["sh", "-c", "while [ ! -f /tmp/go ]; do sleep 0.1; done; exit 5"])
    pods = {pod}
    ids = {a, b}

    def same(what, wait):
        ids.update(listed(reference, pods)[0])  # c, once created: its status asked after its removal too
        if not wait:
            d = differences(listed(c, pods, ids), listed(reference, pods, ids))
            assert not d, "%s: %s" % (what, d)
            return
        wait_for(lambda: not differences(listed(c, pods, ids), listed(reference, pods, ids)), 15,
                 interval=0.2, what="crisp's lists and statuses to equal the reference's after %s: %s" % (
                     what, differences(listed(c, pods, ids), listed(reference, pods, ids))))

    def same_events(what):
        statuses = listed(reference, pods, ids)[2]
        for name, r in readers.items():
            assert r.error is None, (name, r.error)
            wait_for(lambda: not event_differences(r, pod, statuses), 15, interval=0.2,
                     what="the last event on %s to carry the statuses after %s: %s" % (
                         name, what, event_differences(r, pod, statuses)))

    same("the start", False)
    steps = [
        ("stop a behind crisp's back", lambda: engine.post("/containers/%s/stop" % a, t=0), True),
        ("start a behind crisp's back", lambda: engine.post("/containers/%s/start" % a), True),
        ("b exits by itself", lambda: c.rt("ExecSync", container_id=b, cmd=["touch", "/tmp/go"], timeout=10),
         True),
        ("kill a behind crisp's back", lambda: engine.post("/containers/%s/kill" % a), True),
        ("a started through crisp", lambda: c.rt("StartContainer", container_id=a), False),
        ("c created through crisp", lambda: k8s.create(pod, "field-c", SLEEPER, start=False), False),
        ("b removed behind crisp's back", lambda: engine.remove(b, force=True), True),
        ("a stopped through crisp", lambda: c.rt("StopContainer", container_id=a, timeout=0), False),
        ("the sandbox stopped behind crisp's back", lambda: engine.post("/containers/%s/stop" % pod, t=0), True),
    ]
    for what, step, wait in steps:
        listed(c, pods, ids)  # the view holds the state before the step
        step()
        same(what, wait)
        same_events(what)
    c.rt("RemoveContainer", container_id=a)
    same("a removed through crisp", False)
    same_events("a removed through crisp")


# ---- one entry refreshed, not the whole listing ---------------------------------------------------

class SniffingProxy(UnixProxy):
    """A forwarder in front of the engine's API that notes the request line
    of every request crisp sends through it."""
    REQ = re.compile(rb"(GET|POST|DELETE|PUT|HEAD) (/\S*) HTTP/1\.1")

    def __init__(self, path, target):
        self.requests = []
        super().__init__(path, target)

    def client_data(self, conn, data):
        # conn["tail"]: a line not complete yet
        *lines, tail = (conn.get("tail", b"") + data).split(b"\r\n")
        conn["tail"] = tail[-65536:]
        with self.lock:
            self.requests += [urllib.parse.unquote_plus(m.group(2).decode())
                              for m in map(self.REQ.fullmatch, lines) if m]

    def taken(self):
        """The requests since the last call (of this or listings)."""
        with self.lock:
            reqs, self.requests = self.requests, []
        return reqs

    def inspects(self, reqs=None):
        """The IDs of the containers inspected since the last call (or among reqs)."""
        reqs = self.taken() if reqs is None else reqs
        return [m.group(1) for m in map(re.compile(r"/v[\d.]+/containers/([^/?]+)/json").match, reqs) if m]

    def listings(self):
        """The container listings asked since the last call: (by ID, whole)."""
        reqs = self.taken()
        ls = [r for r in reqs if "/containers/json" in r and "size=1" not in r]
        by_id = [r for r in ls if '"id"' in r]
        # a pod's own members (Stop/RemovePodSandbox list them) are not the view's
        whole = [r for r in ls if '"id"' not in r and "io.kubernetes.sandbox.id" not in r]
        return by_id, whole


class _Via:
    """The test environment with the engine's socket replaced by another."""
    def __init__(self, denv, path):
        self._denv, self._path = denv, path

    def sock(self, kind):
        return self._path

    def __getattr__(self, name):
        return getattr(self._denv, name)


@contextlib.contextmanager
def sniffed_crisp(denv, engine):
    """A crisp whose engine requests pass through a SniffingProxy."""
    proxy = SniffingProxy(os.path.join(os.path.dirname(denv.sock(engine.kind)), "sniff-%s.sock" % engine.kind),
                          denv.sock(engine.kind))
    sniffed = DockerCrisp(_Via(denv, proxy.path), engine.kind, name="sniffed")
    sniffed.start()
    try:
        wait_live(sniffed, sniffed.client)
        yield sniffed, proxy
    finally:
        sniffed.stop()
        proxy.close()


def test_statuses_are_served_from_the_view(k8s, engine, denv):
    """ContainerStatus and PodSandboxStatus asked again while nothing changed
    are answered from the view: no inspect reaches the engine. A verbose one
    always asks the engine. A change through crisp shows at once, one behind
    its back within one event's latency, and the status is then served from
    the view again."""
    with sniffed_crisp(denv, engine) as (sniffed, proxy):
        c = sniffed.client
        pod = k8s.run_pod()  # through the session's crisp: behind this one's back
        a = k8s.create(pod, "status", SLEEPER)

        def ctr():
            return c.rt("ContainerStatus", container_id=a).status

        def sbx():
            return c.rt("PodSandboxStatus", pod_sandbox_id=pod).status

        def served_again():
            first = (ctr(), sbx())
            proxy.inspects()
            again = (ctr(), sbx())
            return again == first and not proxy.inspects()

        # the pod's own events may still come (podman sends them late): each
        # one makes the next status an inspect, then it is kept again
        wait_for(served_again, 15, interval=0.2, what="statuses served without an inspect")
        for _ in range(10):
            assert ctr().state == v1.CONTAINER_RUNNING and sbx().state == v1.SANDBOX_READY
        # an event of the node may come meanwhile: one inspect each then, not 20
        assert len(proxy.inspects()) <= 2
        c.rt("ContainerStatus", container_id=a, verbose=True)
        c.rt("PodSandboxStatus", pod_sandbox_id=pod, verbose=True)
        assert sorted(proxy.inspects()) == sorted([a, pod])
        # a change through crisp: at once
        c.rt("StopContainer", container_id=a, timeout=0)
        assert ctr().state == v1.CONTAINER_EXITED
        assert a in proxy.inspects()
        # behind its back: within one event's latency
        engine.post("/containers/%s/start" % a)
        wait_for(lambda: ctr().state == v1.CONTAINER_RUNNING, 15, interval=0.2,
                 what="a started behind crisp's back to show RUNNING in its status")
        wait_for(served_again, 15, interval=0.2, what="statuses served again without an inspect")
        # the sandbox disconnected from its network behind crisp's back (a
        # network event, no container event): its IP goes within one event's latency
        assert sbx().network.ip
        nets = engine.inspect(pod)["NetworkSettings"]["Networks"]
        for name in nets:
            engine.post("/networks/%s/disconnect" % name, body={"Container": pod, "Force": True})
        wait_for(lambda: not sbx().network.ip, 15, interval=0.2,
                 what="the sandbox's IP gone from its status after a disconnect behind crisp's back (%s)"
                 % sbx().network)
        # the pod stopped and removed through crisp
        c.rt("StopPodSandbox", pod_sandbox_id=pod)
        assert sbx().state == v1.SANDBOX_NOTREADY and ctr().state == v1.CONTAINER_EXITED
        c.rt("RemovePodSandbox", pod_sandbox_id=pod)
        assert status_of(c, "PodSandboxStatus", pod_sandbox_id=pod) == grpc.StatusCode.NOT_FOUND
        assert status_of(c, "ContainerStatus", container_id=a) == grpc.StatusCode.NOT_FOUND


def test_events_take_the_pods_statuses_from_the_view(k8s, engine, denv):
    """GetContainerEvents, fed by the view's event stream, completes an event
    with the statuses the view keeps: a container stopped behind crisp's
    back makes an inspect of that container only (its status changed), not
    a listing of the pod and an inspect of the sandbox and of every
    container (what a stream of its own needs). The event still carries the
    whole pod as the status calls answer it."""
    with sniffed_crisp(denv, engine) as (sniffed, proxy):
        c = sniffed.client
        pod = k8s.run_pod()  # through the session's crisp: behind this one's back
        ids = [k8s.create(pod, "member-%d" % i, SLEEPER) for i in range(4)]
        a = ids[0]
        reader = EventReader(c)
        try:
            def statuses():
                return ([c.rt("ContainerStatus", container_id=i).status for i in ids],
                        c.rt("PodSandboxStatus", pod_sandbox_id=pod).status)

            def quiet():
                # the kubelet's relist and status calls: the listing and the
                # statuses kept, and then no engine request for a while (the
                # pod's own events, which podman sends late, all taken in)
                c.rt("ListContainers")
                first = statuses()
                proxy.taken()
                time.sleep(1)
                c.rt("ListContainers")
                return statuses() == first and not proxy.taken()

            wait_for(quiet, 30, interval=0.2, what="the pod's statuses kept and the engine left alone")
            engine.post("/containers/%s/stop" % a, t=0)
            reader.wait_types(a, [v1.CONTAINER_STOPPED_EVENT])
            time.sleep(1)  # the stop's other events (kill, stop) taken in too
            reqs = proxy.taken()
        finally:
            reader.close()
        assert reader.error is None, reader.error
        inspected = proxy.inspects(reqs)
        evs = [e for e in reader.events if e.container_id == a]
        # one inspect of a per event of a at most; nothing else asked
        assert set(inspected) <= {a} and 1 <= len(inspected) <= len(evs), (reqs, len(evs))
        assert not [r for r in reqs if "/containers/json" in r], reqs
        stopped = [e for e in evs if e.container_event_type == v1.CONTAINER_STOPPED_EVENT][-1]
        ctrs, sbx = statuses()
        assert stopped.pod_sandbox_status == sbx
        assert {s.id: s for s in stopped.containers_statuses} == {s.id: s for s in ctrs}
        assert [s.state for s in ctrs] == [v1.CONTAINER_EXITED] + [v1.CONTAINER_RUNNING] * 3


class BlockingSniffer(SniffingProxy):
    """A SniffingProxy that cuts a connection whose request holds `block`
    (the view's event stream asks for network events too; a call's own
    stream does not)."""
    block = None
    blocked = 0

    def client_data(self, conn, data):
        super().client_data(conn, data)
        if self.block and self.block in data:
            self.blocked += 1
            raise OSError("blocked by the test")


@contextlib.contextmanager
def early_crisp(denv, engine, proxy_cls=SniffingProxy):
    """A crisp whose view has not opened its event stream yet (no List
    called), behind a sniffing proxy."""
    proxy = proxy_cls(os.path.join(os.path.dirname(denv.sock(engine.kind)), "sniff-early-%s.sock" % engine.kind),
                      denv.sock(engine.kind))
    early = DockerCrisp(_Via(denv, proxy.path), engine.kind, name="early")
    early.start()
    try:
        yield early, proxy
    finally:
        early.stop()
        proxy.close()


def event_streams(reqs):
    """The engine event streams among requests: (the view's, calls' own)."""
    ev = [r for r in reqs if re.match(r"/v[\d.]+/events", r)]
    return [r for r in ev if "network" in r], [r for r in ev if "network" not in r]


def test_events_wait_for_the_views_stream(k8s, engine, denv):
    """GetContainerEvents asked before the view's event stream is open opens
    it and is fed by it (no stream of its own): the kubelet's evented PLEG
    may start before its first relist."""
    with early_crisp(denv, engine) as (early, proxy):
        c = early.client
        proxy.taken()
        reader = EventReader(c, deadline=120)
        try:
            wait_for(lambda: live_count(early) > 0, 15, what="the view's stream opened by GetContainerEvents")
            pod = k8s.run_pod()
            a = k8s.create(pod, "waited", SLEEPER)
            reader.wait_types(a, [v1.CONTAINER_CREATED_EVENT, v1.CONTAINER_STARTED_EVENT])
            engine.post("/containers/%s/stop" % a, t=0)
            reader.wait_types(a, [v1.CONTAINER_STOPPED_EVENT])
        finally:
            reader.close()
        assert reader.error is None, reader.error
        views, own = event_streams(proxy.taken())
        assert len(views) == 1 and not own, (views, own)
        stopped = [e for e in reader.of(a) if e.container_event_type == v1.CONTAINER_STOPPED_EVENT][-1]
        assert {s.id: s.state for s in stopped.containers_statuses} == {a: v1.CONTAINER_EXITED}
        assert stopped.pod_sandbox_status.id == pod and stopped.pod_sandbox_status.state == v1.SANDBOX_READY


def test_events_on_a_stream_of_their_own_take_nothing_from_the_view(k8s, engine, denv):
    """A GetContainerEvents call that started while the view's event stream
    could not open has an event stream of its own, which may be ahead of
    the view's once that opens: it must not complete an event with a
    status the view kept from before that event. Each stop and start behind
    crisp's back, with the view holding the container's status from before,
    shows in the event as the engine says it (EXITED, RUNNING), five times
    over."""
    with early_crisp(denv, engine, BlockingSniffer) as (early, proxy):
        c = early.client
        proxy.block = b"network"  # the view's stream, not a call's
        c.rt("ListContainers")
        wait_for(lambda: proxy.blocked, 15, what="the view's stream refused")
        proxy.taken()
        reader = EventReader(c, deadline=300)
        try:
            wait_for(lambda: event_streams(proxy.requests)[1], 15, what="the call's own event stream")
            proxy.block = None
            wait_live(early, c)
            pod = k8s.run_pod()
            a = k8s.create(pod, "early", SLEEPER)

            def kept(state):
                c.rt("ListContainers")
                return all(c.rt("ContainerStatus", container_id=a).status.state == state for _ in range(2))

            for i in range(5):
                for action, ev_type, state in (("stop", v1.CONTAINER_STOPPED_EVENT, v1.CONTAINER_EXITED),
                                               ("start", v1.CONTAINER_STARTED_EVENT, v1.CONTAINER_RUNNING)):
                    before = len(reader.of(a))
                    was = v1.CONTAINER_RUNNING if state == v1.CONTAINER_EXITED else v1.CONTAINER_EXITED
                    wait_for(lambda: kept(was), 15, interval=0.1,
                             what="the status before the %s kept in the view" % action)
                    engine.post("/containers/%s/%s" % (a, action), **({"t": 0} if action == "stop" else {}))
                    wait_for(lambda: any(e.container_event_type == ev_type for e in reader.of(a)[before:]), 15,
                             what="the %s event (round %d)" % (action, i))
                    ev = [e for e in reader.of(a)[before:] if e.container_event_type == ev_type][0]
                    got = {s.id: s.state for s in ev.containers_statuses}
                    assert got.get(a) == state, (action, i, got)
        finally:
            reader.close()
        assert reader.error is None, reader.error
        assert len(event_streams(proxy.taken())[1]) == 1


def test_image_fs_info_learns_the_storage_root_once(k8s, engine, denv):
    """ImageFsInfo measures the engine's storage root on crisp's host: the
    root comes from /info once while the event stream stays open, not on
    every call (/info runs runc and docker-init on dockerd, conmon and the
    OCI runtime on podman; the kubelet asks every few seconds)."""
    info = engine.info()
    root = info.get("DockerRootDir") or info["Store"]["GraphRoot"]
    with sniffed_crisp(denv, engine) as (sniffed, proxy):
        c = sniffed.client
        proxy.taken()
        for _ in range(5):
            r = c.img("ImageFsInfo")
            assert [f.fs_id.mountpoint for f in r.image_filesystems] == [root]
            assert [f.fs_id.mountpoint for f in r.container_filesystems] == [root]
            assert r.image_filesystems[0].used_bytes.value > 0
        infos = [q for q in proxy.taken() if re.match(r"/v[\d.]+/info", q)]
        assert len(infos) == 1, infos


def test_a_change_refreshes_only_its_entry(k8s, engine, denv):
    """After a change to one container, behind crisp's back or through it, the
    next List asks the engine for that container's entry only (a listing
    filtered by its ID), not for a whole listing, and shows the change at
    once (through crisp) or within one event's latency (behind its back); a
    pod stopped and removed through crisp, the same for its sandbox and its
    containers."""
    with sniffed_crisp(denv, engine) as (sniffed, proxy):
        c = sniffed.client
        pod = k8s.run_pod()  # through the session's crisp: behind this one's back
        a = k8s.create(pod, "patched", SLEEPER)
        wait_for(lambda: crisp_ctrs(c, pod) == {a: v1.CONTAINER_RUNNING}, 15, what="a running in the view")
        c.rt("ListPodSandbox")
        proxy.listings()
        engine.post("/containers/%s/stop" % a, t=0)
        wait_for(lambda: crisp_ctrs(c, pod) == {a: v1.CONTAINER_EXITED}, 15,
                 what="a stopped behind crisp's back to show EXITED")
        by_id, whole = proxy.listings()
        assert any(a in r for r in by_id), (by_id, whole)
        # an engine may list a change a moment after its event (dockerd 20.10's
        # "die"): then one whole listing is the fallback, never more
        assert len(whole) <= 1, whole
        for what, rpc, state in (("started", "StartContainer", v1.CONTAINER_RUNNING),
                                 ("stopped", "StopContainer", v1.CONTAINER_EXITED)):
            args = {"timeout": 0} if rpc == "StopContainer" else {}
            c.rt(rpc, container_id=a, **args)
            assert crisp_ctrs(c, pod) == {a: state}, what
            by_id, whole = proxy.listings()
            # podman sends its events a few hundred ms late: the stop's may
            # come after this start (and say "not running"), and then the List
            # takes one whole listing until the start's own event comes
            assert any(a in r for r in by_id) and len(whole) <= 1, (what, by_id, whole)
        assert crisp_ctrs(c, pod) == engine_ctrs(engine, pod)
        assert crisp_pods(c, [pod]) == {pod: v1.SANDBOX_READY}
        by_id, whole = proxy.listings()
        assert len(whole) <= 2, whole
        # a pod stopped and removed through crisp: its sandbox and containers
        c.rt("StartContainer", container_id=a)
        c.rt("StopPodSandbox", pod_sandbox_id=pod)
        assert crisp_pods(c, [pod]) == {pod: v1.SANDBOX_NOTREADY}
        assert crisp_ctrs(c, pod) == {a: v1.CONTAINER_EXITED} == engine_ctrs(engine, pod)
        by_id, whole = proxy.listings()
        assert any(pod in r for r in by_id) and any(a in r for r in by_id) and len(whole) <= 2, (by_id, whole)
        c.rt("RemovePodSandbox", pod_sandbox_id=pod)
        assert crisp_pods(c, [pod]) == {} and crisp_ctrs(c, pod) == {}
        by_id, whole = proxy.listings()
        assert any(pod in r for r in by_id) and len(whole) <= 2, (by_id, whole)
