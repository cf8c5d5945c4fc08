"""Fixtures for the Docker-backend suite (test/docker).

- `denv`: the Docker/podman environment of test/env/docker-up.sh (isolated
  dockerd, podman service, plain + htpasswd registries), started once per
  session; reused (and then left running) when already up for this work dir.
- `engine`: parametrized over the engines (CRISP_TEST_DOCKER_ENGINES, default
  "docker podman"): an enginelib.Engine for direct engine-API checks. The
  busybox image is pulled into it once (the kubelet pulls before creating).
- `crisp`: one crisp per engine, `--backend docker:unix://<engine socket>
  --pod-infra-image <pause> --runtime-handler alt=crisp-alt`, stderr in
  $WORK/logs/crisp-docker-<engine>-*.log. It can be restarted mid-suite
  (statelessness tests). At the end of the session it gets SIGTERM and must
  exit 0, remove its socket and print no sanitizer report.
- `cri`: a CRIClient on that crisp (the test fails if crisp died meanwhile).
- `k8s`: builds pod/container configs the way the kubelet does, records what
  a test made and removes it at the end: through crisp first, then through the
  engine API (every container labelled io.kubernetes.docker.type).
"""
import os
import re
import signal
import sys
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "test", "lib"))

import crisptest  # noqa: E402
from crilib import CRIClient, v1, rpc_error  # noqa: E402,F401
from crisptest import (  # noqa: E402,F401
    CGROUP_ROOT, CRISP_BIN, ENV_DIR, SANITIZER_RE, SLEEP_LOOP, SLEEPER, WORK, CrispProc, add_log_tails,
    cleanup_call, kv, parse_container_log, read_container_log, read_env, remove_cgroup, run_env_script,
    stop_all_checked, summarize_logs, tail)
from enginelib import SANDBOX_ID_LABEL, TYPE_LABEL, Engine  # noqa: E402

ENGINES = os.environ.get("CRISP_TEST_DOCKER_ENGINES", "docker podman").split()
ALT_HANDLER = "alt"


class DockerEnv(dict):
    __getattr__ = dict.__getitem__

    def sock(self, kind):
        return self["%s_SOCK" % kind.upper()]

    def log_dir(self, *parts):
        d = os.path.join(WORK, "pod-logs", *parts)
        os.makedirs(d, exist_ok=True)
        return d


def _env_running():
    path = os.path.join(WORK, "docker-env.sh")
    if not os.path.exists(path):
        return False
    env = read_env(path)
    return all(Engine(k, env.get("%s_SOCK" % k.upper(), "/nonexistent")).ping() for k in ENGINES)


@pytest.fixture(scope="session")
def denv():
    already = _env_running()
    rc, out = run_env_script("docker-up.sh")
    if rc != 0:
        pytest.fail("test/env/docker-up.sh failed:\n" + out, pytrace=False)
    env = DockerEnv(read_env(os.path.join(WORK, "docker-env.sh")))
    yield env
    if not already and os.environ.get("CRISP_TEST_KEEP_ENV") != "1":
        run_env_script("docker-down.sh", timeout=180)


def restart_engine(denv, kind):
    """Start the engine again after a test killed it (docker-up.sh is idempotent)."""
    denv.update(crisptest.docker_env_up(kind))


def kill_engine(denv, kind, sig=signal.SIGKILL):
    """Kill the engine daemon (dockerd / podman service) of this environment."""
    crisptest.kill_engine(kind, sig)


@pytest.fixture(scope="session", params=ENGINES)
def engine(request, denv):
    kind = request.param
    if "%s_SOCK" % kind.upper() not in denv:
        pytest.fail("%s is not up (docker-env.sh: ENGINES=%s)" % (kind, denv.get("ENGINES")), pytrace=False)
    e = Engine(kind, denv.sock(kind))
    e.pull(denv.BUSYBOX_IMAGE)
    return e


# ---------------------------------------------------------------------------
# crisp


def wait_cri_ready(sock, timeout=15.0, proc=None):
    return crisptest.wait_cri_ready(sock, timeout, proc, probe_deadline=2)


