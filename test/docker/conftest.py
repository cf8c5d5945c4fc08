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
import shlex
import signal
import subprocess
import sys
import time
import uuid

import grpc
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))
sys.path.insert(0, HERE)

from crilib import CRIClient, v1, rpc_error  # noqa: E402,F401
from enginelib import SANDBOX_ID_LABEL, TYPE_LABEL, Engine  # noqa: E402

ENV_DIR = os.path.join(REPO, "test", "env")
WORK = os.path.abspath(os.environ.get("CRISP_TEST_WORK", os.path.join(REPO, "test", ".work")))
os.environ["CRISP_TEST_WORK"] = WORK
CRISP_BIN = os.path.abspath(os.environ.get("CRISP_BIN", os.path.join(REPO, "build", "crisp")))
CRISP_ARGS = shlex.split(os.environ.get("CRISP_ARGS", "--log-level debug"))
ENGINES = os.environ.get("CRISP_TEST_DOCKER_ENGINES", "docker podman").split()
ALT_HANDLER = "alt"
# A long-running container that exits at once on SIGTERM (busybox `sleep` as
# PID 1 ignores SIGTERM, so every stop would wait out its whole grace period).
SLEEP_LOOP = "trap 'exit 0' TERM; while :; do sleep 0.2; done"
SLEEPER = ["sh", "-c", SLEEP_LOOP]
SANITIZER_RE = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer|MemorySanitizer)"
    r"|UndefinedBehaviorSanitizer|SUMMARY: \w+Sanitizer|runtime error: ")
CGROUP_ROOT = "crisp-test"
LOG_TAIL = int(os.environ.get("CRISP_TEST_LOG_TAIL", "60"))


def tail(path, n=LOG_TAIL):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return "(no log at %s)" % path
    return "\n".join(lines[-n:])


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            parts = shlex.split(v)
            env[k] = parts[0] if parts else ""
    return env


class DockerEnv(dict):
    __getattr__ = dict.__getitem__

    def sock(self, kind):
        return self["%s_SOCK" % kind.upper()]

    def log_dir(self, *parts):
        d = os.path.join(WORK, "pod-logs", *parts)
        os.makedirs(d, exist_ok=True)
        return d


