"""Tracing meets the Docker backend: crispctl against a Docker-backed crisp
(its short forms over a real pod, the logs of Docker's json-file), and a
trace of a pod's life recorded through crisp in front of containerd,
replayed against the Docker-backed crisp: crispctl replay must report the
real differences (the runtime's name and version, what Docker answers
otherwise) while the pod's life itself goes through.

The containerd side is test/env/up.sh's (started here when it is not up,
and stopped again); it shares the registry of test/env/docker-up.sh."""
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import (ENV_DIR, REPO, SLEEPER, WORK, DockerCrisp, read_env, remove_cgroup,
                      tail, wait_for)
from crilib import CRIClient, rpc_error, v1

sys.path.insert(0, os.path.join(REPO, "test", "integration"))
import tracelib as tl  # noqa: E402

CRISP_BIN = tl.CRISP_BIN


@pytest.fixture(scope="module")
def dcrisp(denv, tmp_path_factory):
    """crisp with a docker backend in front of dockerd, with the full trace
    (c.trace), metrics and the debug log on."""
    if "DOCKER_SOCK" not in denv:
        pytest.skip("no dockerd in this environment (CRISP_TEST_DOCKER_ENGINES)")
    c = DockerCrisp(denv, "docker")
    c.sock = c.sock.replace(".sock", "-trace.sock")
    c.args[c.args.index("--listen") + 1] = "unix://" + c.sock
    c.trace = str(tmp_path_factory.mktemp("dtrace") / "docker.jsonl")
    c.args += ["--trace", c.trace, "--trace-level", "full", "--metrics-listen", "127.0.0.1:0",
               "--log-level", "debug"]
    c.start()
    yield c
    problems = c.stop()
    assert not problems, "%s\n%s" % (problems, tail(c.log))


@pytest.fixture(scope="module")
def ctrd():
    """The containerd of test/env/up.sh, reused or started (and stopped)."""
    pidfile = os.path.join(WORK, "pids", "containerd.pid")
    already = os.path.exists(pidfile)
    r = subprocess.run([os.path.join(ENV_DIR, "up.sh")], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert r.returncode == 0, r.stdout.decode()
    env = read_env(os.path.join(WORK, "env.sh"))
    yield env
    if not already and os.environ.get("CRISP_TEST_KEEP_ENV") != "1":
        subprocess.run([os.path.join(ENV_DIR, "down.sh")], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)


def pod_config(name, log_root):
    uid = uuid.uuid4().hex[:12]
    logdir = os.path.join(log_root, "trace_%s_%s" % (name, uid))
    os.makedirs(os.path.join(logdir, "main"), exist_ok=True)
    return v1.PodSandboxConfig(
        metadata=v1.PodSandboxMetadata(name=name, uid=uid, namespace="crisp-test", attempt=0),
        hostname=name, log_directory=logdir, labels={"crisp-test": "1", "crisp-test/uid": uid},
        linux=v1.LinuxPodSandboxConfig(
            cgroup_parent="/crisp-test/pod%s" % uid,
            security_context=v1.LinuxSandboxSecurityContext(
                namespace_options=v1.NamespaceOption(network=v1.POD, pid=v1.CONTAINER, ipc=v1.POD))))


def lifecycle(c, image, log_root):
    """A pod's life, the calls a kubelet makes; removes what it made."""
    cfg = pod_config("traced-life", log_root)
    c.rt("Version", version="0.1.0")
    c.img("PullImage", image=v1.ImageSpec(image=image))
    pod = c.rt("RunPodSandbox", config=cfg).pod_sandbox_id
    try:
        c.rt("PodSandboxStatus", pod_sandbox_id=pod)
        ccfg = v1.ContainerConfig(metadata=v1.ContainerMetadata(name="main"), image=v1.ImageSpec(image=image),
                                  command=SLEEPER, log_path="main/0.log",
                                  labels={"crisp-test": "1"}, linux=v1.LinuxContainerConfig())
        cid = c.rt("CreateContainer", pod_sandbox_id=pod, config=ccfg, sandbox_config=cfg).container_id
        c.rt("StartContainer", container_id=cid)
        c.rt("ContainerStatus", container_id=cid)
        c.rt("ExecSync", container_id=cid, cmd=["sh", "-c", "echo traced; exit 2"], timeout=10)
        c.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=pod))
        c.rt("StopContainer", container_id=cid, timeout=5)
        c.rt("RemoveContainer", container_id=cid)
    finally:
        c.rt("StopPodSandbox", pod_sandbox_id=pod)
        c.rt("RemovePodSandbox", pod_sandbox_id=pod)
        remove_cgroup(cfg.linux.cgroup_parent)
    rpc_error(c.rt, "PodSandboxStatus", pod_sandbox_id=pod)
    return os.path.join(cfg.log_directory, "main", "0.log")