class DockerCrisp(CrispProc):
    """crisp with a docker backend in front of one engine; restartable."""

    start_timeout = 15.0
    stop_timeout = 15.0
    probe_deadline = 2

    def __init__(self, denv, kind, extra_args=(), name=""):
        """`name`: a second crisp's, beside the session's (its own socket
        and log); `extra_args`: its docker backend options."""
        self.kind = kind
        self.engine_sock = denv.sock(kind)
        tag = kind + ("-" + name if name else "")
        super().__init__("docker-" + tag,
                         ["--backend", "docker:unix://" + self.engine_sock,
                          "--pod-infra-image", denv.PAUSE_IMAGE,
                          "--runtime-handler", "%s=%s" % (ALT_HANDLER, denv.ALT_RUNTIME)] + list(extra_args),
                         os.path.join(os.path.dirname(self.engine_sock), "crisp-docker-%s.sock" % tag),
                         client_name="crisp-" + tag)


_crisps = []


@pytest.fixture(scope="session")
def crisp(denv, engine):
    c = DockerCrisp(denv, engine.kind)
    _crisps.append(c)
    c.start()
    yield c
    stop_all_checked([c])


@pytest.fixture
def cri(crisp):
    if not crisp.alive():
        # a previous test may have killed it; a fresh one keeps the suite going
        crisp.start()
    yield crisp.client
    if not crisp.alive():
        code = crisp.proc.returncode
        pytest.fail("crisp died during this test (status %s)\n--- %s (tail) ---\n%s"
                    % (code, crisp.log, tail(crisp.log)), pytrace=False)


# ---------------------------------------------------------------------------
# pods and containers the way the kubelet makes them


def engine_container_ids(engine):
    """Every container in the engine (ids), for "nothing leaked" checks."""
    return set(c["Id"] for c in engine.containers(all=True))


def remove_k8s_containers(engine, only=None):
    """Fallback cleanup through the engine API: containers first (podman will
    not remove a sandbox while others join its namespaces), then sandboxes."""
    removed = []
    for typ in ("container", "podsandbox", None):
        labels = {TYPE_LABEL: typ} if typ else {TYPE_LABEL: None}
        for c in engine.containers(all=True, labels=labels):
            if only is not None and c["Id"] not in only:
                continue
            try:
                engine.remove(c["Id"], force=True)
                removed.append(c["Id"])
            except Exception:  # noqa: BLE001 (best effort)
                pass
    return removed


