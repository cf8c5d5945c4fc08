"""Fixtures of the RuntimeClass multiplexing suite (test/mux, issue 10).

One crisp started with --config puts three engines behind one socket:

    backend     kind    engine                                  handlers (-> engine runtime)
    containerd  cri     test/env/up.sh's containerd             "" (default), crun,
                                                                fast (-> runc: crisp rewrites it)
    docker      docker  test/env/docker-up.sh's dockerd         docker, docker-alt (-> crisp-alt)
    podman      docker  test/env/docker-up.sh's podman service  legacy

- `envs`: both environments (containerd's, then Docker's and podman's),
  started once per session, reused when up (and then left running); the
  busybox image pulled into every engine directly.
- `mux`: that crisp (session; a test may restart it, the `cri` fixture
  brings it back if a test left it dead). `cri` is a client on it.
- `refs`: what each engine answers itself, for comparisons: containerd's own
  CRI socket, and a single-backend crisp (--backend docker:...) for docker
  and for podman (session).
- `engines`: enginelib.Engine for docker and podman (the engine's API).
- `pods`: pods and containers made through the mux with a handler, recorded
  with the backend they must land on, and removed at the end through that
  backend's reference (so a broken router cannot leak them).
- `own_crisp(name, config)`: a crisp of the test's own with its own config
  file (reload, bad configurations, partial configurations), stopped and
  checked at the end of the test.
"""
import atexit
import json
import os
import signal
import sys
import time

import grpc
import pytest

# the first call to an engine after crisp (re)starts negotiates its API: podman's
# GET /version runs conmon and the OCI runtime, which takes many seconds on a
# loaded machine; the kubelet's own deadline is 2 minutes
os.environ.setdefault("CRISP_TEST_RPC_TIMEOUT", "120")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from crisptest import (  # noqa: E402
    SLEEPER, WORK, CrispProc, add_log_tails, cleanup_call, container_config, containerd_env_running,
    docker_env_up, env_up, pod_config, read_env, remove_cgroup, run_env_script, stop_all_checked,
    summarize_logs, tail, wait_for)
from crilib import CRIClient, rpc_error, v1  # noqa: E402,F401
from enginelib import Engine  # noqa: E402

BACKENDS = ("containerd", "docker", "podman")
MUX_DIR = os.path.join(WORK, "mux")


def handler_table(env):
    """handler -> (backend, engine runtime)"""
    h = {
        "": ("containerd", ""),                     # containerd's default runtime (runc)
        "fast": ("containerd", "runc"),             # crisp rewrites it to containerd's "runc"
        "docker": ("docker", ""),                   # dockerd's default runtime
        "docker-alt": ("docker", env["ALT_RUNTIME"]),
        "legacy": ("podman", ""),
    }
    if env.get("CRUN_HANDLER"):
        h["crun"] = ("containerd", env["CRUN_HANDLER"])
    return h


def backend_entry(env, name):
    if name == "containerd":
        return {"kind": "cri", "endpoint": "unix://" + env["CONTAINERD_SOCK"]}
    sock = env["DOCKER_SOCK"] if name == "docker" else env["PODMAN_SOCK"]
    return {"kind": "docker", "endpoint": "unix://" + sock,
            "options": {"pod-infra-image": env["PAUSE_IMAGE"]}}


def make_config(env, backends=BACKENDS, handlers=None, images=None):
    """The config file's JSON (a dict) for these backends and handlers
    (default: every handler of handler_table on them; the default handler
    "" on the first backend when none of them has it)."""
    table = handler_table(env)
    if handlers is None:
        handlers = [h for h, (b, _) in table.items() if b in backends]
    cfg = {"backends": {b: backend_entry(env, b) for b in backends},
           "handlers": {}}
    for h in handlers:
        b, rt = table[h]
        cfg["handlers"][h] = {"backend": b, "runtime": rt} if rt else {"backend": b}
    if "" not in cfg["handlers"]:  # required: the first backend is the default
        cfg["handlers"][""] = {"backend": backends[0]}
    if images:
        cfg["images"] = images
    return cfg


