"""Helpers shared by crisp's pytest suites (test/integration, test/docker,
test/mux); each suite's conftest.py keeps only its own fixtures.

- paths and knobs: REPO, WORK (CRISP_TEST_WORK), CRISP_BIN, CRISP_ARGS,
  CRISP_WRAPPER (e.g. valgrind) and the start/stop budgets that go with it;
- CrispProc: one crisp process with any arguments (--backend or --config),
  started and checked ready, stopped with SIGTERM (exit 0, socket removed, no
  sanitizer or valgrind report), killed, restarted, sent SIGHUP; its log
  read from a mark (log_mark / log_since / wait_log). A suite's own crisp
  (conftest's Crisp, DockerCrisp) is a subclass with its budgets;
- wait_for, wait_cri_ready, read_env, tail, cleanup_call;
- the test environments of test/env: env_up / docker_env_up, and engines
  killed and restarted (kill_engine / restart_engine);
- kubelet-shaped pod and container configs (pod_config, container_config),
  remove_cgroup for the pods' cgroup parents, container logs in the CRI and
  json-file formats (parse_container_log, read_container_log).

The python modules of crisp's other suites are put on sys.path: crilib
(test/integration: the python3-grpcio CRI client), enginelib (test/docker:
the Docker Engine API client), crigo (test/grpcgo: the grpc-go client).
A suite's conftest.py puts test/lib on sys.path and imports from here."""
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
for _d in ("integration", "docker", "grpcgo"):
    _p = os.path.join(REPO, "test", _d)
    if _p not in sys.path:
        sys.path.append(_p)

import grpc  # noqa: E402
import pytest  # noqa: E402

from crilib import CRIClient, v1  # noqa: E402,F401

ENV_DIR = os.path.join(REPO, "test", "env")
WORK = os.path.abspath(os.environ.get("CRISP_TEST_WORK", os.path.join(REPO, "test", ".work")))
os.environ["CRISP_TEST_WORK"] = WORK
CRISP_BIN = os.path.abspath(os.environ.get("CRISP_BIN", os.path.join(REPO, "build", "crisp")))
CRISP_ARGS = shlex.split(os.environ.get("CRISP_ARGS", "--log-level debug"))
CRISP_WRAPPER = shlex.split(os.environ.get("CRISP_WRAPPER", ""))
WRAPPED = bool(CRISP_WRAPPER)
START_TIMEOUT = 90.0 if WRAPPED else 40.0
STOP_TIMEOUT = 90.0 if WRAPPED else 15.0
LOG_TAIL = int(os.environ.get("CRISP_TEST_LOG_TAIL", "60"))
SANITIZER_RE = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer|MemorySanitizer)"
    r"|UndefinedBehaviorSanitizer|SUMMARY: \w+Sanitizer|runtime error: ")
VALGRIND_RE = re.compile(
    r"==\d+== (ERROR SUMMARY: [1-9]\d* errors"
    r"|\s*(definitely|indirectly) lost: [1-9][\d,]* bytes)")


def tail(path, n=LOG_TAIL):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return "(no log at %s)" % path
    return "\n".join(lines[-n:])


def read_env(path):
    """KEY=VALUE lines (shell-quoted values), as test/env writes them."""
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


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def wait_cri_ready(sock, timeout=20.0, proc=None, probe_deadline=None):
    """None once Version answers on the socket, else why not. Each try may
    take `probe_deadline` s (default 10, 30 under a wrapper): a docker backend
    asks the engine, and podman's /version runs conmon and the OCI runtime
    (seconds on a loaded machine)."""
    if probe_deadline is None:
        probe_deadline = 30 if WRAPPED else 10
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return "exited with status %s" % proc.returncode
        if os.path.exists(sock):
            c = CRIClient("unix://" + sock, "probe")
            try:
                c.rt("Version", deadline=probe_deadline)
                return None
            except grpc.RpcError as e:
                last = "%s %s" % (e.code(), e.details())
            finally:
                c.close()
        time.sleep(0.05)
    return "not ready after %.0fs (last error: %s)" % (timeout, last)


def crisp_log_path(name):
    """$WORK/logs/crisp-<name>-<binary>-<time>.log"""
    tag = re.sub(r"[^A-Za-z0-9]+", "_", os.path.relpath(CRISP_BIN, REPO)).strip("_")
    return os.path.join(WORK, "logs", "crisp-%s-%s-%s.log" % (name, tag, time.strftime("%Y%m%d-%H%M%S")))


