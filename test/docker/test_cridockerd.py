"""Pods made by cri-dockerd (here: made directly through the engine API with
cri-dockerd's names and labels, as a node moving from cri-dockerd has them)
are listed through crisp with the right metadata and can be managed."""
import ipaddress
import os
import time
import uuid

import grpc

from conftest import SLEEP_LOOP, WORK, code_of, v1, wait_for
from enginelib import (ANNOTATION_PREFIX, CONTAINER_NAME_LABEL, LOGPATH_LABEL, SANDBOX_ID_LABEL, TYPE_LABEL,
                       container_name, sandbox_name)


def make_cri_dockerd_pod(engine, denv, name, ns, uid, app_label):
    """What cri-dockerd's RunPodSandbox + CreateContainer + StartContainer leave
    in the engine (core/sandbox_helpers.go, core/container_create.go)."""
    logdir = os.path.join(WORK, "pod-logs", "%s_%s_%s" % (ns, name, uid))
    os.makedirs(os.path.join(logdir, "app"), exist_ok=True)
    os.makedirs(os.path.join(logdir, "init"), exist_ok=True)
    kube = {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.uid": uid}
    pod_labels = dict(kube, app=app_label, **{"crisp-test": "1", "crisp-test/uid": uid})
    pod_ann = {"kubernetes.io/config.seen": "2024-01-01T00:00:00Z", "kubernetes.io/config.source": "api"}
    labels = dict(pod_labels)
    labels.update({ANNOTATION_PREFIX + k: v for k, v in pod_ann.items()})
    labels[TYPE_LABEL] = "podsandbox"
    labels[CONTAINER_NAME_LABEL] = "POD"
    sb = engine.create({
        "Hostname": name,
        "Image": denv.PAUSE_IMAGE,
        "Labels": labels,
        "HostConfig": {"IpcMode": "shareable", "OomScoreAdj": -998, "CpuShares": 2,
                       "CgroupParent": "/crisp-test/pod" + uid},
    }, name=sandbox_name(name, ns, uid, 0))
    engine.start(sb)

    def container(cname, attempt, cmd, start=True):
        logpath = os.path.join(logdir, cname, "%d.log" % attempt)
        cl = dict(kube)
        cl[CONTAINER_NAME_LABEL] = cname
        cl["crisp-test"] = "1"
        cl["crisp-test/uid"] = uid
        ann = {"io.kubernetes.container.hash": "c0ffee", "io.kubernetes.container.restartCount": str(attempt),
               "io.kubernetes.container.terminationMessagePath": "/dev/termination-log"}
        cl.update({ANNOTATION_PREFIX + k: v for k, v in ann.items()})
        cl[TYPE_LABEL] = "container"
        cl[LOGPATH_LABEL] = logpath
        cl[SANDBOX_ID_LABEL] = sb
        cid = engine.create({
            "Image": denv.BUSYBOX_IMAGE,
            "Entrypoint": cmd,
            "Labels": cl,
            "Healthcheck": {"Test": ["NONE"]},
            "HostConfig": {"NetworkMode": "container:" + sb, "IpcMode": "container:" + sb,
                           "UTSMode": "container:" + sb if engine.kind == "podman" else "",
                           "RestartPolicy": {"Name": "no"}, "CgroupParent": "/crisp-test/pod" + uid},
        }, name=container_name(cname, name, ns, uid, attempt))
        if start:
            engine.start(cid)
            # cri-dockerd: a symlink at the kubelet's log path to the engine's log file
            real = engine.inspect(cid).get("LogPath")
            if real and not os.path.lexists(logpath):
                os.symlink(real, logpath)
        return cid, logpath, ann

    init, _, _ = container("init", 0, ["sh", "-c", "echo init done"])
    app, app_log, app_ann = container("app", 1, ["sh", "-c", "echo legacy-running; " + SLEEP_LOOP])
    return sb, init, app, app_log, pod_labels, pod_ann, app_ann


def test_cri_dockerd_pod_listed_and_managed(cri, engine, denv):
    name, ns, uid = "legacy-web", "legacy-ns", uuid.uuid4().hex[:12]
    app_label = "legacy-" + uid
    sb, init, app, app_log, pod_labels, pod_ann, app_ann = make_cri_dockerd_pod(engine, denv, name, ns, uid,
                                                                                  app_label)
    try:
        engine.wait_state(init, lambda s: not s["Running"], what="exited")

        # the pod, through crisp
        items = cri.rt("ListPodSandbox", filter=v1.PodSandboxFilter(label_selector={"app": app_label})).items
        assert [p.id for p in items] == [sb], items
        p = items[0]
        assert (p.metadata.name, p.metadata.namespace, p.metadata.uid, p.metadata.attempt) == (name, ns, uid, 0)
        assert p.state == v1.SANDBOX_READY
        for k, v in pod_labels.items():
            assert p.labels.get(k) == v, (k, dict(p.labels))
        assert TYPE_LABEL not in p.labels, dict(p.labels)
        assert not [k for k in p.labels if k.startswith(ANNOTATION_PREFIX)], dict(p.labels)
        for k, v in pod_ann.items():
            assert p.annotations.get(k) == v, (k, dict(p.annotations))
        st = cri.rt("PodSandboxStatus", pod_sandbox_id=sb).status
        assert st.state == v1.SANDBOX_READY and st.metadata == p.metadata
        assert st.network.ip and ipaddress.ip_address(st.network.ip) in \
            ipaddress.ip_network(denv["%s_SUBNET" % engine.kind.upper()]), st.network

        # its containers
        ctrs = {c.metadata.name: c for c in
                cri.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=sb)).containers}
        assert set(ctrs) == {"init", "app"}, ctrs
        assert ctrs["app"].id == app and ctrs["app"].metadata.attempt == 1
        assert ctrs["app"].state == v1.CONTAINER_RUNNING
        assert ctrs["init"].id == init and ctrs["init"].state == v1.CONTAINER_EXITED
        assert ctrs["app"].pod_sandbox_id == sb
        assert ctrs["app"].labels.get(CONTAINER_NAME_LABEL) == "app"
        for k, v in app_ann.items():
            assert ctrs["app"].annotations.get(k) == v, (k, dict(ctrs["app"].annotations))
        for internal in (TYPE_LABEL, SANDBOX_ID_LABEL, LOGPATH_LABEL):
            assert internal not in ctrs["app"].labels, dict(ctrs["app"].labels)
        cs = cri.rt("ContainerStatus", container_id=app).status
        assert cs.log_path == app_log, cs.log_path
        assert cs.state == v1.CONTAINER_RUNNING and cs.started_at > 0
        ist = cri.rt("ContainerStatus", container_id=init).status
        assert ist.exit_code == 0 and ist.reason == "Completed", ist
        r = cri.rt("ExecSync", container_id=app, cmd=["echo", "managed"], timeout=10)
        assert r.stdout == b"managed\n"

        # managed through crisp: stop takes the containers down, remove removes all
        cri.rt("StopPodSandbox", pod_sandbox_id=sb)
        assert cri.rt("ContainerStatus", container_id=app).status.state == v1.CONTAINER_EXITED
        assert cri.rt("PodSandboxStatus", pod_sandbox_id=sb).status.state == v1.SANDBOX_NOTREADY
        cri.rt("RemovePodSandbox", pod_sandbox_id=sb)
        for x in (sb, init, app):
            assert engine.try_inspect(x) is None, "%s still in the engine" % x[:12]
        code, _ = code_of(cri.rt, "PodSandboxStatus", pod_sandbox_id=sb)
        assert code == grpc.StatusCode.NOT_FOUND
    finally:
        for x in (app, init, sb):
            try:
                engine.remove(x, force=True)
            except Exception:  # noqa: BLE001
                pass


def test_cri_dockerd_container_removed_through_crisp(cri, engine, denv):
    name, ns, uid = "legacy-one", "legacy-ns", uuid.uuid4().hex[:12]
    sb, init, app, _, _, _, _ = make_cri_dockerd_pod(engine, denv, name, ns, uid, "legacy-" + uid)
    try:
        t = time.time()
        cri.rt("StopContainer", container_id=app, timeout=1)
        assert time.time() - t < 10
        cri.rt("RemoveContainer", container_id=app)
        assert engine.try_inspect(app) is None
        left = [c.id for c in cri.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=sb)).containers]
        assert left == [init], left
        wait_for(lambda: engine.try_inspect(sb)["State"]["Running"], timeout=5, what="the sandbox to keep running")
    finally:
        for x in (app, init, sb):
            try:
                engine.remove(x, force=True)
            except Exception:  # noqa: BLE001
                pass
