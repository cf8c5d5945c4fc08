"""Pod sandboxes on the engine: RunPodSandbox (infra container owning the pod's
network/IPC/UTS namespaces), PodSandboxStatus, ListPodSandbox filters,
Stop/Remove (idempotent, taking the pod's containers with them), and the
engine-side metadata in cri-dockerd's scheme."""
import ipaddress
import os
import socket
import time

import grpc
from conftest import ALT_HANDLER, SLEEPER, code_of, engine_container_ids, remove_k8s_containers, v1, wait_for
from enginelib import (ANNOTATION_PREFIX, SANDBOX_ID_LABEL, TYPE_LABEL, container_name, sandbox_name)


def subnet_of(denv, kind):
    return ipaddress.ip_network(denv["%s_SUBNET" % kind.upper()])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def engine_sandbox(engine, pod_id):
    info = engine.try_inspect(pod_id)
    assert info is not None, "the engine has no container %s (the pod sandbox id)" % pod_id
    return info


def test_pod_lifecycle(k8s, engine, denv):
    dns = v1.DNSConfig(servers=["10.9.8.7", "10.9.8.6"], searches=["crisp.example", "svc.example"],
                       options=["ndots:5"])
    cfg = k8s.pod_config(hostname="crisp-pod-host", dns=dns,
                         labels={"app": "lifecycle", "tier": "test"},
                         annotations={"crisp-test/annotation": "yes", "kubernetes.io/config.source": "api"})
    t0 = time.time()
    pod = k8s.run_pod(cfg)

    st = k8s.pod_status(pod)
    assert st.id == pod
    assert st.metadata == cfg.metadata
    assert st.state == v1.SANDBOX_READY
    assert t0 - 5 < st.created_at / 1e9 < time.time() + 5, st.created_at
    assert st.network.ip, "no pod IP for a pod on the engine's network: %s" % st
    assert ipaddress.ip_address(st.network.ip) in subnet_of(denv, engine.kind), \
        "pod IP %s outside the engine's subnet %s" % (st.network.ip, subnet_of(denv, engine.kind))
    ns = st.linux.namespaces.options
    assert (ns.network, ns.pid, ns.ipc) == (v1.POD, v1.CONTAINER, v1.POD), ns
    assert dict(st.labels) == dict(cfg.labels), st.labels
    assert dict(st.annotations) == dict(cfg.annotations), st.annotations

    # engine side: cri-dockerd's names and labels
    sb = engine_sandbox(engine, pod)
    md = cfg.metadata
    assert sb["Name"].lstrip("/") == sandbox_name(md.name, md.namespace, md.uid, md.attempt), sb["Name"]
    labels = sb["Config"]["Labels"]
    assert labels.get(TYPE_LABEL) == "podsandbox", labels
    for k, v in cfg.labels.items():
        assert labels.get(k) == v, (k, labels)
    for k, v in cfg.annotations.items():
        assert labels.get(ANNOTATION_PREFIX + k) == v, (k, labels)
    assert sb["Config"]["Image"] in (denv.PAUSE_IMAGE,) or sb["Image"] == engine.image(denv.PAUSE_IMAGE)["Id"]
    assert sb["State"]["Running"]

    # a container of the pod sees the pod's hostname, DNS config and network
    cid = k8s.create(pod, "probe", SLEEPER)
    rc, out = engine.exec_run(cid, ["hostname"])
    assert (rc, out.decode().strip()) == (0, "crisp-pod-host")
    rc, out = engine.exec_run(cid, ["cat", "/etc/resolv.conf"])
    resolv = out.decode()
    for s in dns.servers:
        assert "nameserver %s" % s in resolv, resolv
    assert "crisp.example" in resolv and "svc.example" in resolv, resolv
    assert "ndots:5" in resolv, resolv
    rc, out = engine.exec_run(cid, ["ip", "-4", "-o", "addr", "show"])
    assert st.network.ip in out.decode(), "the container is not in the pod's network namespace: %s" % out

    # list filters
    def ids(**flt):
        return [p.id for p in k8s.c.rt("ListPodSandbox", filter=v1.PodSandboxFilter(**flt)).items]
    assert ids(id=pod) == [pod]
    assert pod in ids(state=v1.PodSandboxStateValue(state=v1.SANDBOX_READY))
    assert ids(label_selector={"crisp-test/uid": md.uid}) == [pod]
    assert ids(label_selector={"crisp-test/uid": md.uid, "app": "lifecycle"}) == [pod]
    assert ids(label_selector={"crisp-test/uid": md.uid, "app": "other"}) == []
    item = [p for p in k8s.c.rt("ListPodSandbox").items if p.id == pod]
    assert len(item) == 1
    assert item[0].metadata == md and item[0].state == v1.SANDBOX_READY
    assert dict(item[0].labels) == dict(cfg.labels) and dict(item[0].annotations) == dict(cfg.annotations)
    assert item[0].created_at == st.created_at

    # stop: idempotent, stops the pod's containers
    k8s.c.rt("StopPodSandbox", pod_sandbox_id=pod)
    assert k8s.pod_status(pod).state == v1.SANDBOX_NOTREADY
    assert k8s.status(cid).state == v1.CONTAINER_EXITED
    assert not engine.inspect(cid)["State"]["Running"]
    assert not engine.inspect(pod)["State"]["Running"]
    k8s.c.rt("StopPodSandbox", pod_sandbox_id=pod)
    assert pod in ids(state=v1.PodSandboxStateValue(state=v1.SANDBOX_NOTREADY))
    assert pod not in ids(state=v1.PodSandboxStateValue(state=v1.SANDBOX_READY))

    # remove: idempotent, removes the pod's containers
    k8s.c.rt("RemovePodSandbox", pod_sandbox_id=pod)
    assert engine.try_inspect(pod) is None
    assert engine.try_inspect(cid) is None
    assert not engine.containers(labels={SANDBOX_ID_LABEL: pod})
    code, _ = code_of(k8s.c.rt, "PodSandboxStatus", pod_sandbox_id=pod)
    assert code == grpc.StatusCode.NOT_FOUND
    assert ids(id=pod) == []
    k8s.c.rt("RemovePodSandbox", pod_sandbox_id=pod)