def fresh_log(path):
    """The container's log as a new node has it: not there yet (a replay
    reuses the recorded log path; the Docker backend links its own log
    there and refuses a regular file in the way)."""
    if os.path.lexists(path):
        os.unlink(path)


def test_ctl_against_docker_backed_crisp(dcrisp, denv):
    ep = "unix://" + dcrisp.sock
    c = CRIClient(ep, "ctl")
    cfg = pod_config("ctl-docker", os.path.join(WORK, "pod-logs"))
    pod = c.rt("RunPodSandbox", config=cfg).pod_sandbox_id
    try:
        ccfg = v1.ContainerConfig(metadata=v1.ContainerMetadata(name="main"),
                                  image=v1.ImageSpec(image=denv.BUSYBOX_IMAGE),
                                  command=["sh", "-c", "echo from docker; " + SLEEPER[-1]],
                                  log_path="main/0.log", linux=v1.LinuxContainerConfig())
        c.img("PullImage", image=v1.ImageSpec(image=denv.BUSYBOX_IMAGE))
        cid = c.rt("CreateContainer", pod_sandbox_id=pod, config=ccfg, sandbox_config=cfg).container_id
        c.rt("StartContainer", container_id=cid)
        ver = tl.ctl_json("version", endpoint=ep)
        assert ver["runtimeName"] and ver["runtimeApiVersion"] == "v1"
        assert pod[:13] in tl.run_ctl("pods", "--name", "ctl-docker", endpoint=ep).out
        assert cid[:13] in tl.run_ctl("ps", "--pod", pod, endpoint=ep).out
        assert "busybox" in tl.run_ctl("images", endpoint=ep).out
        assert tl.ctl_json("inspect", cid, endpoint=ep)["status"]["id"] == cid
        assert tl.ctl_json("inspect", pod, endpoint=ep)["status"]["id"] == pod
        wait_for(lambda: "from docker" in tl.run_ctl("logs", cid, endpoint=ep).out, what="the log")
        assert tl.run_ctl("logs", cid, endpoint=ep).out == "from docker\n"
        assert cid[:13] in tl.run_ctl("stats", endpoint=ep).out
        got = tl.ctl_json("call", "ContainerStatus", '{"containerId":"%s"}' % cid, endpoint=ep)
        assert got["status"]["state"] == "CONTAINER_RUNNING"
        c.rt("StopContainer", container_id=cid, timeout=5)
        c.rt("RemoveContainer", container_id=cid)
    finally:
        c.rt("StopPodSandbox", pod_sandbox_id=pod)
        c.rt("RemovePodSandbox", pod_sandbox_id=pod)
        remove_cgroup(cfg.linux.cgroup_parent)
        c.close()


