"""SIGHUP reloads the configuration file: no call or connection dropped,
handlers added and removed, a backend the file no longer names retired once
its calls have ended, a bad file keeping the running configuration."""
import copy
import os
import re
import signal
import threading
import time

import grpc

from conftest import make_config, write_config
from crisptest import wait_for
from crilib import CRIClient, rpc_error, v1

LOADED = r"event=config_loaded "
FAILED = r"event=config_reload_failed "


def reload(p, cfg=None, pattern=LOADED):
    """Writes cfg (when given), sends SIGHUP, waits for the outcome in the log."""
    if cfg is not None:
        write_config(p.config_path, cfg)
    mark = p.log_mark()
    p.send_signal(signal.SIGHUP)
    return p.wait_log(mark, pattern, timeout=30)


def engine_backends_retired(text):
    return re.findall(r'event=backend_retired backend="?((?:cri|docker):[^" ]+)', text)


class Load:
    """Threads calling crisp as fast as they can, each on its own connection,
    counting calls and keeping every failure."""

    def __init__(self, sock, calls):
        self.calls = calls  # [(client method name, method, kwargs)]
        self.n = 0
        self.failures = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = []
        self.sock = sock

    def _run(self, i, calls):
        c = CRIClient("unix://" + self.sock, "load-%d" % i)
        try:
            while not self.stop.is_set():
                for kind, m, kw in calls:
                    try:
                        getattr(c, kind)(m, deadline=60, **kw)
                    except grpc.RpcError as e:
                        with self.lock:
                            self.failures.append((m, e.code(), e.details()))
                    with self.lock:
                        self.n += 1
        finally:
            c.close()

    def start(self, groups):
        for i, calls in enumerate(groups):
            t = threading.Thread(target=self._run, args=(i, calls), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def progress(self, more):
        """Waits until `more` calls have ended since now."""
        start = self.n
        wait_for(lambda: self.n >= start + more or self.failures, timeout=60,
                 what="%d more calls under load" % more)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(120)
        return self.n


def test_reload_under_load(own_crisp, envs, pods):
    """Eight reloads while three connections call crisp non-stop; every other
    reload changes the docker backend's handlers, so its instance is replaced
    (the old one retired under running calls, ExecSyncs included)."""
    base = make_config(envs)
    more = copy.deepcopy(base)
    more["handlers"]["extra"] = {"backend": "docker", "runtime": envs.ALT_RUNTIME}
    p = own_crisp("mux-reload", base)
    c = p.client
    made = {}
    for b, h in (("containerd", ""), ("docker", "docker"), ("podman", "legacy")):
        pid = pods.run(h, client=c, name="reload")
        made[b] = (pid, pods.create(pid, "c", client=c))
    load = Load(p.sock, []).start([
        [("rt", "Version", {}), ("rt", "Status", {}), ("rt", "ListPodSandbox", {}),
         ("rt", "ListContainers", {}), ("img", "ListImages", {})],
        [("rt", "ContainerStatus", {"container_id": made[b][1]}) for b in made] +
        [("rt", "PodSandboxStatus", {"pod_sandbox_id": made[b][0]}) for b in made],
        [("rt", "ExecSync", {"container_id": made["docker"][1], "cmd": ["sleep", "0.3"], "timeout": 30}),
         ("rt", "ExecSync", {"container_id": made["containerd"][1], "cmd": ["true"], "timeout": 30})],
    ])
    mark = p.log_mark()
    try:
        load.progress(20)
        for i in range(8):
            reload(p, more if i % 2 == 0 else base)
            load.progress(30)
    finally:
        n = load.finish()
    assert not load.failures, "%d of %d calls failed: %s" % (len(load.failures), n, load.failures[:5])
    text = p.log_since(mark)
    assert len(re.findall(LOADED, text)) == 8
    # the docker backend was replaced 8 times; containerd's and podman's never
    wait_for(lambda: len(engine_backends_retired(p.log_since(mark))) >= 8, timeout=30,
             what="8 docker backends retired")
    retired = engine_backends_retired(p.log_since(mark))
    assert set(retired) == {"docker:unix://" + envs.DOCKER_SOCK}, retired
    # the handler of the last configuration (base: no "extra")
    code, msg = rpc_error(c.rt, "RunPodSandbox", runtime_handler="extra",
                          config=v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name="x", uid="x",
                                                                                    namespace="x")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg)


def test_handler_added_by_reload(own_crisp, envs, pods, engines):
    cfg = make_config(envs)
    p = own_crisp("mux-add", cfg)
    code, msg = rpc_error(pods.run, "docker-extra", client=p.client, backend="docker")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and '"docker-extra"' in msg, (code, msg)
    cfg["handlers"]["docker-extra"] = {"backend": "docker", "runtime": envs.ALT_RUNTIME}
    reload(p, cfg)
    assert "docker-extra" in [h.name for h in p.client.rt("Status").runtime_handlers]
    pid = pods.run("docker-extra", client=p.client, backend="docker")
    assert engines["docker"].runtime_of(pid) == envs.ALT_RUNTIME
    st = p.client.rt("PodSandboxStatus", pod_sandbox_id=pid).status
    assert st.runtime_handler == "docker-extra"