def log_problems(path):
    """Sanitizer and valgrind reports in a crisp log."""
    problems = []
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        text = ""
    m = SANITIZER_RE.search(text)
    if m:
        problems.append("sanitizer report in %s: %r" % (path, text[m.start():m.start() + 300]))
    for m in VALGRIND_RE.finditer(text):
        problems.append("valgrind: %s (see %s)" % (m.group(1).strip(), path))
    return problems


class CrispProc:
    """A crisp process: `args` are crisp's arguments after the binary and its
    --listen (`listen` URLs, default unix://`sock`), CRISP_ARGS follow them,
    then `extra_args`; `launcher` goes before CRISP_WRAPPER and the binary
    (prlimit, systemd-socket-activate). stderr goes to
    $WORK/logs/crisp-<log_name or name>-<binary>-<time>.log. `owns_socket`:
    crisp must remove `sock` at SIGTERM (not so for a socket systemd passed);
    `keep_old_socket`: a file already at `sock` is left for crisp to deal with.

    A subclass sets its suite's budgets: start_timeout, stop_timeout,
    probe_deadline (of each readiness try), wait_log_timeout, and with_client
    (start() opens `client`, a CRIClient on `sock`)."""

    start_timeout = START_TIMEOUT
    stop_timeout = STOP_TIMEOUT
    probe_deadline = None
    wait_log_timeout = 15.0
    with_client = True

    def __init__(self, name, args, sock, extra_args=(), listen=None, launcher=(), owns_socket=True,
                 keep_old_socket=False, log_name=None, client_name=None):
        self.name = name
        self.sock = sock
        self.owns_socket = owns_socket
        self.keep_old_socket = keep_old_socket
        self.client_name = client_name or name
        self.log = crisp_log_path(log_name or name)
        listen_args = []
        for url in (listen if listen is not None else ["unix://" + sock]):
            listen_args += ["--listen", url]
        self.args = list(launcher) + CRISP_WRAPPER + [CRISP_BIN] + listen_args + list(args) + CRISP_ARGS + \
            list(extra_args)
        self.proc = None
        self.client = None
        self.problems = []
        self.starts = 0

    @property
    def argv(self):
        return self.args

    def __repr__(self):
        return "%s(%s, %s)" % (type(self).__name__, self.name, self.sock)

    def spawn(self):
        """Starts the process without waiting for it (see start)."""
        if not os.path.exists(CRISP_BIN):
            pytest.fail("crisp binary %s does not exist (build it: make, or set CRISP_BIN)" % CRISP_BIN,
                        pytrace=False)
        if self.owns_socket and not self.keep_old_socket and os.path.exists(self.sock):
            os.unlink(self.sock)
        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        with open(self.log, "ab") as logf:
            logf.write(("# %s\n" % " ".join(self.args)).encode())
            logf.flush()
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         cwd=REPO)
        self.starts += 1
        return self

    def start(self):
        self.spawn()
        err = wait_cri_ready(self.sock, self.start_timeout, self.proc, self.probe_deadline)
        if err:
            self.stop()
            pytest.fail("crisp %s did not come up: %s\n--- %s (tail) ---\n%s"
                        % (self.name, err, self.log, tail(self.log)), pytrace=False)
        if self.with_client:
            self.client = CRIClient("unix://" + self.sock, self.client_name)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def log_mark(self):
        """A position in crisp's log; log_since(mark) is what came after it."""
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def log_since(self, mark=0):
        with open(self.log, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def wait_log(self, mark, pattern, timeout=None, count=1):
        """The log after `mark` once `pattern` (a regex) is in it `count` times."""
        rx = re.compile(pattern)
        return wait_for(lambda: len(rx.findall(self.log_since(mark))) >= count and self.log_since(mark),
                        timeout=timeout or self.wait_log_timeout,
                        what="%dx %r in %s" % (count, pattern, self.log))

    def check_log(self):
        """Sanitizer and valgrind reports in the whole log."""
        return log_problems(self.log)

    def stop(self, sig=signal.SIGTERM, exited=False):
        """Stops crisp; returns what went wrong (empty: a clean exit).
        exited: the test made crisp exit itself; its status must be 0."""
        problems = []
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                problems.append("crisp %s did not exit within %.0f s of signal %d (killed)"
                                % (self.name, self.stop_timeout, sig))
                self.proc.kill()
                self.proc.wait()
            if sig == signal.SIGTERM and self.proc.returncode != 0:
                problems.append("crisp %s exited with status %s at SIGTERM (expected 0)"
                                % (self.name, self.proc.returncode))
        elif exited:
            if self.proc.returncode != 0:
                problems.append("crisp %s exited with status %s (expected 0)" % (self.name, self.proc.returncode))
        elif sig == signal.SIGTERM:
            problems.append("crisp %s had already exited (status %s)" % (self.name, self.proc.returncode))
        if self.owns_socket and os.path.exists(self.sock):
            if sig == signal.SIGTERM:
                problems.append("crisp %s left its socket %s behind" % (self.name, self.sock))
            try:
                os.unlink(self.sock)
            except OSError:
                pass
        problems += self.check_log()
        self.problems += problems
        return problems

    def restart(self, sig=signal.SIGTERM):
        problems = self.stop(sig)
        self.start()
        return problems


def stop_all_checked(procs):
    """Stops every one of them, then fails if any did not shut down cleanly."""
    report = []
    for p in procs:
        problems = p.stop()
        if problems:
            report.append("crisp %s did not shut down cleanly:\n  %s\n--- %s (tail) ---\n%s"
                          % (p.name, "\n  ".join(problems), p.log, tail(p.log)))
    if report:
        pytest.fail("\n".join(report), pytrace=False)


def add_log_tails(rep, procs, n=30):
    """A failed test's report gets the tail of these crisps' logs (each file once)."""
    seen = set()
    for p in procs:
        if p.log in seen or not os.path.exists(p.log):
            continue
        seen.add(p.log)
        rep.sections.append(("crisp log tail (%s)" % p.log, tail(p.log, n)))


def summarize_logs(terminalreporter, procs):
    """The session's end names the binary and every crisp's log."""
    if procs:
        terminalreporter.write_line("crisp binary: %s" % CRISP_BIN)
        for p in procs:
            terminalreporter.write_line("crisp log (%s): %s" % (p.name, p.log))


def cleanup_call(client, method, errors, what, **kw):
    """One Stop*/Remove* call of a test's cleanup: NOT_FOUND is fine, any
    other error is added to `errors` (naming `what`)."""
    try:
        client.rt(method, **kw)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            errors.append("%s %s: %s %s" % (method, what, e.code(), e.details()))


# ---------------------------------------------------------------------------
# the test environments (test/env)


def run_env_script(name, *args, timeout=300):
    r = subprocess.run([os.path.join(ENV_DIR, name)] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace")


def pid_alive(pidfile, pattern):
    try:
        pid = int(open(pidfile).read().strip())
        cmd = open("/proc/%d/cmdline" % pid, "rb").read().replace(b"\0", b" ").decode()
        return pattern in cmd
    except (OSError, ValueError):
        return False


def containerd_env_running():
    return pid_alive(os.path.join(WORK, "pids", "containerd.pid"), containerd_config()) and \
        pid_alive(os.path.join(WORK, "pids", "registry.pid"), os.path.join(WORK, "registry.yml"))


def env_up():
    """test/env/up.sh (registry + containerd); returns env.sh as a dict."""
    rc, out = run_env_script("up.sh")
    if rc != 0:
        raise AssertionError("test/env/up.sh failed:\n" + out)
    return read_env(os.path.join(WORK, "env.sh"))


def docker_env_up(*engines):
    """test/env/docker-up.sh [engines]; returns docker-env.sh as a dict."""
    rc, out = run_env_script("docker-up.sh", *engines)
    if rc != 0:
        raise AssertionError("test/env/docker-up.sh %s failed:\n%s" % (" ".join(engines), out))
    return read_env(os.path.join(WORK, "docker-env.sh"))


ENGINE_PIDFILES = {"docker": "dockerd.pid", "podman": "podman.pid", "containerd": "containerd.pid"}


def kill_engine(kind, sig=signal.SIGKILL):
    """Kills an engine daemon of this work dir's environment (dockerd, the
    podman service, or up.sh's containerd) and waits until it is gone."""
    pidfile = os.path.join(WORK, "pids", ENGINE_PIDFILES[kind])
    pid = int(open(pidfile).read().strip())
    os.kill(pid, sig)

    def gone():
        try:
            with open("/proc/%d/status" % pid) as f:
                return re.search(r"^State:\s+Z", f.read(), re.M) is not None
        except OSError:
            return True
    wait_for(gone, timeout=15, what="%s (pid %d) to exit" % (kind, pid))


def containerd_config():
    return os.path.join(os.environ.get("CRISP_TEST_CONTAINERD_DIR", os.path.join(WORK, "containerd")),
                        "config.toml")


def restart_engine(kind):
    """Starts an engine again after kill_engine, with its state: docker-up.sh
    for docker and podman; containerd by hand with up.sh's config (up.sh
    itself starts containerd afresh, its pods and images gone)."""
    if kind != "containerd":
        return docker_env_up(kind)
    env = read_env(os.path.join(WORK, "env.sh"))
    pidfile = os.path.join(WORK, "pids", "containerd.pid")
    if pid_alive(pidfile, containerd_config()):
        return env
    for p in (env["CONTAINERD_SOCK"], env["CONTAINERD_SOCK"] + ".ttrpc"):
        if os.path.exists(p):
            os.unlink(p)
    with open(env["CONTAINERD_LOG"], "ab") as logf:
        proc = subprocess.Popen(["containerd", "--config", containerd_config()], stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=logf, cwd=WORK, start_new_session=True)
    with open(pidfile + ".tmp", "w") as f:
        f.write("%d\n" % proc.pid)
    os.rename(pidfile + ".tmp", pidfile)
    err = wait_cri_ready(env["CONTAINERD_SOCK"], 60, proc)
    if err:
        raise AssertionError("containerd did not come back: %s\n%s" % (err, tail(env["CONTAINERD_LOG"], 30)))
    return env


# ---------------------------------------------------------------------------
# pods and containers the way the kubelet makes them

CGROUP_ROOT = "crisp-test"
# A long-running container that exits at once on SIGTERM (busybox `sleep` as
# PID 1 ignores SIGTERM, so every stop would wait out its whole grace period).
SLEEP_LOOP = "trap 'exit 0' TERM; while :; do sleep 0.2; done"
SLEEPER = ["sh", "-c", SLEEP_LOOP]


def kv(k, v, pb=v1):
    """KeyValue: v1's value is bytes, v1alpha2's a string."""
    f = pb.KeyValue.DESCRIPTOR.fields_by_name["value"]
    if f.type == f.TYPE_BYTES and isinstance(v, str):
        v = v.encode()
    return pb.KeyValue(key=k, value=v)


def log_dir(*parts):
    d = os.path.join(WORK, "pod-logs", *parts)
    os.makedirs(d, exist_ok=True)
    return d


def pod_config(name, namespace="crisp-test", labels=None, annotations=None, uid=None, pb=v1):
    """A kubelet-shaped PodSandboxConfig (log directory made, cgroup parent
    /crisp-test/pod<uid>)."""
    uid = uid or uuid.uuid4().hex[:12]
    name = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[-50:].strip("-")
    lbl = {"crisp-test": "1", "crisp-test/uid": uid}
    lbl.update(labels or {})
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
        hostname=name[:63],
        log_directory=log_dir("%s_%s_%s" % (namespace, name, uid)),
        labels=lbl,
        annotations=annotations if annotations is not None else {"crisp-test/annotation": "yes"},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent="/%s/pod%s" % (CGROUP_ROOT, uid),
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))))


def container_config(name, command, image, labels=None, env=None, attempt=0, pb=v1):
    lbl = {"crisp-test": "1", "crisp-test/container": name}
    lbl.update(labels or {})
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=attempt),
        image=pb.ImageSpec(image=image),
        command=list(command),
        envs=[kv(k, v, pb) for k, v in (env or {}).items()],
        labels=lbl,
        annotations={"crisp-test/container": name},
        log_path="%s/%d.log" % (name, attempt),
        linux=pb.LinuxContainerConfig())


def remove_cgroup(parent):
    """rmdir the (empty) pod cgroup in every hierarchy; failures ignored."""
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


CRI_LOG_RE = re.compile(r"^(\S+) (stdout|stderr) ([PF]) ?(.*)$")


def parse_container_log(text):
    """Lines of a container log -> [(stream, line)]. Accepts the CRI format the
    kubelet writes/reads ("<RFC3339Nano> <stream> <P|F> <text>", P = partial)
    and Docker's json-file lines ({"log": "text\\n", "stream": ..., "time": ...},
    what the docker backend's link shows)."""
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
