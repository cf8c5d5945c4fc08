"""Session fixtures for the crisp integration tests.

- `testenv`: the private registry + containerd of test/env/up.sh, started once
  per session (reused, and then left running, if already up for this work dir).
- `crisp`: crisp (CRISP_BIN, default build/crisp) in front of that containerd,
  started once per session; stderr to $WORK/logs/crisp-*.log. At the end it
  gets SIGTERM and must exit 0, remove its socket, and have printed no
  sanitizer report -- otherwise the session's teardown fails.
  CRISP_WRAPPER (e.g. "valgrind --error-exitcode=99 ...") runs every crisp
  under that command, with longer start/stop timeouts; valgrind's error
  summary and definite/indirect leaks then fail the teardown as well.
- `cri`: parametrized "direct" (containerd's socket) / "crisp" (crisp's
  socket). The crisp variant FAILS when the binary is missing.
- `both`: the pair (direct, via_crisp) for "same answer" comparisons.
- `pods`: creates pods/containers and removes them all at the end of the test.
"""
import hashlib
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import uuid

import grpc
import pytest

from crilib import CRIClient, v1, rpc_error  # noqa: F401  (generates the pb2 modules)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENV_DIR = os.path.join(REPO, "test", "env")
WORK = os.path.abspath(os.environ.get("CRISP_TEST_WORK", os.path.join(REPO, "test", ".work")))
os.environ["CRISP_TEST_WORK"] = WORK
CRISP_BIN = os.path.abspath(os.environ.get("CRISP_BIN", os.path.join(REPO, "build", "crisp")))
CRISP_ARGS = shlex.split(os.environ.get("CRISP_ARGS", "--log-level debug"))
# a command crisp runs under, e.g. valgrind (test/run's third pass)
CRISP_WRAPPER = shlex.split(os.environ.get("CRISP_WRAPPER", ""))
WRAPPED = bool(CRISP_WRAPPER)
# start-up and SIGTERM-to-exit budgets (valgrind is ~20x slower to start)
START_TIMEOUT = 90.0 if WRAPPED else 15.0
STOP_TIMEOUT = 90.0 if WRAPPED else 10.0
SANITIZER_RE = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer|MemorySanitizer)"
    r"|UndefinedBehaviorSanitizer|SUMMARY: \w+Sanitizer|runtime error: ")
# valgrind (memcheck): any error, or definite/indirect leaks, fail the session
VALGRIND_RE = re.compile(
    r"==\d+== (ERROR SUMMARY: [1-9]\d* errors"
    r"|\s*(definitely|indirectly) lost: [1-9][\d,]* bytes)")

# pods get cgroup_parent /<CGROUP_ROOT>/pod<uid> like the kubelet's cgroupfs driver
# does (sandbox stats need one); the empty dirs are removed after each test
CGROUP_ROOT = "crisp-test"

CRISP_LOG_TAIL = int(os.environ.get("CRISP_TEST_LOG_TAIL", "60"))


def _tail(path, n=CRISP_LOG_TAIL):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return "(no log at %s)" % path
    return "\n".join(lines[-n:])


def _read_env(path):
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


def _pid_alive(pidfile, pattern):
    try:
        pid = int(open(pidfile).read().strip())
        cmd = open("/proc/%d/cmdline" % pid, "rb").read().replace(b"\0", b" ").decode()
        return pattern in cmd
    except (OSError, ValueError):
        return False


class TestEnv(dict):
    __getattr__ = dict.__getitem__

    def log_dir(self, *parts):
        d = os.path.join(WORK, "pod-logs", *parts)
        os.makedirs(d, exist_ok=True)
        return d