def test_backend_removed_by_reload_is_retired_after_its_calls(own_crisp, envs, pods, engines, refs):
    p = own_crisp("mux-remove", make_config(envs))
    c = p.client
    pid = pods.run("legacy", client=c, name="retire")
    cid = pods.create(pid, "c", client=c)
    out = {}

    def long_exec():
        try:
            out["r"] = c.rt("ExecSync", container_id=cid, timeout=60, deadline=90,
                            cmd=["sh", "-c", "touch /tmp/started; sleep 4; echo done"])
        except grpc.RpcError as e:
            out["e"] = (e.code(), e.details())
    t = threading.Thread(target=long_exec)
    t.start()
    podman = engines["podman"]
    wait_for(lambda: podman.exec_run(cid, ["test", "-f", "/tmp/started"])[0] == 0 or "e" in out,
             timeout=30, what="the ExecSync to run")
    mark = p.log_mark()
    reload(p, make_config(envs, backends=("containerd", "docker")))
    retired_name = "docker:unix://" + envs.PODMAN_SOCK
    assert retired_name not in engine_backends_retired(p.log_since(mark)), "retired under a running call"
    # the podman handler is gone at once, the call that runs there goes on
    code, msg = rpc_error(c.rt, "RunPodSandbox", runtime_handler="legacy",
                          config=v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name="x", uid="x",
                                                                                    namespace="x")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg)
    t.join(90)
    assert "e" not in out, out.get("e")
    assert out["r"].stdout == b"done\n"
    text = p.wait_log(mark, r'event=backend_retired backend="?%s' % re.escape(retired_name), timeout=15)
    if "method=ExecSync" in text:  # the call's own line (debug level)
        assert text.index("method=ExecSync") < text.index(retired_name, text.index("event=backend_retired")), \
            "retired before its call ended"
    # what only podman had is nobody's now: NOT_FOUND from those left
    code, _ = rpc_error(c.rt, "PodSandboxStatus", pod_sandbox_id=pid)
    assert code == grpc.StatusCode.NOT_FOUND
    assert refs["podman"].rt("PodSandboxStatus", pod_sandbox_id=pid).status.id == pid
    assert [h.name for h in c.rt("Status").runtime_handlers] == list(make_config(
        envs, backends=("containerd", "docker"))["handlers"])


def test_bad_reload_keeps_the_running_configuration(own_crisp, envs, pods):
    good = make_config(envs)
    p = own_crisp("mux-bad", good)
    c = p.client
    pid = pods.run("docker", client=c, name="bad-reload")
    handlers = [h.name for h in c.rt("Status").runtime_handlers]
    bad_kind = copy.deepcopy(good)
    bad_kind["backends"]["podman"]["kind"] = "rkt"
    no_default = copy.deepcopy(good)
    del no_default["handlers"][""]
    bad_type = copy.deepcopy(good)
    bad_type["backends"]["docker"]["options"]["pod-infra-image"] = 7
    same_runtime = copy.deepcopy(good)
    same_runtime["handlers"]["also-default"] = {"backend": "containerd"}
    bad_url = copy.deepcopy(good)
    bad_url["backends"]["docker"]["endpoint"] = "http://localhost:2375"
    cases = [
        ('{"backends": {', r"not valid JSON \(line 1, column"),
        (bad_kind, r'backends\.podman\.kind: unknown kind \\"rkt\\"'),
        (no_default, r'the default handler \\"\\" is missing'),
        (bad_type, r"backends\.docker\.options\.pod-infra-image: want a string"),
        (same_runtime, r'handlers\.\\"also-default\\"\.runtime'),
        (bad_url, r"backends\.docker: unsupported address http://localhost:2375"),
        (None, r"No such file or directory"),
    ]
    for cfg, why in cases:
        if cfg is None:
            os.unlink(p.config_path)
        text = reload(p, cfg, FAILED)
        line = [l for l in text.splitlines() if "config_reload_failed" in l][0]
        assert p.config_path in line and re.search(why, line), (why, line)
        assert "kept the running configuration" in line
        assert [h.name for h in c.rt("Status").runtime_handlers] == handlers
        assert c.rt("PodSandboxStatus", pod_sandbox_id=pid).status.id == pid
    assert p.alive()
    # and a good file again
    reload(p, good)
    t0 = time.time()
    assert c.rt("PodSandboxStatus", pod_sandbox_id=pid).status.id == pid
    assert time.time() - t0 < 10