def run_env_script(name, *args, timeout=300):
    r = subprocess.run([os.path.join(ENV_DIR, name)] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace")


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
    rc, out = run_env_script("docker-up.sh", kind)
    if rc != 0:
        raise AssertionError("docker-up.sh %s failed:\n%s" % (kind, out))
    denv.update(read_env(os.path.join(WORK, "docker-env.sh")))


def kill_engine(denv, kind, sig=signal.SIGKILL):
    """Kill the engine daemon (dockerd / podman service) of this environment."""
    pidfile = os.path.join(WORK, "pids", "dockerd.pid" if kind == "docker" else "podman.pid")
    pid = int(open(pidfile).read().strip())
    os.kill(pid, sig)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with open("/proc/%d/status" % pid) as f:
                if re.search(r"^State:\s+Z", f.read(), re.M):
                    break
        except OSError:
            break
        time.sleep(0.05)


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
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return "exited with status %s" % proc.returncode
        if os.path.exists(sock):
            c = CRIClient("unix://" + sock, "probe")
            try:
                c.rt("Version", deadline=2)
                return None
            except grpc.RpcError as e:
                last = "%s %s" % (e.code(), e.details())
            finally:
                c.close()
        time.sleep(0.05)
    return "not ready after %.0fs (last error: %s)" % (timeout, last)


class DockerCrisp:
    """crisp with a docker backend in front of one engine; restartable."""

    def __init__(self, denv, kind):
        self.kind = kind
        self.engine_sock = denv.sock(kind)
        sock_dir = os.path.dirname(self.engine_sock)
        self.sock = os.path.join(sock_dir, "crisp-docker-%s.sock" % kind)
        tag = re.sub(r"[^A-Za-z0-9]+", "_", os.path.relpath(CRISP_BIN, REPO)).strip("_")
        self.log = os.path.join(WORK, "logs", "crisp-docker-%s-%s-%s.log"
                                % (kind, tag, time.strftime("%Y%m%d-%H%M%S")))
        self.args = [CRISP_BIN, "--listen", "unix://" + self.sock,
                     "--backend", "docker:unix://" + self.engine_sock,
                     "--pod-infra-image", denv.PAUSE_IMAGE,
                     "--runtime-handler", "%s=%s" % (ALT_HANDLER, denv.ALT_RUNTIME)] + CRISP_ARGS
        self.proc = None
        self.client = None
        self.problems = []
        self.starts = 0

    def start(self):
        if not os.path.exists(CRISP_BIN):
            pytest.fail("crisp binary %s does not exist (build it: make, or set CRISP_BIN)" % CRISP_BIN,
                        pytrace=False)
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        with open(self.log, "ab") as logf:
            logf.write(("# %s\n" % " ".join(self.args)).encode())
            logf.flush()
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         cwd=REPO)
        self.starts += 1
        err = wait_cri_ready(self.sock, 15, self.proc)
        if err:
            self.stop()
            pytest.fail("crisp (docker backend on %s) did not come up: %s\n--- %s (tail) ---\n%s"
                        % (self.kind, err, self.log, tail(self.log)), pytrace=False)
        self.client = CRIClient("unix://" + self.sock, "crisp-" + self.kind)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        """Stop crisp; returns a list of problems (empty = clean exit)."""
        problems = []
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                problems.append("crisp did not exit within 15 s of signal %d (killed)" % sig)
                self.proc.kill()
                self.proc.wait()
            if sig == signal.SIGTERM and self.proc.returncode != 0:
                problems.append("crisp exited with status %s at SIGTERM (expected 0)" % self.proc.returncode)
        else:
            problems.append("crisp had already exited (status %s)" % self.proc.returncode)
        if sig == signal.SIGTERM and os.path.exists(self.sock):
            problems.append("crisp left its socket %s behind" % self.sock)
        if os.path.exists(self.sock):
            try:
                os.unlink(self.sock)
            except OSError:
                pass
        try:
            with open(self.log, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            text = ""
        m = SANITIZER_RE.search(text)
        if m:
            problems.append("sanitizer report in crisp's stderr: %r" % text[m.start():m.start() + 300])
        self.problems = problems
        return problems

    def restart(self, sig=signal.SIGTERM):
        problems = self.stop(sig)
        self.start()
        return problems


_crisps = []


@pytest.fixture(scope="session")
def crisp(denv, engine):
    c = DockerCrisp(denv, engine.kind)
    _crisps.append(c)
    c.start()
    yield c
    problems = c.stop()
    if problems:
        pytest.fail("crisp (docker backend on %s) did not shut down cleanly:\n  %s\n--- %s (tail) ---\n%s"
                    % (engine.kind, "\n  ".join(problems), c.log, tail(c.log)), pytrace=False)


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


def kv(k, v):
    f = v1.KeyValue.DESCRIPTOR.fields_by_name["value"]
    if f.type == f.TYPE_BYTES and isinstance(v, str):
        v = v.encode()
    return v1.KeyValue(key=k, value=v)


def remove_cgroup(parent):
    if not parent:
        return
    base = "/sys/fs/cgroup"
    try:
        hierarchies = [os.path.join(base, h) for h in os.listdir(base)]
    except OSError:
        return
    for h in hierarchies + [base]:
        d = os.path.join(h, parent.strip("/"))
        for root, _, _ in sorted(os.walk(d, topdown=False), key=lambda t: -len(t[0])):
            try:
                os.rmdir(root)
            except OSError:
                pass


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
            for m, kw in (("StopContainer", {"timeout": 0}), ("RemoveContainer", {})):
                try:
                    c.rt(m, container_id=cid, deadline=30, **kw)
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        errors.append("%s %s: %s %s" % (m, cid[:12], e.code(), e.details()))
        for pid in reversed(self.pod_ids):
            for m in ("StopPodSandbox", "RemovePodSandbox"):
                try:
                    c.rt(m, pod_sandbox_id=pid, deadline=60)
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        errors.append("%s %s: %s %s" % (m, pid[:12], e.code(), e.details()))
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
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


CRI_LOG_RE = re.compile(r"^(\S+) (stdout|stderr) ([PF]) ?(.*)$")


def parse_container_log(text):
    """Lines of a container log -> [(stream, line)]. Accepts the CRI format the
    kubelet writes/reads ("<RFC3339Nano> <stream> <P|F> <text>", P = partial)
    and Docker's json-file lines ({"log": "text\\n", "stream": ..., "time": ...})."""
    import json
    out = []
    partial = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if raw.lstrip().startswith("{"):
            try:
                j = json.loads(raw)
            except ValueError:
                raise AssertionError("unparseable json-file log line: %r" % raw)
            stream, msg = j.get("stream"), j.get("log", "")
            assert "time" in j, "json-file log line without time: %r" % raw
            buf = partial.pop(stream, "") + msg
            if buf.endswith("\n"):
                out.append((stream, buf[:-1]))
            else:
                partial[stream] = buf
            continue
        m = CRI_LOG_RE.match(raw)
        assert m, "log line in neither CRI nor json-file format: %r" % raw
        _, stream, tag, msg = m.groups()
        buf = partial.pop(stream, "") + msg
        if tag == "F":
            out.append((stream, buf))
        else:
            partial[stream] = buf
    # output that ended without a newline (the container exited) is a line too
    out.extend(partial.items())
    return out


def read_container_log(path):
    with open(path, "rb") as f:
        return parse_container_log(f.read().decode(errors="replace"))


def code_of(fn, *a, **kw):
    """(code, details) of a call that must fail."""
    return rpc_error(fn, *a, **kw)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        kind = getattr(item, "callspec", None) and item.callspec.params.get("engine")
        for c in _crisps:
            if kind and c.kind != kind:
                continue
            if os.path.exists(c.log):
                rep.sections.append(("crisp log tail (%s)" % c.log, tail(c.log, 30)))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _crisps:
        terminalreporter.write_line("crisp binary: %s" % CRISP_BIN)
        for c in _crisps:
            terminalreporter.write_line("crisp log (docker backend on %s): %s" % (c.kind, c.log))
