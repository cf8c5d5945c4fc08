#!/usr/bin/python3
"""Records real engine answers for the Docker backend's unit tests
(test/unit/test_docker_decode.c, test_docker_encode.c) into
test/unit/data/<engine>/.

    sudo test/env/docker-up.sh            # the suite's dockerd + podman
    sudo /usr/bin/python3 test/docker/record_fixtures.py [docker] [podman]

Pods and containers are made through crisp (CRISP_BIN, default build/crisp),
so names and labels are the ones crisp writes; the answers are then read
straight from the engine's API and written as they came (pretty-printed).
Everything the recorder makes is removed at the end. The unit tests check
what they decode against the values below (pod names, labels, exit codes)
and against the recorded JSON itself, so a re-recording needs no test edit.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "test", "lib"))

from crilib import CRIClient, v1  # noqa: E402
from crisptest import CRISP_BIN, SLEEP_LOOP, WORK, read_env  # noqa: E402
from enginelib import Engine  # noqa: E402

OUT = os.path.join(REPO, "test", "unit", "data")

# what the unit tests expect (keep in step with test/unit/docker_fixtures.h)
POD = dict(name="fixture-pod", namespace="crisp-fixtures", uid="f1x7ure0-0000-4000-8000-000000000001")
HOSTNET_POD = dict(name="fixture-hostnet", namespace="crisp-fixtures",
                   uid="f1x7ure0-0000-4000-8000-000000000002")
CONTAINERS = {  # name -> command
    "running": ["sh", "-c", SLEEP_LOOP],
    "exited": ["sh", "-c", "echo done; exit 0"],
    "failed": ["sh", "-c", "echo failing >&2; exit 3"],
    "oom": ["sh", "-c", "tail /dev/zero"],
}
OOM_LIMIT = 16 << 20


def start_crisp(env, kind, sock):
    log = open(os.path.join(WORK, "logs", "crisp-record-%s.log" % kind), "ab")
    p = subprocess.Popen([CRISP_BIN, "--listen", "unix://" + sock,
                          "--backend", "docker:unix://" + env["%s_SOCK" % kind.upper()],
                          "--pod-infra-image", env["PAUSE_IMAGE"],
                          "--runtime-handler", "alt=%s" % env["ALT_RUNTIME"]],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.time() + 15
    while time.time() < deadline:
        if os.path.exists(sock):
            c = CRIClient("unix://" + sock, "record")
            try:
                c.rt("Version", deadline=5)
                return p, c
            except Exception:  # noqa: BLE001 (not ready yet)
                c.close()
        time.sleep(0.1)
    p.kill()
    raise SystemExit("crisp did not come up in front of %s" % kind)


def pod_config(md, logdir, host=False):
    ns_mode = v1.NODE if host else v1.POD
    return v1.PodSandboxConfig(
        metadata=v1.PodSandboxMetadata(attempt=1, **md),
        hostname="" if host else "fixture-host",
        log_directory=logdir,
        dns_config=None if host else v1.DNSConfig(servers=["10.0.0.10"], searches=["svc.local"],
                                                   options=["ndots:5"]),
        port_mappings=[] if host else [v1.PortMapping(protocol=v1.TCP, container_port=8080)],
        labels={"app": "fixture", "io.kubernetes.pod.name": md["name"],
                "io.kubernetes.pod.namespace": md["namespace"], "io.kubernetes.pod.uid": md["uid"]},
        annotations={"fixture/annotation": "yes", "kubernetes.io/config.source": "api"},
        linux=v1.LinuxPodSandboxConfig(
            cgroup_parent="/crisp-test/pod%s" % md["uid"][-4:],
            security_context=v1.LinuxSandboxSecurityContext(
                namespace_options=v1.NamespaceOption(network=ns_mode,
                                                     pid=v1.NODE if host else v1.CONTAINER,
                                                     ipc=ns_mode))))


def container_config(env, name, cmd, mount_dir):
    res = v1.LinuxContainerResources(cpu_shares=256,
                                     memory_limit_in_bytes=OOM_LIMIT if name == "oom" else 0)
    return v1.ContainerConfig(
        metadata=v1.ContainerMetadata(name=name, attempt=2),
        image=v1.ImageSpec(image=env["BUSYBOX_IMAGE"]),
        command=cmd,
        envs=[v1.KeyValue(key="FIXTURE", value=b"1")],
        mounts=[v1.Mount(container_path="/data", host_path=mount_dir, readonly=True)],
        labels={"io.kubernetes.container.name": name, "fixture/container": name,
                "io.kubernetes.pod.name": POD["name"], "io.kubernetes.pod.namespace": POD["namespace"],
                "io.kubernetes.pod.uid": POD["uid"]},
        annotations={"io.kubernetes.container.restartCount": "2", "fixture/kind": name},
        log_path="%s/2.log" % name,
        linux=v1.LinuxContainerConfig(resources=res))


def dump(kind, name, data):
    d = os.path.join(OUT, kind)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, name)
    with open(path, "w") as f:
        if isinstance(data, str):
            f.write(data)
        else:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
    print("  %s" % os.path.relpath(path, REPO))


def label_filter(*kv):
    return {"label": list(kv)}


def wait_exited(e, cid, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = e.inspect(cid)["State"]
        if not st["Running"] and st["Status"] != "created":
            return
        time.sleep(0.1)
    raise SystemExit("container %s did not exit" % cid[:12])


def record(env, kind):
    e = Engine(kind, env["%s_SOCK" % kind.upper()])
    tmp = tempfile.mkdtemp(prefix="crisp-fixtures-")
    sock = os.path.join(tmp, "crisp.sock")
    proc, c = start_crisp(env, kind, sock)
    made = []
    events = None
    try:
        c.img("PullImage", image=v1.ImageSpec(image=env["BUSYBOX_IMAGE"]))
        # the live stream, as crisp reads it (podman answers nothing for since/until)
        events = subprocess.Popen(
            ["curl", "-sN", "--unix-socket", e.sock,
             "http://docker/v1.41/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D"],
            stdout=subprocess.PIPE)
        time.sleep(0.5)
        logdir = os.path.join(tmp, "logs")
        os.makedirs(logdir)
        pod_cfg = pod_config(POD, logdir)
        pod = c.rt("RunPodSandbox", config=pod_cfg).pod_sandbox_id
        made.append(pod)
        ids = {}
        for name, cmd in CONTAINERS.items():
            os.makedirs(os.path.join(logdir, name), exist_ok=True)
            cfg = container_config(env, name, cmd, tmp)
            ids[name] = c.rt("CreateContainer", pod_sandbox_id=pod, config=cfg,
                             sandbox_config=pod_cfg).container_id
            c.rt("StartContainer", container_id=ids[name])
        for name in ("exited", "failed", "oom"):
            wait_exited(e, ids[name])
        host_cfg = pod_config(HOSTNET_POD, logdir, host=True)
        hostpod = c.rt("RunPodSandbox", config=host_cfg).pod_sandbox_id
        made.append(hostpod)
        sb_sel = "io.kubernetes.sandbox.id=%s" % pod
        print("%s:" % kind)
        dump(kind, "version.json", e.get("/version"))
        dump(kind, "info.json", e.get("/info"))
        dump(kind, "sandbox_inspect.json", e.inspect(pod))
        dump(kind, "sandbox_hostnet_inspect.json", e.inspect(hostpod))
        for name, cid in ids.items():
            dump(kind, "container_%s_inspect.json" % name, e.inspect(cid))
        dump(kind, "container_running_inspect_size.json",
             e.get("/containers/%s/json" % ids["running"], size=1))
        dump(kind, "sandboxes_list.json", e.get("/containers/json", all=1, filters=label_filter(
            "io.kubernetes.docker.type=podsandbox", "app=fixture")))
        dump(kind, "containers_list.json", e.get("/containers/json", all=1, filters=label_filter(
            "io.kubernetes.docker.type=container", sb_sel)))
        dump(kind, "containers_list_size.json", e.get("/containers/json", size=1, filters=label_filter(
            "io.kubernetes.docker.type=container", sb_sel)))
        dump(kind, "container_stats.json",
             e.get("/containers/%s/stats" % ids["running"], stream="false", **{"one-shot": "true"}))
        # podman 4.3's reference filter does not match a full reference: filtered here
        mine = {env["BUSYBOX_IMAGE"], env["PAUSE_IMAGE"]}
        dump(kind, "images_list.json", [i for i in e.get("/images/json")
                                        if mine & set(i.get("RepoTags") or [])])
        dump(kind, "image_inspect.json", e.get("/images/%s/json" % env["BUSYBOX_IMAGE"]))
        status, body = e.request("POST", "/images/create", raw=True, timeout=60,
                                 fromImage=env["REGISTRY"] + "/crisp-test/no-such-image", tag="1")
        dump(kind, "pull_missing.txt", "HTTP %d\n%s" % (status, body.decode(errors="replace")))
        c.rt("StopPodSandbox", pod_sandbox_id=pod)
        dump(kind, "sandbox_stopped_inspect.json", e.inspect(pod))
        for p in made:
            c.rt("RemovePodSandbox", pod_sandbox_id=p)
        made = []
        time.sleep(1.5)
        events.terminate()
        lines = [l for l in events.communicate()[0].decode().splitlines() if POD["uid"] in l]
        dump(kind, "events.jsonl", "\n".join(lines) + "\n")
    finally:
        if events is not None and events.poll() is None:
            events.kill()
            events.wait()
        for p in made:
            for m in ("StopPodSandbox", "RemovePodSandbox"):
                try:
                    c.rt(m, pod_sandbox_id=p)
                except Exception:  # noqa: BLE001 (best effort)
                    pass
        c.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        subprocess.run(["rm", "-rf", tmp])


def main():
    env = read_env(os.path.join(WORK, "docker-env.sh"))
    kinds = sys.argv[1:] or env.get("ENGINES", "docker podman").split()
    for kind in kinds:
        record(env, kind)


if __name__ == "__main__":
    main()
