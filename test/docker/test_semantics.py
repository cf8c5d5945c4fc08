"""The CRI semantics containerd honours (issue 8 items 2-8, issue 9 items
5-9, and what the grpc-go suite found): each test runs the same requests against
containerd's CRI (the reference: test/env/up.sh's private containerd) and
against crisp in front of the engine, and compares what comes out.

`ref` is a K8s helper on containerd (cleaned up the same way); `k8s` the one
on crisp (per engine)."""
import json
import os
import re
import signal
import subprocess
import threading
import time

import grpc
import pytest

from conftest import (ENV_DIR, SLEEPER, WORK, CRIClient, K8s, code_of, kill_engine, read_container_log,
                      read_env, restart_engine, v1, wait_for)

MIB = 1024 * 1024


class _NoEngine:
    kind = "containerd"

    def ping(self):
        return False


@pytest.fixture(scope="session")
def ctrd(denv):
    """containerd with its CRI plugin (up.sh: idempotent, shares the registry)."""
    r = subprocess.run([os.path.join(ENV_DIR, "up.sh")], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    env = read_env(os.path.join(WORK, "env.sh"))
    c = CRIClient("unix://" + env["CONTAINERD_SOCK"], "containerd")
    c.img("PullImage", image=v1.ImageSpec(image=denv.BUSYBOX_IMAGE))
    yield c
    c.close()


@pytest.fixture
def ref(request, ctrd, denv):
    k = K8s(ctrd, _NoEngine(), denv, request.node.name + "-ref")
    yield k
    k.cleanup()


def both(ref, k8s):
    """(name, helper) for the reference and crisp."""
    return [("containerd", ref), ("crisp-" + k8s.engine.kind, k8s)]


def sec_config(k, pod, name, command, sc, start=True, **kw):
    cfg = k.container_config(name, command, **kw)
    cfg.linux.security_context.CopyFrom(sc)
    os.makedirs(os.path.dirname(os.path.join(k.configs[pod].log_directory, cfg.log_path)), exist_ok=True)
    cid = k.c.rt("CreateContainer", pod_sandbox_id=pod, config=cfg, sandbox_config=k.configs[pod]).container_id
    k.ctr_ids.append(cid)
    k.ctr_configs[cid] = (pod, cfg)
    if start:
        k.c.rt("StartContainer", container_id=cid)
    return cid


# ---- issue 8 item 2: RunAsGroup needs a user --------------------------------------------------


def test_group_without_user_refused(ref, k8s):
    outcomes = {}
    for name, k in both(ref, k8s):
        pod = k.run_pod()
        sc = v1.LinuxContainerSecurityContext(run_as_group=v1.Int64Value(value=1002))
        code, msg = code_of(sec_config, k, pod, "grp", ["id"], sc)
        outcomes[name] = (code, msg)
        assert "without user" in msg, (name, code, msg)
        sc.run_as_username = "nobody"  # a name and a group: allowed
        cid = sec_config(k, pod, "grp2", ["sh", "-c", "id -g; sleep 30"], sc)
        out = k.c.rt("ExecSync", container_id=cid, cmd=["id", "-g"], timeout=10).stdout
        assert out.strip() == b"1002", (name, out)
    print(outcomes)


# ---- issue 8 item 3 (and 6): seccomp --------------------------------------------------------


def seccomp_mode(k, cid):
    out = k.c.rt("ExecSync", container_id=cid, cmd=["grep", "Seccomp:", "/proc/self/status"], timeout=10).stdout
    return out.split()[1].decode()


DENY_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW",
              "syscalls": [{"names": ["mkdir", "mkdirat", "sethostname"], "action": "SCMP_ACT_ERRNO"}]}