def write_config(path, cfg):
    """Writes the file whole (rename), as an operator's tool would."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(cfg if isinstance(cfg, str) else json.dumps(cfg, indent=2))
    os.rename(tmp, path)
    return path


class Env(dict):
    __getattr__ = dict.__getitem__


@pytest.fixture(scope="session")
def envs():
    ctrd_up = containerd_env_running()
    denv_path = os.path.join(WORK, "docker-env.sh")
    denv = read_env(denv_path) if os.path.exists(denv_path) else {}
    docker_up = all(Engine(k, denv.get("%s_SOCK" % k.upper(), "/nonexistent")).ping() for k in ("docker", "podman"))
    env = Env(env_up())
    env.update(docker_env_up("docker", "podman"))
    c = CRIClient("unix://" + env.CONTAINERD_SOCK, "setup")
    try:
        c.img("PullImage", image=v1.ImageSpec(image=env.BUSYBOX_IMAGE))
    finally:
        c.close()
    for kind in ("docker", "podman"):
        Engine(kind, env["%s_SOCK" % kind.upper()]).pull(env.BUSYBOX_IMAGE)
    yield env
    if os.environ.get("CRISP_TEST_KEEP_ENV") == "1":
        return
    if not docker_up:
        run_env_script("docker-down.sh", timeout=180)
    if not ctrd_up:
        run_env_script("down.sh", timeout=120)


@pytest.fixture(scope="session")
def engines(envs):
    return {k: Engine(k, envs["%s_SOCK" % k.upper()]) for k in ("docker", "podman")}


_procs = []


def _stop_checked(p):
    stop_all_checked([p])


@atexit.register
def _kill_leftovers():
    """An interrupted session leaves no crisp behind."""
    for p in _procs:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


@pytest.fixture(scope="session")
def refs(envs):
    """Clients that ask each engine itself: containerd's socket, and a
    single-backend crisp for docker and for podman, without a node view
    (--node-view off): every status an inspect, so that a change made
    through the mux shows at once, not within one event's latency (podman
    sends its events late)."""
    out = {"containerd": CRIClient("unix://" + envs.CONTAINERD_SOCK, "ref-containerd")}
    procs = []
    for kind in ("docker", "podman"):
        args = ["--backend", "docker:unix://" + envs["%s_SOCK" % kind.upper()],
                "--pod-infra-image", envs.PAUSE_IMAGE, "--node-view", "off"]
        for h, (b, rt) in handler_table(envs).items():
            if b == kind:  # the handlers the mux gives this backend
                args += ["--runtime-handler", "%s=%s" % (h, rt)]
        p = CrispProc("ref-" + kind, args, os.path.join(envs.SOCK_DIR, "crisp-ref-%s.sock" % kind))
        _procs.append(p)
        procs.append(p)
        p.start()
        out[kind] = p.client
    yield out
    out["containerd"].close()
    stop_all_checked(procs)


@pytest.fixture(scope="session")
def mux_config_path(envs):
    return write_config(os.path.join(MUX_DIR, "crisp.json"), make_config(envs))


@pytest.fixture(scope="session")
def mux(envs, mux_config_path):
    p = CrispProc("mux", ["--config", mux_config_path], os.path.join(envs.SOCK_DIR, "crisp-mux.sock"))
    _procs.append(p)
    p.start()
    yield p
    _stop_checked(p)


@pytest.fixture
def cri(mux):
    if not mux.alive():
        mux.start()  # a test before this one stopped it
    if mux.client is None:
        mux.client = CRIClient("unix://" + mux.sock, mux.name)
    yield mux.client
    if not mux.alive():
        pytest.fail("crisp (mux) died during this test (status %s)\n--- %s (tail) ---\n%s"
                    % (mux.proc.returncode, mux.log, tail(mux.log)), pytrace=False)


@pytest.fixture
def own_crisp(request, envs):
    """own_crisp(name, cfg, start=True): a crisp of this test with its own
    config file ($WORK/mux/<name>.json), stopped and checked at the end."""
    mine = []

    def make(name, cfg, start=True, args=()):
        path = write_config(os.path.join(MUX_DIR, "%s.json" % name), cfg)
        p = CrispProc(name, ["--config", path] + list(args), os.path.join(envs.SOCK_DIR, "crisp-%s.sock" % name))
        p.config_path = path
        _procs.append(p)
        mine.append(p)
        if start:
            p.start()
        return p
    yield make
    failures = []
    for p in mine:
        if p.proc is not None and p.proc.poll() is None:
            failures += p.stop()
        else:
            failures += p.check_log()
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


# ---------------------------------------------------------------------------
# pods through the mux, cleaned up through each engine's own reference


class Pods:
    def __init__(self, client, refs, env, test_name):
        self.c = client
        self.refs = refs
        self.env = env
        self.table = handler_table(env)
        self.test = test_name
        self.pods = {}        # pod id -> (backend, config)
        self.ctrs = {}        # container id -> (pod id, backend, config)

    def backend_of(self, handler):
        return self.table[handler][0]

    def run(self, handler, name=None, client=None, backend=None, **kw):
        cfg = pod_config("%s-%s" % (name or self.test, handler or "default"), **kw)
        c = client or self.c
        pid = c.rt("RunPodSandbox", config=cfg, runtime_handler=handler, deadline=120).pod_sandbox_id
        assert pid, "RunPodSandbox answered an empty id"
        self.pods[pid] = (backend or self.backend_of(handler), cfg)
        return pid

    def create(self, pid, name, command=SLEEPER, start=True, client=None, **kw):
        cfg = container_config(name, command, self.env.BUSYBOX_IMAGE, **kw)
        sbcfg = self.pods[pid][1]
        os.makedirs(os.path.join(sbcfg.log_directory, name), exist_ok=True)
        c = client or self.c
        cid = c.rt("CreateContainer", pod_sandbox_id=pid, config=cfg, sandbox_config=sbcfg,
                   deadline=60).container_id
        assert cid, "CreateContainer answered an empty id"
        self.ctrs[cid] = (pid, self.pods[pid][0], cfg)
        if start:
            c.rt("StartContainer", container_id=cid, deadline=60)
        return cid

    def log_path(self, cid):
        pid, _, cfg = self.ctrs[cid]
        return os.path.join(self.pods[pid][1].log_directory, cfg.log_path)

    def forget(self, pid):
        self.pods.pop(pid, None)
        for cid in [c for c, v in self.ctrs.items() if v[0] == pid]:
            del self.ctrs[cid]

    def cleanup(self):
        errors = []
        for cid, (pid, b, _) in reversed(list(self.ctrs.items())):
            ref = self.refs[b]
            cleanup_call(ref, "StopContainer", errors, "%s on %s" % (cid[:12], b), container_id=cid, timeout=0,
                         deadline=60)
            cleanup_call(ref, "RemoveContainer", errors, "%s on %s" % (cid[:12], b), container_id=cid, deadline=60)
        for pid, (b, cfg) in reversed(list(self.pods.items())):
            ref = self.refs[b]
            for m in ("StopPodSandbox", "RemovePodSandbox"):
                cleanup_call(ref, m, errors, "%s on %s" % (pid[:12], b), pod_sandbox_id=pid, deadline=90)
            remove_cgroup(cfg.linux.cgroup_parent)
        return errors


@pytest.fixture
def pods(request, cri, refs, envs):
    p = Pods(cri, refs, envs, request.node.name)
    yield p
    errors = p.cleanup()
    assert not errors, "cleanup failed: %s" % errors


def where(refs, kind, ident):
    """The backends whose own answer knows this sandbox ("pod") or container."""
    out = []
    for b, ref in refs.items():
        try:
            if kind == "pod":
                ref.rt("PodSandboxStatus", pod_sandbox_id=ident, deadline=30)
            else:
                ref.rt("ContainerStatus", container_id=ident, deadline=30)
            out.append(b)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, (b, e.code(), e.details())
    return out


# ---------------------------------------------------------------------------
# reporting


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        add_log_tails(rep, [p for p in _procs
                            if os.path.exists(p.log) and os.path.getmtime(p.log) >= time.time() - 600])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    summarize_logs(terminalreporter, _procs)


__all__ = ["signal", "wait_for", "rpc_error"]