def test_remove_running_pod_removes_containers(k8s, engine):
    """RemovePodSandbox without a Stop first (the kubelet may do that)."""
    pod = k8s.run_pod()
    c1 = k8s.create(pod, "one", SLEEPER)
    c2 = k8s.create(pod, "two", SLEEPER)
    c3 = k8s.create(pod, "never-started", ["true"], start=False)
    k8s.c.rt("RemovePodSandbox", pod_sandbox_id=pod, deadline=60)
    for cid in (pod, c1, c2, c3):
        assert engine.try_inspect(cid) is None, "%s still in the engine" % cid[:12]
    assert not k8s.c.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=pod)).containers


def test_pod_status_verbose(k8s):
    pod = k8s.run_pod()
    r = k8s.c.rt("PodSandboxStatus", pod_sandbox_id=pod, verbose=True)
    assert r.status.id == pod
    assert r.info, "PodSandboxStatus(verbose) carries no engine info"


def test_pause_image_pulled_when_missing(k8s, engine, denv):
    # no pod may be using it: the k8s fixtures remove everything after each test
    remove_k8s_containers(engine)
    engine.remove_image(denv.PAUSE_IMAGE, force=True)
    assert engine.image(denv.PAUSE_IMAGE) is None
    pod = k8s.run_pod()
    assert k8s.pod_status(pod).state == v1.SANDBOX_READY
    assert engine.image(denv.PAUSE_IMAGE) is not None


def test_port_mapping(k8s, engine):
    host_port = free_port()
    cfg = k8s.pod_config(ports=[v1.PortMapping(protocol=v1.TCP, container_port=8080, host_port=host_port,
                                                host_ip="127.0.0.1")])
    pod = k8s.run_pod(cfg)
    sb = engine_sandbox(engine, pod)
    binds = sb["HostConfig"].get("PortBindings") or {}
    assert "8080/tcp" in binds, binds
    assert [b["HostPort"] for b in binds["8080/tcp"]] == [str(host_port)], binds
    k8s.create(pod, "web", ["sh", "-c", "mkdir -p /www && echo crisp-port-ok > /www/index.html && "
                                        "exec httpd -f -p 8080 -h /www"])

    def fetch():
        try:
            s = socket.create_connection(("127.0.0.1", host_port), timeout=2)
            s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
            s.close()
            return b"crisp-port-ok" in data
        except OSError:
            return False
    wait_for(fetch, timeout=10, what="127.0.0.1:%d to reach the pod's port 8080" % host_port)