def test_seccomp_profiles(ref, k8s):
    prof = os.path.join(WORK, "seccomp-deny-mkdir.json")
    with open(prof, "w") as f:
        json.dump(DENY_MKDIR, f)
    P = v1.SecurityProfile
    cases = [
        ("unset", v1.LinuxContainerSecurityContext(), "0"),
        ("runtime-default", v1.LinuxContainerSecurityContext(seccomp=P(profile_type=P.RuntimeDefault)), "2"),
        ("unconfined", v1.LinuxContainerSecurityContext(seccomp=P(profile_type=P.Unconfined)), "0"),
        ("localhost", v1.LinuxContainerSecurityContext(seccomp=P(profile_type=P.Localhost, localhost_ref=prof)), "2"),
        ("legacy-localhost", v1.LinuxContainerSecurityContext(seccomp_profile_path="localhost/" + prof), "2"),
        ("legacy-default", v1.LinuxContainerSecurityContext(seccomp_profile_path="docker/default"), "2"),
    ]
    for name, k in both(ref, k8s):
        pod = k.run_pod()
        for i, (what, sc, want) in enumerate(cases):
            cid = sec_config(k, pod, "s%d" % i, SLEEPER, sc)
            assert seccomp_mode(k, cid) == want, (name, what)
            if what.endswith("localhost"):
                r = k.c.rt("ExecSync", container_id=cid, cmd=["mkdir", "/tmp/x"], timeout=10)
                assert r.exit_code != 0, (name, what, r)
        # a name the CRI does not define: refused (not read as a file)
        code, msg = code_of(sec_config, k, pod, "bad", SLEEPER,
                            v1.LinuxContainerSecurityContext(seccomp_profile_path=prof))
        assert code != grpc.StatusCode.OK and "seccomp" in msg.lower(), (name, code, msg)


def sandbox_pid(k, pod):
    """The sandbox's (pause) process on the node."""
    if k.engine.kind == "containerd":
        return json.loads(k.c.rt("PodSandboxStatus", pod_sandbox_id=pod, verbose=True).info["info"])["pid"]
    return k.engine.inspect(pod)["State"]["Pid"]


def ctr_pid(k, cid):
    """A container's process on the node (exec into a privileged container
    fails on these machines: runc asks for CAP_SYS_RESOURCE)."""
    if k.engine.kind == "containerd":
        return json.loads(k.c.rt("ContainerStatus", container_id=cid, verbose=True).info["info"])["pid"]
    return k.engine.inspect(cid)["State"]["Pid"]


def host_seccomp_mode(pid):
    with open("/proc/%d/status" % pid) as f:
        return re.search(r"^Seccomp:\s*(\d)", f.read(), re.M).group(1)


def test_seccomp_pod_and_privileged(ref, k8s):
    """The pod's own profile (the sandbox's): unset is unconfined, a name
    the CRI does not define refused; a privileged container has none, an
    invalid name is refused all the same (containerd's order)."""
    P = v1.SecurityProfile
    for name, k in both(ref, k8s):
        pod = k.run_pod()
        assert host_seccomp_mode(sandbox_pid(k, pod)) == "0", name
        cfg = k.pod_config(name="bad-seccomp")
        cfg.linux.security_context.seccomp_profile_path = "not-a-profile"
        code, msg = code_of(k.c.rt, "RunPodSandbox", config=cfg)
        assert code != grpc.StatusCode.OK and "profile" in msg.lower(), (name, code, msg)
        cfg = k.pod_config(name="priv-seccomp")
        cfg.linux.security_context.privileged = True
        cfg.linux.security_context.seccomp.profile_type = P.RuntimeDefault
        pod = k.run_pod(config=cfg)
        assert host_seccomp_mode(sandbox_pid(k, pod)) == "0", name
        sc = v1.LinuxContainerSecurityContext(privileged=True, seccomp=P(profile_type=P.RuntimeDefault))
        cid = sec_config(k, pod, "priv", SLEEPER, sc)
        assert host_seccomp_mode(ctr_pid(k, cid)) == "0", name
        sc = v1.LinuxContainerSecurityContext(privileged=True, seccomp_profile_path="not-a-profile")
        code, msg = code_of(sec_config, k, pod, "privbad", SLEEPER, sc)
        assert code != grpc.StatusCode.OK and "profile" in msg.lower(), (name, code, msg)


# ---- issue 8 item 6: masked and read-only paths -----------------------------------------------