class K8s:
    """Pods/containers through crisp, with kubelet-like configs; cleanup at the end."""

    def __init__(self, client, engine, denv, test_name):
        self.c = client
        self.engine = engine
        self.env = denv
        self.test = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[-30:].strip("-")
        self.pod_ids = []
        self.ctr_ids = []
        self.configs = {}
        self.ctr_configs = {}

    def pod_config(self, name=None, labels=None, annotations=None, hostname=None, dns=None,
                   ports=None, network=v1.POD, pid=v1.CONTAINER, ipc=v1.POD, sysctls=None,
                   namespace="crisp-test", attempt=0, uid=None):
        uid = uid or uuid.uuid4().hex[:12]
        name = (name or "%s-%s" % (self.test, self.engine.kind))[-50:].strip("-")
        logdir = self.env.log_dir("%s_%s_%s" % (namespace, name, uid))
        lbl = {"crisp-test": "1", "crisp-test/uid": uid}
        lbl.update(labels or {})
        return v1.PodSandboxConfig(
            metadata=v1.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=attempt),
            hostname=hostname if hostname is not None else name[:63],
            log_directory=logdir,
            dns_config=dns,
            port_mappings=ports or [],
            labels=lbl,
            annotations=annotations if annotations is not None else {"crisp-test/annotation": "yes"},
            linux=v1.LinuxPodSandboxConfig(
                cgroup_parent="/%s/pod%s" % (CGROUP_ROOT, uid),
                sysctls=sysctls or {},
                security_context=v1.LinuxSandboxSecurityContext(
                    namespace_options=v1.NamespaceOption(network=network, pid=pid, ipc=ipc))),
        )

    def run_pod(self, config=None, runtime_handler="", **kw):
        config = config or self.pod_config(**kw)
        resp = self.c.rt("RunPodSandbox", config=config, runtime_handler=runtime_handler)
        assert resp.pod_sandbox_id, "RunPodSandbox answered an empty id"
        self.pod_ids.append(resp.pod_sandbox_id)
        self.configs[resp.pod_sandbox_id] = config
        return resp.pod_sandbox_id

    def container_config(self, name, command, args=(), image=None, labels=None, annotations=None,
                         env=None, working_dir="", mounts=(), resources=None, tty=False, attempt=0):
        lbl = {"crisp-test": "1", "crisp-test/container": name}
        lbl.update(labels or {})
        ann = {"crisp-test/container": name}
        ann.update(annotations or {})
        return v1.ContainerConfig(
            metadata=v1.ContainerMetadata(name=name, attempt=attempt),
            image=v1.ImageSpec(image=image or self.env.BUSYBOX_IMAGE),
            command=list(command),
            args=list(args),
            working_dir=working_dir,
            envs=[kv(k, v) for k, v in (env or {}).items()],
            mounts=list(mounts),
            labels=lbl,
            annotations=ann,
            log_path="%s/%d.log" % (name, attempt),
            tty=tty,
            linux=v1.LinuxContainerConfig(resources=resources),
        )

    def create(self, pod_id, name, command, start=True, **kw):
        cfg = self.container_config(name, command, **kw)
        # the kubelet creates <log_directory>/<container name>/ before CreateContainer
        os.makedirs(os.path.dirname(os.path.join(self.configs[pod_id].log_directory, cfg.log_path)),
                    exist_ok=True)
        resp = self.c.rt("CreateContainer", pod_sandbox_id=pod_id, config=cfg,
                         sandbox_config=self.configs[pod_id])
        cid = resp.container_id
        assert cid, "CreateContainer answered an empty id"
        self.ctr_ids.append(cid)
        self.ctr_configs[cid] = (pod_id, cfg)
        if start:
            self.c.rt("StartContainer", container_id=cid)
        return cid

    def log_path(self, cid):
        pod_id, cfg = self.ctr_configs[cid]
        return os.path.join(self.configs[pod_id].log_directory, cfg.log_path)

    def status(self, cid, verbose=False):
        return self.c.rt("ContainerStatus", container_id=cid, verbose=verbose).status

    def pod_status(self, pod_id, verbose=False):
        return self.c.rt("PodSandboxStatus", pod_sandbox_id=pod_id, verbose=verbose).status

    def wait_exited(self, cid, timeout=20.0):
        deadline = time.time() + timeout
        while True:
            st = self.status(cid)
            if st.state == v1.CONTAINER_EXITED:
                return st
            if time.time() > deadline:
                raise AssertionError("container %s not EXITED after %.0fs: %s" % (cid[:12], timeout, st))
            time.sleep(0.1)

    def cleanup(self):
        errors = []
        c = self.c
        for cid in reversed(self.ctr_ids):
            cleanup_call(c, "StopContainer", errors, cid[:12], container_id=cid, timeout=0, deadline=30)
            cleanup_call(c, "RemoveContainer", errors, cid[:12], container_id=cid, deadline=30)
        for pid in reversed(self.pod_ids):
            for m in ("StopPodSandbox", "RemovePodSandbox"):
                cleanup_call(c, m, errors, pid[:12], pod_sandbox_id=pid, deadline=60)
        # what crisp's Stop/Remove left of this test's pods is a leak
        self.leaked = []
        try:
            if not errors and self.engine.ping():
                mine = set(self.pod_ids) | set(self.ctr_ids)
                self.leaked = [
                    "%s %s" % (c["Id"][:12], c["Names"]) for c in self.engine.containers(all=True)
                    if c["Id"] in mine or (c.get("Labels") or {}).get(SANDBOX_ID_LABEL) in mine]
        except Exception as e:  # noqa: BLE001
            errors.append("engine check: %s" % e)
        # whatever is left (crisp down, or a bug) goes through the engine
        try:
            if self.engine.ping():
                remove_k8s_containers(self.engine)
        except Exception as e:  # noqa: BLE001
            errors.append("engine cleanup: %s" % e)
        for cfg in self.configs.values():
            remove_cgroup(cfg.linux.cgroup_parent)
        return errors


@pytest.fixture
def k8s(request, cri, engine, denv):
    k = K8s(cri, engine, denv, request.node.name)
    yield k
    k.cleanup()
    # errors of the cleanup calls themselves show in crisp's log; a container
    # still in the engine after crisp answered OK to Stop/Remove is a failure
    assert not k.leaked, "RemovePodSandbox/RemoveContainer answered OK but left in the engine: %s" % k.leaked


# ---------------------------------------------------------------------------
# helpers for tests


def wait_for(pred, timeout=10.0, interval=0.1, what="condition"):
    return crisptest.wait_for(pred, timeout, interval, what)


def code_of(fn, *a, **kw):
    """(code, details) of a call that must fail."""
    return rpc_error(fn, *a, **kw)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        kind = getattr(item, "callspec", None) and item.callspec.params.get("engine")
        add_log_tails(rep, [c for c in _crisps if not kind or c.kind == kind])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    summarize_logs(terminalreporter, _crisps)