def same_ns(pid, ns):
    return os.readlink("/proc/%d/ns/%s" % (pid, ns)) == os.readlink("/proc/self/ns/%s" % ns)


def test_host_namespaces(k8s, engine):
    cfg = k8s.pod_config(network=v1.NODE, pid=v1.NODE, ipc=v1.NODE, hostname="")
    pod = k8s.run_pod(cfg)
    st = k8s.pod_status(pod)
    ns = st.linux.namespaces.options
    assert (ns.network, ns.pid, ns.ipc) == (v1.NODE, v1.NODE, v1.NODE), ns
    sb = engine_sandbox(engine, pod)
    assert sb["HostConfig"]["NetworkMode"] == "host", sb["HostConfig"]["NetworkMode"]
    if engine.kind == "docker":  # podman 4.3's inspect says "shareable" for a host-IPC container
        assert sb["HostConfig"]["IpcMode"] == "host", sb["HostConfig"]["IpcMode"]
    cid = k8s.create(pod, "hostns", SLEEPER)
    for x in (pod, cid):
        pid = engine.inspect(x)["State"]["Pid"]
        for n in ("net", "ipc", "pid"):
            assert same_ns(pid, n), "%s of %s is not the host's" % (n, "the sandbox" if x == pod else "the container")
    rc, out = engine.exec_run(cid, ["hostname"])
    assert out.decode().strip() == socket.gethostname(), out
    # and a pod with its own namespaces does not share the host's
    pod2 = k8s.run_pod()
    cid2 = k8s.create(pod2, "podns", SLEEPER)
    pid = engine.inspect(cid2)["State"]["Pid"]
    for n in ("net", "ipc", "pid"):
        assert not same_ns(pid, n), "%s of a POD-namespaced container is the host's" % n
    spid = engine.inspect(pod2)["State"]["Pid"]
    # (UTS: Docker copies the sandbox's hostname into a new UTS namespace; the
    # hostname itself is checked in test_pod_lifecycle)
    for n in ("net", "ipc"):
        assert os.readlink("/proc/%d/ns/%s" % (pid, n)) == os.readlink("/proc/%d/ns/%s" % (spid, n)), \
            "the container does not share the sandbox's %s namespace" % n
    assert os.readlink("/proc/%d/ns/pid" % pid) != os.readlink("/proc/%d/ns/pid" % spid), \
        "pid CONTAINER: the container should have its own pid namespace"


def test_cgroup_parent_and_sysctls(k8s, engine):
    cfg = k8s.pod_config(sysctls={"net.ipv4.ip_unprivileged_port_start": "0"})
    pod = k8s.run_pod(cfg)
    hc = engine_sandbox(engine, pod)["HostConfig"]
    if engine.info()["CgroupDriver"] == "cgroupfs":
        assert hc["CgroupParent"] == cfg.linux.cgroup_parent, hc["CgroupParent"]
    if engine.kind == "docker":  # podman 4.3 applies Sysctls but its inspect shows none
        assert (hc.get("Sysctls") or {}).get("net.ipv4.ip_unprivileged_port_start") == "0", hc.get("Sysctls")
    cid = k8s.create(pod, "sysctl", SLEEPER)
    rc, out = engine.exec_run(cid, ["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"])
    assert out.decode().strip() == "0", out


def compat_api_ignores_runtime(engine, denv):
    """podman 4.3's compat create ignores HostConfig.Runtime (its libpod API
    takes oci_runtime): probe the engine itself."""
    cid = engine.create({"Image": denv.BUSYBOX_IMAGE, "Cmd": ["true"],
                         "HostConfig": {"Runtime": denv.ALT_RUNTIME}})
    try:
        return engine.runtime_of(cid) != denv.ALT_RUNTIME
    finally:
        engine.remove(cid)