def test_masked_and_readonly_paths(ref, k8s):
    sc = v1.LinuxContainerSecurityContext(masked_paths=["/etc/group", "/proc/kcore"],
                                          readonly_paths=["/proc/sys", "/proc/bus"])
    for name, k in both(ref, k8s):
        pod = k.run_pod()
        cid = sec_config(k, pod, "masked", SLEEPER, sc)
        grp = k.c.rt("ExecSync", container_id=cid, cmd=["cat", "/etc/group"], timeout=10)
        assert grp.stdout == b"", (name, grp)
        w = k.c.rt("ExecSync", container_id=cid, cmd=["sh", "-c", "echo x > /proc/sys/kernel/domainname"],
                   timeout=10)
        assert w.exit_code != 0, (name, w)
        ok = k.c.rt("ExecSync", container_id=cid, cmd=["cat", "/etc/passwd"], timeout=10)
        assert b"root" in ok.stdout, (name, ok)


# ---- issue 8 item 4: ImageStatus is the image, however it is named ----------------------------


def test_image_status_any_reference(ref, k8s, denv):
    for name, k in both(ref, k8s):
        c = k.c
        img = c.img("ImageStatus", image=v1.ImageSpec(image=denv.BUSYBOX_IMAGE)).image
        assert img.id, name
        refs = [img.id, img.id.split(":")[-1], img.id.split(":")[-1][:12]] + list(img.repo_digests)
        for r in refs:
            got = c.img("ImageStatus", image=v1.ImageSpec(image=r)).image
            assert got == img, (name, r, got, img)
        # no image: an empty answer; a name with '..' is no image either
        for r in ("localhost/none/../x:1", denv.BUSYBOX_IMAGE.rsplit(":", 1)[0] + "/../x:1"):
            assert not c.img("ImageStatus", image=v1.ImageSpec(image=r)).HasField("image"), (name, r)
            c.img("RemoveImage", image=v1.ImageSpec(image=r))  # idempotent: OK


# ---- issue 9 item 5: labels are the pod's ------------------------------------------------------


def labelled_image(engine, denv):
    """busybox with labels of its own (the engine's commit)."""
    body = {"Image": denv.BUSYBOX_IMAGE, "Cmd": ["true"],
            "Labels": {}}
    cid = engine.post("/containers/create", body)["Id"]
    img = engine.post("/commit", {"Labels": {"annotation.io.kubernetes.container.preStopHandler": "injected",
                                       "image-only": "1"}, "Cmd": ["true"]},
                container=cid, repo="crisp-test/labelled", tag="1")["Id"]
    engine.remove(cid, force=True)
    return img


def test_labels_are_the_pods(ref, k8s, engine, denv):
    img = labelled_image(engine, denv)
    own = {"io.crisp.runtime-handler": "evil", "io.kubernetes.docker.type": "x", "annotation.k": "v", "app": "a"}
    for name, k in both(ref, k8s):
        pod = k.run_pod(labels=own)
        ps_ = k.pod_status(pod)
        cfg = k.configs[pod]
        assert dict(ps_.labels) == dict(cfg.labels), (name, ps_.labels)
        assert dict(ps_.annotations) == dict(cfg.annotations), (name, ps_.annotations)
        assert ps_.runtime_handler == "", (name, ps_.runtime_handler)
        listed = k.c.rt("ListPodSandbox", filter=v1.PodSandboxFilter(label_selector=own)).items
        assert [p.id for p in listed] == [pod], name
        cid = k.create(pod, "main", SLEEPER, image=img if name != "containerd" else None)
        st = k.status(cid)
        want = k.ctr_configs[cid][1]
        assert dict(st.labels) == dict(want.labels) and dict(st.annotations) == dict(want.annotations), \
            (name, st.labels, st.annotations)
        for c in k.c.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=pod)).containers:
            assert "image-only" not in c.labels and "io.kubernetes.container.preStopHandler" not in c.annotations


# ---- issue 9 item 9: '=' in a selector key -------------------------------------------------------


def test_selector_key_with_equals(ref, k8s):
    for name, k in both(ref, k8s):
        a = k.run_pod(labels={"x=y": "z"})
        b = k.run_pod(labels={"x": "y=z"})
        got = [p.id for p in k.c.rt("ListPodSandbox", filter=v1.PodSandboxFilter(label_selector={"x=y": "z"})).items]
        assert got == [a], (name, got, a, b)
        got = [p.id for p in k.c.rt("ListPodSandbox", filter=v1.PodSandboxFilter(label_selector={"x": "y=z"})).items]
        assert got == [b], (name, got, a, b)


# ---- issue 8 item 7, grpc-go (a): Version and Status stay fast ---------------------------------