@pytest.fixture(scope="session")
def testenv():
    ctrd_cfg = os.path.join(os.environ.get("CRISP_TEST_CONTAINERD_DIR", os.path.join(WORK, "containerd")),
                            "config.toml")
    already = _pid_alive(os.path.join(WORK, "pids", "containerd.pid"), ctrd_cfg) and \
        _pid_alive(os.path.join(WORK, "pids", "registry.pid"), os.path.join(WORK, "registry.yml"))
    r = subprocess.run([os.path.join(ENV_DIR, "up.sh")], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    if r.returncode != 0:
        pytest.fail("test/env/up.sh failed:\n" + r.stdout.decode(errors="replace"), pytrace=False)
    env = TestEnv(_read_env(os.path.join(WORK, "env.sh")))
    # containers need their image present (the kubelet pulls first, too)
    c = CRIClient("unix://" + env.CONTAINERD_SOCK, "setup")
    try:
        c.img("PullImage", image=v1.ImageSpec(image=env.BUSYBOX_IMAGE))
    finally:
        c.close()
    yield env
    if not already and os.environ.get("CRISP_TEST_KEEP_ENV") != "1":
        subprocess.run([os.path.join(ENV_DIR, "down.sh")], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)


def _cri_ready(sock, timeout=10.0, proc=None):
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


class Crisp:
    """A running crisp process in front of a backend socket.

    listen: crisp's --listen URLs (default: unix://<sock>); sock: the unix
    socket the readiness probe and the tests use; owns_socket: crisp must
    remove `sock` at SIGTERM (not so for a socket passed by systemd);
    launcher: argv put before the wrapper and crisp (systemd-socket-activate);
    keep_old_socket: leave a file already at `sock` for crisp to deal with."""

    def __init__(self, name, backend_sock, extra_args=(), listen=None, sock=None,
                 owns_socket=True, launcher=(), keep_old_socket=False):
        self.name = name
        self.backend_sock = backend_sock
        sock_dir = os.path.dirname(backend_sock)
        self.sock = sock or os.path.join(sock_dir, "crisp-%s.sock" % name)
        self.owns_socket = owns_socket
        self.keep_old_socket = keep_old_socket
        tag = re.sub(r"[^A-Za-z0-9]+", "_", os.path.relpath(CRISP_BIN, REPO)).strip("_")
        self.log = os.path.join(WORK, "logs", "crisp-%s-%s-%s.log" % (name, tag, time.strftime("%Y%m%d-%H%M%S")))
        listen_args = []
        for url in (listen if listen is not None else ["unix://" + self.sock]):
            listen_args += ["--listen", url]
        self.args = list(launcher) + CRISP_WRAPPER + [CRISP_BIN] + listen_args + \
            ["--backend", "cri:unix://" + backend_sock] + CRISP_ARGS + list(extra_args)
        self.proc = None
        self.problems = []

    def start(self):
        if not os.path.exists(CRISP_BIN):
            pytest.fail("crisp binary %s does not exist (build it: make, or set CRISP_BIN)" % CRISP_BIN,
                        pytrace=False)
        if self.owns_socket and not self.keep_old_socket and os.path.exists(self.sock):
            os.unlink(self.sock)
        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        logf = open(self.log, "ab")
        logf.write(("# %s\n" % " ".join(self.args)).encode())
        logf.flush()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     cwd=REPO)
        logf.close()
        last = os.path.join(WORK, "logs", "crisp-last.log")
        try:
            if os.path.lexists(last):
                os.unlink(last)
            os.symlink(os.path.basename(self.log), last)
        except OSError:
            pass
        err = _cri_ready(self.sock, START_TIMEOUT, self.proc)
        if err:
            self.stop(check=False)
            pytest.fail("crisp did not come up: %s\n--- %s (tail) ---\n%s" % (err, self.log, _tail(self.log)),
                        pytrace=False)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def rss_kb(self):
        """crisp's VmRSS (kB), from /proc."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS for pid %d" % self.proc.pid)

    def log_mark(self):
        """A position in crisp's log; log_since(mark) is what came after it."""
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def log_since(self, mark):
        with open(self.log, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def wait_log(self, mark, pattern, timeout=5.0, count=1):
        """Waits until `pattern` (regex) occurs `count` times after `mark`."""
        rx = re.compile(pattern)
        return wait_for(lambda: len(rx.findall(self.log_since(mark))) >= count and self.log_since(mark),
                        timeout=timeout, what="%dx %r in %s" % (count, pattern, self.log))

    def check_serving(self, what=""):
        """crisp is alive and answers Version on a fresh connection."""
        assert self.alive(), "crisp exited (status %s) %s\n--- %s (tail) ---\n%s" % (
            self.proc.returncode, what, self.log, _tail(self.log))
        c = CRIClient("unix://" + self.sock, "check")
        try:
            r = c.rt("Version", deadline=30 if WRAPPED else 5)
        finally:
            c.close()
        assert r.runtime_api_version, r
        assert self.alive()
        return r

    def stop(self, check=True, exited=False):
        """SIGTERM; returns a list of problems (empty = clean exit).
        exited: the test stopped crisp itself; check how it ended."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append("crisp did not exit within %d s of SIGTERM (killed)" % STOP_TIMEOUT)
                self.proc.kill()
                self.proc.wait()
            rc = self.proc.returncode
            if rc != 0:
                problems.append("crisp exited with status %s at SIGTERM (expected 0)" % rc)
        elif exited:
            if self.proc.returncode != 0:
                problems.append("crisp exited with status %s (expected 0)" % self.proc.returncode)
        else:
            problems.append("crisp had already exited (status %s) before SIGTERM" % self.proc.returncode)
        if self.owns_socket and os.path.exists(self.sock):
            problems.append("crisp left its socket %s behind" % self.sock)
            try:
                os.unlink(self.sock)
            except OSError:
                pass
        with open(self.log, "rb") as f:
            text = f.read().decode(errors="replace")
        m = SANITIZER_RE.search(text)
        if m:
            problems.append("sanitizer report in crisp's stderr: %r" % text[m.start():m.start() + 200])
        for m in VALGRIND_RE.finditer(text):
            problems.append("valgrind: %s (see %s)" % (m.group(1).strip(), self.log))
        self.problems = problems
        return problems


def stop_and_check(c, exited=False):
    problems = c.stop(exited=exited)
    if problems:
        pytest.fail("crisp (%s) did not shut down cleanly:\n  %s\n--- %s (tail) ---\n%s"
                    % (c.name, "\n  ".join(problems), c.log, _tail(c.log)), pytrace=False)


_crisp_instances = []


@pytest.fixture(scope="session")
def crisp(testenv):
    c = Crisp("containerd", testenv.CONTAINERD_SOCK)
    _crisp_instances.append(c)
    c.start()
    yield c
    stop_and_check(c)


@pytest.fixture(scope="session")
def direct_client(testenv):
    c = CRIClient("unix://" + testenv.CONTAINERD_SOCK, "direct")
    yield c
    c.close()


@pytest.fixture(scope="session")
def crisp_client(crisp):
    c = CRIClient("unix://" + crisp.sock, "crisp")
    yield c
    c.close()


@pytest.fixture(params=["direct", "crisp"])
def cri(request, testenv):
    """The client under test: containerd directly, or through crisp."""
    if request.param == "direct":
        client = request.getfixturevalue("direct_client")
    else:
        crisp_proc = request.getfixturevalue("crisp")
        client = request.getfixturevalue("crisp_client")
        if not crisp_proc.alive():
            pytest.fail("crisp is not running (exited with %s)\n--- %s (tail) ---\n%s"
                        % (crisp_proc.proc.returncode, crisp_proc.log, _tail(crisp_proc.log)), pytrace=False)
    yield client
    if request.param == "crisp" and not crisp_proc.alive():
        pytest.fail("crisp died during this test (status %s)\n--- %s (tail) ---\n%s"
                    % (crisp_proc.proc.returncode, crisp_proc.log, _tail(crisp_proc.log)), pytrace=False)


class Both:
    def __init__(self, direct, crisp):
        self.direct = direct
        self.crisp = crisp

    def __iter__(self):
        return iter((self.direct, self.crisp))


@pytest.fixture
def both(direct_client, crisp_client):
    """(direct, via_crisp) clients for same-answer comparisons."""
    return Both(direct_client, crisp_client)


# ---------------------------------------------------------------------------
# pods and containers, always cleaned up (through containerd directly, so the
# cleanup works even when crisp misbehaves)


def kv(pb, k, v):
    """KeyValue: v1's value is bytes (cri-api changed it), v1alpha2's a string."""
    f = pb.KeyValue.DESCRIPTOR.fields_by_name["value"]
    if f.type == f.TYPE_BYTES and isinstance(v, str):
        v = v.encode()
    return pb.KeyValue(key=k, value=v)


def remove_cgroup(parent):
    """rmdir the (now empty) pod cgroup in every hierarchy; ignore failures."""
    if not parent:
        return
    base = "/sys/fs/cgroup"
    try:
        hierarchies = [os.path.join(base, h) for h in os.listdir(base)]
    except OSError:
        return
    for h in hierarchies + [base]:
        d = os.path.join(h, parent.strip("/"))
        for root, dirs, _ in sorted(os.walk(d, topdown=False), key=lambda t: -len(t[0])):
            try:
                os.rmdir(root)
            except OSError:
                pass


class Pods:
    def __init__(self, client, cleanup_client, env, test_name):
        self.c = client
        self.cleanup_client = cleanup_client
        self.env = env
        self.test = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[-40:].strip("-")
        self.pod_ids = []
        self.ctr_ids = []
        self.configs = {}

    def pod_config(self, name=None, labels=None, annotations=None, handler_tag=""):
        uid = uuid.uuid4().hex[:12]
        name = name or "%s-%s" % (self.test, self.c.name)
        name = name[-50:].strip("-")
        logdir = self.env.log_dir("%s_%s" % (name, uid))
        pb = self.c.pb
        lbl = {"crisp-test": "1", "crisp-test/client": self.c.name, "crisp-test/uid": uid}
        lbl.update(labels or {})
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="crisp-test", attempt=0),
            hostname=name[:63],
            log_directory=logdir,
            labels=lbl,
            annotations=annotations or {"crisp-test/annotation": "yes"},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent="/%s/pod%s" % (CGROUP_ROOT, uid),
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))),
        )

    def run_pod(self, config=None, runtime_handler="", **kw):
        config = config or self.pod_config(**kw)
        resp = self.c.rt("RunPodSandbox", config=config, runtime_handler=runtime_handler)
        self.pod_ids.append(resp.pod_sandbox_id)
        self.configs[resp.pod_sandbox_id] = config
        return resp.pod_sandbox_id, config

    def container_config(self, name, command, image=None, labels=None, tty=False, env=None):
        pb = self.c.pb
        lbl = {"crisp-test": "1", "crisp-test/container": name}
        lbl.update(labels or {})
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=0),
            image=pb.ImageSpec(image=image or self.env.BUSYBOX_IMAGE),
            command=command,
            envs=[kv(pb, k, v) for k, v in (env or {}).items()],
            labels=lbl,
            annotations={"crisp-test/container": name},
            log_path="%s_0.log" % name,
            tty=tty,
            linux=pb.LinuxContainerConfig(),
        )

    def create_container(self, pod_id, name, command, start=True, **kw):
        cfg = self.container_config(name, command, **kw)
        resp = self.c.rt("CreateContainer", pod_sandbox_id=pod_id, config=cfg,
                         sandbox_config=self.configs[pod_id])
        cid = resp.container_id
        self.ctr_ids.append(cid)
        if start:
            self.c.rt("StartContainer", container_id=cid)
        return cid

    def log_path(self, pod_id, name):
        return os.path.join(self.configs[pod_id].log_directory, "%s_0.log" % name)

    def forget_container(self, cid):
        if cid in self.ctr_ids:
            self.ctr_ids.remove(cid)

    def forget_pod(self, pid):
        if pid in self.pod_ids:
            self.pod_ids.remove(pid)

    def cleanup(self):
        c = self.cleanup_client
        errors = []
        for cid in reversed(self.ctr_ids):
            for m in ("StopContainer", "RemoveContainer"):
                try:
                    if m == "StopContainer":
                        c.rt(m, c.pb.StopContainerRequest(container_id=cid, timeout=2))
                    else:
                        c.rt(m, container_id=cid)
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        errors.append("%s %s: %s" % (m, cid, e.details()))
        for pid in reversed(self.pod_ids):
            for m in ("StopPodSandbox", "RemovePodSandbox"):
                try:
                    c.rt(m, pod_sandbox_id=pid)
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        errors.append("%s %s: %s" % (m, pid, e.details()))
        for cfg in self.configs.values():
            remove_cgroup(cfg.linux.cgroup_parent)
        return errors


@pytest.fixture
def pods(request, cri, direct_client, testenv):
    """Pods/containers made through the client under test (direct or crisp)."""
    p = Pods(cri, direct_client, testenv, request.node.name)
    yield p
    errors = p.cleanup()
    assert not errors, "cleanup failed: %s" % errors


@pytest.fixture
def direct_pods(request, direct_client, testenv):
    """Pods/containers made directly on containerd (for same-answer tests)."""
    p = Pods(direct_client, direct_client, testenv, request.node.name)
    yield p
    errors = p.cleanup()
    assert not errors, "cleanup failed: %s" % errors


# ---------------------------------------------------------------------------
# reporting: attach crisp's log tail to failing crisp tests


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and ("crisp" in item.name or "both" in getattr(item, "fixturenames", ())):
        for c in _crisp_instances:
            if not os.path.exists(c.log):
                continue
            rep.sections.append(("crisp log tail (%s)" % c.log, _tail(c.log, 30)))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _crisp_instances:
        terminalreporter.write_line("crisp binary: %s" % CRISP_BIN)
        for c in _crisp_instances:
            terminalreporter.write_line("crisp log (%s): %s" % (c.name, c.log))
    if os.environ.get("CRISP_TEST_SHOW_ENV") == "1":
        terminalreporter.write_line("work dir: %s" % WORK)


def sock_dir():
    """Same rule as test/env/lib.sh: short paths for sun_path."""
    if os.environ.get("CRISP_TEST_SOCK_DIR"):
        return os.environ["CRISP_TEST_SOCK_DIR"]
    if len(WORK) <= 70:
        return os.path.join(WORK, "run")
    return "/run/crisp-test-" + hashlib.sha256(WORK.encode()).hexdigest()[:8]


def free_unix_path(name):
    d = sock_dir()
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, name)
    if os.path.exists(p):
        os.unlink(p)
    return p


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


__all__ = ["wait_for", "free_unix_path", "socket"]