def test_replay_containerd_trace_against_docker(dcrisp, denv, ctrd, tmp_path):
    trace = str(tmp_path / "containerd.jsonl")
    sock = os.path.join(os.path.dirname(ctrd["CONTAINERD_SOCK"]), "crisp-trace-rec.sock")
    log = open(os.path.join(WORK, "logs", "crisp-trace-rec.log"), "ab")
    p = subprocess.Popen([CRISP_BIN, "--listen", "unix://" + sock, "--backend",
                          "cri:unix://" + ctrd["CONTAINERD_SOCK"], "--trace", trace,
                          "--trace-level", "full"] + shlex.split(os.environ.get("CRISP_ARGS", "")),
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_for(lambda: os.path.exists(sock), what="the recording crisp")
        time.sleep(0.2)
        c = CRIClient("unix://" + sock, "rec")
        log_file = lifecycle(c, ctrd["BUSYBOX_IMAGE"], os.path.join(WORK, "pod-logs"))
        c.close()
        tl.wait_records(trace, lambda r: r["method"] == "PodSandboxStatus" and r["status"] == "NOT_FOUND")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
        log.close()
    # against containerd itself: no difference
    fresh_log(log_file)
    r = tl.run_ctl("replay", trace, "--to", "unix://" + ctrd["CONTAINERD_SOCK"], check=False, timeout=180)
    assert r.returncode == 0 and " 0 different" in r.out, r.out + r.err
    # against Docker: the real differences, and the pod's life still goes through
    fresh_log(log_file)
    r = tl.run_ctl("replay", trace, "--to", "unix://" + dcrisp.sock, check=False, timeout=300)
    out = r.out
    assert r.returncode == 1, out + r.err
    assert "RuntimeService/Version:" in out and ".runtimeName: \"containerd\" (recorded)" in out, out
    print(out)  # the report, for the log (pytest -s)
    summary = out.splitlines()[-1]
    assert "0 not sent" in summary and "14 calls" in summary, summary
    for method in ("RunPodSandbox", "CreateContainer", "StartContainer", "ExecSync", "StopContainer",
                   "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"):
        block = out.split("RuntimeService/%s:" % method)
        assert len(block) == 1 or "status:" not in block[1].split("\n#")[0], \
            "%s failed on Docker:\n%s" % (method, out)
    # the replay removed what it made
    left = CRIClient("unix://" + dcrisp.sock, "check")
    assert not [p for p in left.rt("ListPodSandbox").items if p.metadata.name == "traced-life"]
    left.close()


def test_credentials_never_leak_through_docker(dcrisp, denv):
    """Pulls from the htpasswd registry (the password really used: a wrong one
    fails) leave the password, the auth string and the X-Registry-Auth value
    crisp sends nowhere: not in the trace, the debug log or the metrics."""
    import base64
    c = CRIClient("unix://" + dcrisp.sock, "creds")
    url = tl.metrics_url(dcrisp)
    auth = base64.b64encode(("%s:%s" % (denv.AUTH_USER, denv.AUTH_PASS)).encode()).decode()
    for creds in (v1.AuthConfig(username=denv.AUTH_USER, password=denv.AUTH_PASS),
                  v1.AuthConfig(auth=auth)):
        c.img("PullImage", image=v1.ImageSpec(image=denv.AUTH_BUSYBOX_IMAGE), auth=creds)
    # tokens this registry does not take (the engine then tries them, not the password)
    for creds in (v1.AuthConfig(username=denv.AUTH_USER, password="wrong-" + denv.AUTH_PASS),
                  v1.AuthConfig(auth=auth, identity_token="idtok-Zq9x", registry_token="regtok-Zq9x")):
        rpc_error(c.img, "PullImage", image=v1.ImageSpec(image=denv.AUTH_VICTIM_IMAGE), auth=creds)
    c.close()
    tl.wait_records(dcrisp.trace, lambda r: r["method"] == "PullImage", 4)
    metrics = tl.scrape(url)
    trace = open(dcrisp.trace).read()
    with open(dcrisp.log) as f:
        log = f.read()
    # the start of the X-Registry-Auth value crisp sends (encode.c: compact JSON, base64url)
    head = '{"username":"%s","password":"%s"' % (denv.AUTH_USER, denv.AUTH_PASS)
    xra = base64.urlsafe_b64encode(head[:len(head) // 3 * 3].encode()).decode()
    for where, text in (("trace", trace), ("log", log), ("metrics", metrics)):
        for secret in (denv.AUTH_PASS, auth, "idtok-Zq9x", "regtok-Zq9x", xra):
            assert secret not in text, "%r leaked into the %s" % (secret, where)
    assert '"password":"[redacted]"' in trace