def test_version_status_burst(ref, k8s):
    """Version is answered from the engine's version learnt once (podman's
    GET /version takes seconds): each call within crictl's 2 s timeout, and
    a burst of Version and Status calls stays fast."""
    for name, k in both(ref, k8s):
        k.c.rt("Version", deadline=30)  # learnt (the crisp fixture asked already)
        for _ in range(10):
            assert k.c.rt("Version", deadline=2).runtime_api_version == "v1", name
        errors, t0 = [], time.time()

        def call(m):
            try:
                r = k.c.rt(m, deadline=10)
                if m == "Status":
                    assert all(c.status for c in r.status.conditions), r
            except Exception as e:  # noqa: BLE001
                errors.append("%s: %s" % (m, e))
        ts = [threading.Thread(target=call, args=("Version" if i % 2 else "Status",)) for i in range(40)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, (name, errors[:3])
        print("%s: 40 Version/Status calls in %.2f s" % (name, time.time() - t0))
        assert time.time() - t0 < 8, name


# ---- issue 8 item 8: the writable layer's filesystem -------------------------------------------


def test_stats_writable_layer_mountpoint(ref, k8s):
    for name, k in both(ref, k8s):
        pod = k.run_pod()
        cid = k.create(pod, "main", SLEEPER)
        fs = k.c.img("ImageFsInfo")
        mounts = set(f.fs_id.mountpoint for f in list(fs.image_filesystems) + list(fs.container_filesystems))
        s = k.c.rt("ContainerStats", container_id=cid).stats
        assert s.writable_layer.fs_id.mountpoint, (name, s.writable_layer)
        if name != "containerd":
            assert s.writable_layer.fs_id.mountpoint in mounts, (name, s.writable_layer, mounts)
        for s in k.c.rt("ListContainerStats").stats:
            assert s.writable_layer.fs_id.mountpoint, (name, s)


# ---- issue 9 item 8: an ExecSync timeout of 2^63-1 ------------------------------------------------


def test_exec_huge_timeout(ref, k8s):
    for name, k in both(ref, k8s):
        pod = k.run_pod()
        cid = k.create(pod, "main", SLEEPER)
        r = k.c.rt("ExecSync", container_id=cid, cmd=["echo", "ran"], timeout=2 ** 63 - 1, deadline=30)
        assert r.stdout == b"ran\n" and r.exit_code == 0, (name, r)


# ---- issue 9 items 6, 7: half-made sandboxes ----------------------------------------------------------


def test_half_made_sandbox_name_taken(k8s, engine, denv):
    """A sandbox that never started holds the name (a RunPodSandbox that
    failed half-way, its removal lost): the next RunPodSandbox of that pod
    takes the name back, under a fresh crisp too."""
    cfg = k8s.pod_config()
    md = cfg.metadata
    name = "k8s_POD_%s_%s_%s_%d" % (md.name, md.namespace, md.uid, md.attempt)
    left = engine.post("/containers/create", {"Image": denv.PAUSE_IMAGE,
                                              "Labels": {"io.kubernetes.docker.type": "podsandbox"}},
                       name=name)["Id"]
    pod = k8s.run_pod(config=cfg)
    assert pod != left
    assert engine.request("GET", "/containers/%s/json" % left)[0] == 404
    assert engine.inspect(pod)["Name"].lstrip("/") == name


def test_rename_suffix_after_crisp_restart(k8s, crisp):
    """A sandbox name held by a started sandbox: the new one is renamed with
    a random suffix; a freshly started crisp picks another one (random()
    unseeded picked the same, "name ... is already in use")."""
    cfg = k8s.pod_config()
    ids = [k8s.run_pod(config=cfg), k8s.run_pod(config=cfg)]
    crisp.restart()
    k8s.c = crisp.client
    ids.append(k8s.run_pod(config=cfg))
    assert len(set(ids)) == 3, ids


def test_engine_restart_during_run_pod(k8s, engine, denv):
    """The engine killed while 12 RunPodSandbox run (once it has made some):
    once it is back, the calls that failed leave no sandbox behind. What
    crisp knew the ID of it removes itself (retried until the engine
    answers); a sandbox whose create answer was lost holds the pod's name,
    and the kubelet's retry of that pod takes it back."""
    cfgs = [k8s.pod_config(name="halfmade-%d" % i) for i in range(12)]
    results = {}

    def run(i):
        try:
            results[i] = ("ok", k8s.run_pod(config=cfgs[i]))
        except grpc.RpcError as e:
            results[i] = (e.code(), e.details())

    def made():
        return [c for c in engine.containers(all=True, labels={"io.kubernetes.docker.type": "podsandbox"})
                if "halfmade" in c["Names"][0]]
    ts = [threading.Thread(target=run, args=(i,)) for i in range(12)]
    for t in ts:
        t.start()
    wait_for(lambda: made(), timeout=60, interval=0.02, what="a sandbox made")
    kill_engine(denv, engine.kind)
    for t in ts:
        t.join()
    restart_engine(denv, engine.kind)
    failed = [i for i in range(12) if results[i][0] != "ok"]
    print("failed:", len(failed), set(str(results[i][0]) for i in failed))
    for i in failed:  # the kubelet retries the pod
        results[i] = ("ok", k8s.run_pod(config=cfgs[i]))
    ok = set(r[1] for r in results.values())

    def leftovers():
        return [(c["Id"][:12], c["State"]) for c in made() if c["Id"] not in ok]
    wait_for(lambda: not leftovers(), timeout=60, interval=0.5,
             what="half-made sandboxes removed: %s" % leftovers())

# ---- issue 8 item 5: log rotation --------------------------------------------------------------


COUNTER = "trap 'exit 0' TERM; i=0; while :; do i=$((i+1)); echo line $i; [ $((i % 50)) = 0 ] && sleep 0.05; done"


def log_numbers(*paths):
    out = []
    for p in paths:
        with open(p, "rb") as f:
            for raw in f.read().decode(errors="replace").splitlines():
                m = re.match(r"^(\S+) (stdout|stderr) ([PF]) line (\d+)$", raw)
                assert m, "not a CRI log line in %s: %r" % (p, raw)
                out.append(int(m.group(4)))
    return out


def assert_once(nums, what):
    assert nums, what
    dup = len(nums) - len(set(nums))
    assert dup == 0, "%s: %d lines twice" % (what, dup)
    assert sorted(nums) == list(range(nums[0], nums[0] + len(nums))) and nums[0] == 1, \
        "%s: lines missing (first %s, last %s, %d lines)" % (what, nums[0], max(nums), len(nums))


def rotate(k, cid, path, n):
    rotated = "%s.20261129-0000%02d" % (path, n)
    os.rename(path, rotated)
    k.c.rt("ReopenContainerLog", container_id=cid)
    return rotated


def test_log_rotation(ref, k8s):
    """The kubelet's rotation: rename log_path, ReopenContainerLog; the renamed
    file stops growing, new output goes to a new log_path, and together they
    hold every line exactly once."""
    for name, k in both(ref, k8s):
        pod = k.run_pod()
        cid = k.create(pod, "counter", ["sh", "-c", COUNTER])
        path = k.log_path(cid)
        wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 10000, timeout=20, what=name)
        files = []
        for n in range(3):
            files.append(rotate(k, cid, path, n))
            time.sleep(0.3)
            size = os.path.getsize(files[-1])
            time.sleep(0.5)
            assert os.path.getsize(files[-1]) == size, "%s: the rotated file still grows" % name
            wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 1000, timeout=10, what=name)
        k.c.rt("StopContainer", container_id=cid, timeout=5)
        time.sleep(0.5)
        assert_once(log_numbers(*(files + [path])), name)


