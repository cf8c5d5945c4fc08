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
import socket
import sys
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from crilib import CRIClient, v1, rpc_error  # noqa: E402,F401  (generates the pb2 modules)
from crisptest import (  # noqa: E402,F401
    CGROUP_ROOT, CRISP_BIN, CRISP_WRAPPER, WORK, WRAPPED, CrispProc, add_log_tails,
    cleanup_call, containerd_env_running, kv, read_env, remove_cgroup, run_env_script, summarize_logs, tail, wait_for)

# start-up and SIGTERM-to-exit budgets (valgrind is ~20x slower to start)
START_TIMEOUT = 90.0 if WRAPPED else 15.0
STOP_TIMEOUT = 90.0 if WRAPPED else 10.0
_tail = tail  # test_resilience.py's name for it


class TestEnv(dict):
    __getattr__ = dict.__getitem__

    def log_dir(self, *parts):
        d = os.path.join(WORK, "pod-logs", *parts)
        os.makedirs(d, exist_ok=True)
        return d


@pytest.fixture(scope="session")
def testenv():
    already = containerd_env_running()
    rc, out = run_env_script("up.sh")
    if rc != 0:
        pytest.fail("test/env/up.sh failed:\n" + out, pytrace=False)
    env = TestEnv(read_env(os.path.join(WORK, "env.sh")))
    # containers need their image present (the kubelet pulls first, too)
    c = CRIClient("unix://" + env.CONTAINERD_SOCK, "setup")
    try:
        c.img("PullImage", image=v1.ImageSpec(image=env.BUSYBOX_IMAGE))
    finally:
        c.close()
    yield env
    if not already and os.environ.get("CRISP_TEST_KEEP_ENV") != "1":
        run_env_script("down.sh", timeout=120)


class Crisp(CrispProc):
    """A running crisp process in front of a backend socket (a CRI runtime).

    listen: crisp's --listen URLs (default: unix://<sock>); sock: the unix
    socket the readiness probe and the tests use; owns_socket: crisp must
    remove `sock` at SIGTERM (not so for a socket passed by systemd);
    launcher: argv put before the wrapper and crisp (systemd-socket-activate);
    keep_old_socket: leave a file already at `sock` for crisp to deal with."""

    start_timeout = START_TIMEOUT
    stop_timeout = STOP_TIMEOUT
    probe_deadline = 2
    wait_log_timeout = 5.0
    with_client = False

    def __init__(self, name, backend_sock, extra_args=(), listen=None, sock=None,
                 owns_socket=True, launcher=(), keep_old_socket=False):
        super().__init__(name, ["--backend", "cri:unix://" + backend_sock],
                         sock or os.path.join(os.path.dirname(backend_sock), "crisp-%s.sock" % name),
                         extra_args=extra_args, listen=listen, launcher=launcher, owns_socket=owns_socket,
                         keep_old_socket=keep_old_socket)
        self.backend_sock = backend_sock

    def spawn(self):
        super().spawn()
        last = os.path.join(WORK, "logs", "crisp-last.log")
        try:
            if os.path.lexists(last):
                os.unlink(last)
            os.symlink(os.path.basename(self.log), last)
        except OSError:
            pass
        return self

    def rss_kb(self):
        """crisp's VmRSS (kB), from /proc."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS for pid %d" % self.proc.pid)

    def check_serving(self, what=""):
        """crisp is alive and answers Version on a fresh connection."""
        assert self.alive(), "crisp exited (status %s) %s\n--- %s (tail) ---\n%s" % (
            self.proc.returncode, what, self.log, tail(self.log))
        c = CRIClient("unix://" + self.sock, "check")
        try:
            r = c.rt("Version", deadline=30 if WRAPPED else 5)
        finally:
            c.close()
        assert r.runtime_api_version, r
        assert self.alive()
        return r


def stop_and_check(c, exited=False):
    problems = c.stop(exited=exited)
    if problems:
        pytest.fail("crisp (%s) did not shut down cleanly:\n  %s\n--- %s (tail) ---\n%s"
                    % (c.name, "\n  ".join(problems), c.log, tail(c.log)), pytrace=False)


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
                        % (crisp_proc.proc.returncode, crisp_proc.log, tail(crisp_proc.log)), pytrace=False)
    yield client
    if request.param == "crisp" and not crisp_proc.alive():
        pytest.fail("crisp died during this test (status %s)\n--- %s (tail) ---\n%s"
                    % (crisp_proc.proc.returncode, crisp_proc.log, tail(crisp_proc.log)), pytrace=False)


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
            envs=[kv(k, v, pb) for k, v in (env or {}).items()],
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
            cleanup_call(c, "StopContainer", errors, cid, container_id=cid, timeout=2)
            cleanup_call(c, "RemoveContainer", errors, cid, container_id=cid)
        for pid in reversed(self.pod_ids):
            for m in ("StopPodSandbox", "RemovePodSandbox"):
                cleanup_call(c, m, errors, pid, pod_sandbox_id=pid)
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
        add_log_tails(rep, _crisp_instances)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    summarize_logs(terminalreporter, _crisp_instances)
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



__all__ = ["wait_for", "free_unix_path", "socket"]