def test_runtime_handler(k8s, engine, denv):
    if compat_api_ignores_runtime(engine, denv):
        # podman 4.3: the pod would silently run under the default runtime;
        # crisp must refuse instead, and leave nothing behind.
        before = engine_container_ids(engine)
        code, details = code_of(k8s.run_pod, runtime_handler=ALT_HANDLER)
        assert code == grpc.StatusCode.FAILED_PRECONDITION, (code, details)
        assert "runtime" in details, details
        assert engine_container_ids(engine) == before
        return
    pod = k8s.run_pod(runtime_handler=ALT_HANDLER)
    assert engine.runtime_of(pod) == denv.ALT_RUNTIME
    st = k8s.pod_status(pod)
    assert st.runtime_handler == ALT_HANDLER, st
    listed = [p for p in k8s.c.rt("ListPodSandbox", filter=v1.PodSandboxFilter(id=pod)).items]
    assert listed and listed[0].runtime_handler == ALT_HANDLER, listed
    # the pod's containers run with the pod's runtime
    cid = k8s.create(pod, "alt", SLEEPER)
    assert engine.runtime_of(cid) == denv.ALT_RUNTIME
    # and the default handler maps to the engine's default runtime
    pod2 = k8s.run_pod()
    assert engine.runtime_of(pod2) == denv.DEFAULT_RUNTIME
    assert k8s.pod_status(pod2).runtime_handler == ""


def test_unknown_runtime_handler(k8s, engine):
    before = engine_container_ids(engine)
    code, details = code_of(k8s.c.rt, "RunPodSandbox", config=k8s.pod_config(), runtime_handler="no-such-handler")
    assert code not in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE), (code, details)
    assert "no-such-handler" in (details or ""), details
    assert engine_container_ids(engine) == before


def test_list_pod_sandbox_filters(k8s):
    a = k8s.run_pod(labels={"group": "x", "which": "a"})
    b = k8s.run_pod(labels={"group": "x", "which": "b"})
    c = k8s.run_pod(labels={"group": "y", "which": "c"})
    k8s.c.rt("StopPodSandbox", pod_sandbox_id=c)

    def ids(**flt):
        return sorted(p.id for p in k8s.c.rt("ListPodSandbox", filter=v1.PodSandboxFilter(**flt)).items)
    ready = v1.PodSandboxStateValue(state=v1.SANDBOX_READY)
    notready = v1.PodSandboxStateValue(state=v1.SANDBOX_NOTREADY)
    assert ids(label_selector={"group": "x"}) == sorted([a, b])
    assert ids(label_selector={"group": "x", "which": "b"}) == [b]
    assert ids(label_selector={"group": "y"}, state=ready) == []
    assert ids(label_selector={"group": "y"}, state=notready) == [c]
    assert ids(id=a, label_selector={"group": "x"}) == [a]
    assert ids(id=a, label_selector={"group": "y"}) == []
    assert ids(id=c, state=ready) == []
    everything = ids()
    assert {a, b, c} <= set(everything)
    # the streaming variant gives the same answer
    streamed = []
    for msg in k8s.c.rt_stream("StreamPodSandboxes", filter=v1.PodSandboxFilter(label_selector={"group": "x"}),
                               deadline=20):
        streamed.extend(p.id for p in msg.pod_sandboxes)
    assert sorted(streamed) == sorted([a, b])


def test_engine_names_for_containers(k8s, engine):
    cfg = k8s.pod_config()
    pod = k8s.run_pod(cfg)
    cid = k8s.create(pod, "named", SLEEPER, attempt=2)
    info = engine.inspect(cid)
    md = cfg.metadata
    assert info["Name"].lstrip("/") == container_name("named", md.name, md.namespace, md.uid, 2), info["Name"]
    labels = info["Config"]["Labels"]
    assert labels.get(TYPE_LABEL) == "container"
    assert labels.get(SANDBOX_ID_LABEL) == pod
    # cri-dockerd: the sandbox's full log directory joined with the container's log_path
    assert labels.get("io.kubernetes.container.logpath") == k8s.log_path(cid), labels
    assert labels.get(ANNOTATION_PREFIX + "crisp-test/container") == "named"
    hc = info["HostConfig"]
    assert hc["NetworkMode"] == "container:" + pod, hc["NetworkMode"]
    assert hc["IpcMode"] == "container:" + pod, hc["IpcMode"]