def test_log_survives_crisp_restart(k8s, crisp):
    """crisp killed (nothing stored) while a container logs, then rotation while
    it is down is undone by the kubelet (Reopen failed); restarted, it goes on
    from the last line of the file: every line once."""
    pod = k8s.run_pod()
    cid = k8s.create(pod, "counter", ["sh", "-c", COUNTER])
    path = k8s.log_path(cid)
    wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 10000, timeout=20, what="log")
    first = rotate(k8s, cid, path, 0)
    crisp.restart(signal.SIGKILL)
    time.sleep(1.0)  # lines the engine keeps while nobody follows
    crisp.restart(signal.SIGKILL)
    k8s.c = crisp.client
    wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 20000, timeout=20, what="resumed log")
    second = rotate(k8s, cid, path, 1)
    wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 1000, timeout=10, what="log after reopen")
    k8s.c.rt("StopContainer", container_id=cid, timeout=5)
    time.sleep(0.5)
    assert_once(log_numbers(first, second, path), "across two crisp restarts")


def test_log_cost_per_mb(k8s, crisp):
    """What following a log costs crisp: CPU seconds per MB of log written,
    for lines of 100 bytes written as fast as the container can (30,000 here;
    CRISP_TEST_LOG_LINES=100000 for bench/README's figure); every line
    reaches the log once, in order."""
    pod = k8s.run_pod()
    n = int(os.environ.get("CRISP_TEST_LOG_LINES", "30000"))  # bench/README: 100000
    cmd = "seq 1 %d | sed 's/$/ %s/'; sleep 60" % (n, "x" * 92)

    def cpu():
        with open("/proc/%d/stat" % crisp.proc.pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    c0, t0 = cpu(), time.time()
    cid = k8s.create(pod, "bulk", ["sh", "-c", cmd])
    path = k8s.log_path(cid)

    def count():
        if not os.path.exists(path):
            return 0
        with open(path, "rb") as f:
            return f.read().count(b" F ")
    wait_for(lambda: count() >= n, timeout=120, interval=0.5, what="%d lines in %s" % (n, path))
    used, size = cpu() - c0, os.path.getsize(path) / 1e6
    nums = [int(line.split(" ")[0]) for _, line in read_container_log(path)]  # P pieces joined
    assert nums == list(range(1, n + 1)), "lines lost, repeated or out of order"
    print("crisp CPU: %.3f s for %.1f MB of log (%.1f ms/MB), %.1f s wall" % (used, size, used * 1000 / size,
                                                                        time.time() - t0))
    # bounded, with room for the sanitizer build and a loaded machine
    assert used < 0.05 + size * 0.25, "%.3f s of crisp CPU for %.1f MB" % (used, size)


# ---- grpc-go (c), (d), issue 9 item 9: StartContainer and its log ------------------------------------


def test_start_log_path_cases(ref, k8s):
    for name, k in both(ref, k8s):
        pod = k.run_pod()
        # (c) a regular file already there: written to
        cfg = k.container_config("pre", ["echo", "appended"])
        logp = os.path.join(k.configs[pod].log_directory, cfg.log_path)
        os.makedirs(os.path.dirname(logp), exist_ok=True)
        with open(logp, "w") as f:
            f.write("2026-01-01T00:00:00.000000000Z stdout F before\n")
        cid = k.c.rt("CreateContainer", pod_sandbox_id=pod, config=cfg, sandbox_config=k.configs[pod]).container_id
        k.ctr_ids.append(cid)
        k.c.rt("StartContainer", container_id=cid)
        wait_for(lambda: b"appended" in open(logp, "rb").read(), timeout=10, what=name)
        assert open(logp, "rb").read().startswith(b"2026-01-01T00:00:00.000000000Z stdout F before\n")
        # (d) no log directory made by a kubelet: made
        cfg = k.container_config("nodir", ["echo", "made"])
        cfg.log_path = "not-made-%d/0.log" % os.getpid()
        logp = os.path.join(k.configs[pod].log_directory, cfg.log_path)
        cid = k.c.rt("CreateContainer", pod_sandbox_id=pod, config=cfg, sandbox_config=k.configs[pod]).container_id
        k.ctr_ids.append(cid)
        k.c.rt("StartContainer", container_id=cid)
        wait_for(lambda: os.path.exists(logp) and b"made" in open(logp, "rb").read(), timeout=10, what=name)
        # a log that cannot be written: StartContainer fails and nothing runs
        cfg = k.container_config("bad", SLEEPER)
        cfg.log_path = "blocked/0.log"
        with open(os.path.join(k.configs[pod].log_directory, "blocked"), "w") as f:
            f.write("a file where the folder should be")
        cid = k.c.rt("CreateContainer", pod_sandbox_id=pod, config=cfg, sandbox_config=k.configs[pod]).container_id
        k.ctr_ids.append(cid)
        code, msg = code_of(k.c.rt, "StartContainer", container_id=cid)
        assert code != grpc.StatusCode.OK, name
        assert k.status(cid).state != v1.CONTAINER_RUNNING, (name, msg)
