#!/usr/bin/python3
"""crisp benchmark, Docker backend part (run by bench/run-docker; needs Debian's
/usr/bin/python3). See bench/README.md.

  docker.py setup     --crisp S --pods N --image I --pause P --workdir W [--workers K]
  docker.py measure   --crisp S --docker S --crisp-pid P --dockerd-pid P --containerd-pid P
                      --exec-root D --workdir W --image I --pause P [...]
  docker.py teardown  --docker S [--crisp S]

setup creates the pods through crisp (the path under test). teardown talks to the
engine directly (force-removes every container carrying the bench's label), so the
cleanup works whatever crisp does. measure prints the table and writes
W/results-docker.txt and W/results-docker.json.
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (CRI client, /proc helpers, percentiles)
from bench import CRI, log, pctl, proc_cpu, proc_status  # noqa: E402

LABEL = "crisp-bench-docker"          # on every pod and container the bench makes
NS = "crisp-bench"
CGROUP_ROOT = "crisp-bench-docker"    # pods' cgroup parent: /crisp-bench-docker/pod<uid>
API = "/v1.41"
TYPE_LABEL = "io.kubernetes.docker.type"
CLK_TCK = os.sysconf("SC_CLK_TCK")
RT = "runtime.v1.RuntimeService/"


def label_filter(**kv):
    """?filters={"label":[...]} the way crisp writes it, URL-escaped"""
    f = {"label": ["%s=%s" % (k, v) for k, v in kv.items()]}
    return urllib.parse.quote(json.dumps(f, separators=(",", ":")), safe="")


FILTER_CTR = label_filter(**{TYPE_LABEL: "container"})
FILTER_SB = label_filter(**{TYPE_LABEL: "podsandbox"})


# ---------------------------------------------------------------------------
# Docker Engine API client: HTTP/1.1 over the unix socket, one persistent
# (keep-alive) connection per Engine object

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=120):
        super().__init__("docker", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


class Engine:
    def __init__(self, sock, timeout=120):
        self.sock = sock
        self.timeout = timeout
        self.conn = None
        self.connects = 0

    def call(self, method, path, body=None):
        """(status, raw body bytes); reconnects once when a kept-alive connection went away"""
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = UnixHTTPConnection(self.sock, self.timeout)
                self.connects += 1
            try:
                self.conn.request(method, API + path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                raw = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, raw
            except (ConnectionError, http.client.HTTPException, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method, path, body=None, ok=(200, 201, 204, 304)):
        st, raw = self.call(method, path, body)
        if st not in ok:
            raise RuntimeError("%s %s: HTTP %d %s" % (method, path, st, raw[:300].decode(errors="replace")))
        return json.loads(raw) if raw else None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------------------
# setup / teardown

def pod_config(i, logroot, prefix="bench"):
    """kubelet-shaped PodSandboxConfig + ContainerConfig (about 1 KiB of labels and
    annotations per container, like the relay bench's)"""
    pb = bench.pb
    uid = uuid.uuid4().hex[:16]
    name = "%s-%03d" % (prefix, i)
    logdir = os.path.join(logroot, "%s_%s_%s" % (NS, name, uid))
    # the kubelet makes the pod's log directory and the container's under it
    os.makedirs(os.path.join(logdir, "sleeper"), exist_ok=True)
    pod_labels = {LABEL: "1", "app": name, "io.kubernetes.pod.name": name,
                  "io.kubernetes.pod.namespace": NS, "io.kubernetes.pod.uid": uid}
    sbcfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=NS, attempt=0),
        hostname=name, log_directory=logdir, labels=pod_labels,
        annotations={"kubernetes.io/config.source": "api",
                     "kubernetes.io/config.seen": "2024-01-01T00:00:00.000000000Z"},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent="/%s/pod%s" % (CGROUP_ROOT, uid),
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))))
    ccfg = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="sleeper", attempt=0),
        command=["sleep", "3600"],
        labels={LABEL: "1", "io.kubernetes.container.name": "sleeper",
                "io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": NS,
                "io.kubernetes.pod.uid": uid},
        annotations={"io.kubernetes.container.hash": "%08x" % (i * 2654435761 % 2**32),
                     "io.kubernetes.container.restartCount": "0",
                     "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                     "io.kubernetes.container.terminationMessagePolicy": "File",
                     "io.kubernetes.pod.terminationGracePeriod": "30"},
        log_path="sleeper/0.log",
        linux=pb.LinuxContainerConfig())
    return sbcfg, ccfg


def crisp_pod(c, sbcfg, ccfg, image):
    """RunPodSandbox + CreateContainer + StartContainer, as the kubelet does"""
    pb = bench.pb
    pod_id = c.rt("RunPodSandbox", config=sbcfg).pod_sandbox_id
    ccfg.image.CopyFrom(pb.ImageSpec(image=image))
    cid = c.rt("CreateContainer", pod_sandbox_id=pod_id, config=ccfg, sandbox_config=sbcfg).container_id
    c.rt("StartContainer", container_id=cid)
    return pod_id, cid


def cmd_setup(a):
    c = CRI(a.crisp)
    pb = bench.pb
    t0 = time.time()
    # the kubelet pulls before it creates (the pause image crisp pulls itself)
    c.img("PullImage", image=pb.ImageSpec(image=a.image))
    c.img("PullImage", image=pb.ImageSpec(image=a.pause))
    logroot = os.path.join(a.workdir, "pod-logs")
    errors = []

    def one(i):
        sb, cc = pod_config(i, logroot)
        return crisp_pod(c, sb, cc, a.image)
    with cf.ThreadPoolExecutor(max_workers=a.workers) as ex:
        for f in cf.as_completed([ex.submit(one, i) for i in range(a.pods)]):
            try:
                f.result()
            except Exception as e:  # noqa: BLE001
                errors.append(str(e)[:300])
    if errors:
        log("%d of %d pods failed; first error: %s" % (len(errors), a.pods, errors[0]))
        return 1
    running = [x for x in c.rt("ListContainers").containers
               if LABEL in x.labels and x.state == pb.CONTAINER_RUNNING]
    ready = [p for p in c.rt("ListPodSandbox").items if LABEL in p.labels and p.state == pb.SANDBOX_READY]
    if len(running) < a.pods or len(ready) < a.pods:
        log("only %d of %d containers running, %d pods ready" % (len(running), a.pods, len(ready)))
        return 1
    log("%d pods with one running container each, made through crisp in %.1fs (%d threads)"
        % (a.pods, time.time() - t0, a.workers))
    return 0


def remove_cgroups():
    base = "/sys/fs/cgroup"
    try:
        hier = [os.path.join(base, d) for d in os.listdir(base)] + [base]
    except OSError:
        return
    for h in hier:
        top = os.path.join(h, CGROUP_ROOT)
        if os.path.isdir(top):
            for root, _, _ in sorted(os.walk(top, topdown=False), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(root)
                except OSError:
                    pass


def cmd_teardown(a):
    """force-removes every container with the bench's label, straight through the engine"""
    if not os.path.exists(a.docker):
        remove_cgroups()
        return 0
    t0 = time.time()
    try:
        lst = Engine(a.docker, 30).json("GET", "/containers/json?all=1&filters=" + label_filter(**{LABEL: "1"}))
    except Exception as e:  # noqa: BLE001
        log("teardown: cannot list the engine's containers: %s" % e)
        return 1
    # members first, then the sandboxes they join
    ids = sorted(lst, key=lambda x: x.get("Labels", {}).get(TYPE_LABEL) == "podsandbox")
    errors = []
    local = threading.local()

    def rm(cid):
        e = getattr(local, "e", None) or Engine(a.docker, 60)
        local.e = e
        try:
            st, raw = e.call("DELETE", "/containers/%s?force=1&v=1" % cid)
            if st not in (204, 404):
                errors.append("%s: HTTP %d %s" % (cid[:12], st, raw[:200]))
        except Exception as ex:  # noqa: BLE001
            errors.append("%s: %s" % (cid[:12], ex))
    members = [x["Id"] for x in ids if x.get("Labels", {}).get(TYPE_LABEL) != "podsandbox"]
    sandboxes = [x["Id"] for x in ids if x.get("Labels", {}).get(TYPE_LABEL) == "podsandbox"]
    with cf.ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(rm, members))
        list(ex.map(rm, sandboxes))
    remove_cgroups()
    if errors:
        log("teardown: %d errors, first: %s" % (len(errors), errors[0]))
    log("removed %d containers in %.1fs" % (len(ids), time.time() - t0))
    return 1 if errors else 0


# ---------------------------------------------------------------------------
# measure: CPU accounting

def shim_pids(exec_root):
    """the containerd-shim-runc-v2 processes serving our dockerd's containerd"""
    sock = os.path.join(exec_root, "containerd", "containerd.sock").encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock in argv:
            out.append(int(d))
    return out


def safe_cpu(pid):
    try:
        return proc_cpu(pid)
    except (OSError, IndexError):
        return 0.0


def schedstat_s(pid, field):
    """field `field` of /proc/PID/task/*/schedstat summed over the process's live
    threads, in seconds (0: time run, 1: time runnable but waiting for a CPU)"""
    tot = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0.0
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                tot += int(f.read().split()[field])
        except (OSError, IndexError, ValueError):
            pass
    return tot / 1e9


def run_delay(pid):
    """seconds the process's threads spent runnable but waiting for a CPU: what a
    busy machine adds to a hop"""
    return schedstat_s(pid, 1)


def run_time(pid):
    """seconds the process's live threads ran"""
    return schedstat_s(pid, 0)


class CpuGroups:
    """utime+stime of named process groups (crisp, dockerd, containerd, shims), and
    the run-queue wait of crisp ("crisp_wait")"""

    def __init__(self, groups):
        self.groups = groups  # name -> [pid]

    def sample(self):
        d = {k: sum(safe_cpu(p) for p in v) for k, v in self.groups.items()}
        d["crisp_wait"] = sum(run_delay(p) for p in self.groups["crisp"])
        return d

    def sample_ns(self):
        """the same groups' CPU from the scheduler's run time in ns (/proc/PID/task/*/schedstat,
        1st field; threads that exited are missing): utime+stime come in 10 ms ticks, and over
        a few hundred shims their rounding alone is ~0.1 % of a core in a 30 s window"""
        d = {k: sum(run_time(p) for p in v) for k, v in self.groups.items()}
        d["crisp_wait"] = sum(run_delay(p) for p in self.groups["crisp"])
        return d

    @staticmethod
    def delta(a, b):
        return {k: b[k] - a[k] for k in a}


# ---------------------------------------------------------------------------
# measure: h2load runs (gRPC through crisp, HTTP/1.1 against the engine)

class Load:
    def __init__(self, workdir):
        self.body = os.path.join(workdir, "empty-msg.bin")
        with open(self.body, "wb") as f:
            f.write(b"\0\0\0\0\0")
        self.logfile = os.path.join(workdir, "h2load-docker-req.tsv")

    def request(self, name, msg):
        """A file holding msg as one gRPC message (its 5-byte prefix, then it)."""
        path = os.path.join(os.path.dirname(self.body), name + "-msg.bin")
        data = msg.SerializeToString()
        with open(path, "wb") as f:
            f.write(b"\0" + len(data).to_bytes(4, "big") + data)
        return path

    def run(self, sock, target, n, c, m, h1=False, cpu=None, timeout=300, body=None):
        args = ["h2load", "-B", "unix:" + sock, "-n", str(n), "-c", str(c), "-m", str(m), "-t", "1",
                "--log-file", self.logfile]
        if h1:
            args += ["--h1", "http://localhost" + API + target]
        else:
            args += ["-H", "content-type: application/grpc", "-H", "te: trailers", "-d", body or self.body,
                     "http://localhost/" + RT + target]
        try:
            os.unlink(self.logfile)
        except FileNotFoundError:
            pass
        c0 = cpu.sample() if cpu else None
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        wall = time.time() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c1 = cpu.sample() if cpu else None
        out = r.stdout.decode(errors="replace")
        fin = bench.h2load_finished(out)
        mr = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
        md = re.search(r"\(([\d]+)\) data", out)
        if r.returncode != 0 or not fin or not mr or int(mr.group(3)) != n:
            raise RuntimeError("h2load against %s %s: not every call succeeded (rc %d):\n%s"
                               % (sock, target, r.returncode, out[-1500:]))
        lat = []
        with open(self.logfile) as f:
            for line in f:
                p = line.split("\t")
                if len(p) >= 3 and p[1] == "200":
                    lat.append(int(p[2]))
        if len(lat) != n:
            raise RuntimeError("h2load log: %d rows with status 200, expected %d (%s %s)"
                               % (len(lat), n, sock, target))
        secs, rps = fin
        return {"rps": rps, "secs": secs, "n": n, "lat": lat, "wall": wall,
                "bytes": int(md.group(1)) / n if md else None,
                "cpu": CpuGroups.delta(c0, c1) if cpu else None,
                "h2load_cpu": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)}


def stats_fanout(pool, n):
    """the engine doing what crisp asks of it for one ListContainerStats, called
    directly: GET /containers/json?size=1 (filtered), then one-shot stats of every
    listed container, all at once over the pool's persistent connections. Returns
    per-call latencies (us), and when the first stats answer came (us from the start)."""
    lat, first = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        e0 = pool.get()
        lst = e0.json("GET", "/containers/json?size=1&filters=" + FILTER_CTR)
        pool.put(e0)

        def one(cid):
            e = pool.get()
            try:
                st, _ = e.call("GET", "/containers/%s/stats?stream=false&one-shot=true" % cid)
                return st, time.perf_counter()
            finally:
                pool.put(e)
        res = list(pool.ex.map(one, [x["Id"] for x in lst]))
        lat.append(int((time.perf_counter() - t0) * 1e6))
        first.append(int((min(t for _, t in res) - t0) * 1e6) if res else 0)
        bad = [st for st, _ in res if st != 200]
        if bad:
            raise RuntimeError("engine stats: %d of %d calls failed (HTTP %s)" % (len(bad), len(res), bad[0]))
    return lat, first


class EnginePool:
    def __init__(self, sock, conns):
        import queue
        self.q = queue.LifoQueue()
        for _ in range(conns):
            self.q.put(Engine(sock))
        self.ex = cf.ThreadPoolExecutor(max_workers=conns)

    def get(self):
        return self.q.get()

    def put(self, e):
        self.q.put(e)


# ---------------------------------------------------------------------------
# measure: pod start

def direct_pod(eng, i, pause, image, run_tag):
    """the same two containers started straight through the Docker API, as two
    `docker run`s: pause with IpcMode shareable, then busybox joining its
    network and IPC namespaces"""
    uid = uuid.uuid4().hex[:16]
    name = "direct-%s-%03d" % (run_tag, i)
    cgp = "/%s/pod%s" % (CGROUP_ROOT, uid)
    labels = {LABEL: "1", "app": name, "io.kubernetes.pod.name": name,
              "io.kubernetes.pod.namespace": NS, "io.kubernetes.pod.uid": uid}
    sb = eng.json("POST", "/containers/create?name=k8s_POD_%s_%s_%s_0" % (name, NS, uid), {
        "Image": pause, "Hostname": name,
        "Labels": dict(labels, **{TYPE_LABEL: "podsandbox"}),
        "HostConfig": {"IpcMode": "shareable", "CgroupParent": cgp, "OomScoreAdj": -998}})["Id"]
    eng.json("POST", "/containers/%s/start" % sb)
    ct = eng.json("POST", "/containers/create?name=k8s_sleeper_%s_%s_%s_0" % (name, NS, uid), {
        "Image": image, "Entrypoint": ["sleep", "3600"],
        "Labels": dict(labels, **{TYPE_LABEL: "container", "io.kubernetes.container.name": "sleeper"}),
        "HostConfig": {"NetworkMode": "container:" + sb, "IpcMode": "container:" + sb,
                       "CgroupParent": cgp,
                       "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "5"}}}})["Id"]
    eng.json("POST", "/containers/%s/start" % ct)
    return sb, ct


def measure_pod_start(a, cri, eng):
    logroot = os.path.join(a.workdir, "pod-logs")
    res = {"crisp": [], "direct": []}
    clean = {"crisp": [], "direct": []}
    tag = uuid.uuid4().hex[:6]
    for i in range(a.pod_start_n + 1):  # round 0: warm-up, not counted
        order = ("crisp", "direct") if i % 2 == 0 else ("direct", "crisp")
        for mode in order:
            if mode == "crisp":
                sb, cc = pod_config(500 + i, logroot, prefix="start-" + tag)
                t0 = time.perf_counter()
                pod_id, _ = crisp_pod(cri, sb, cc, a.image)
                dt = time.perf_counter() - t0
                t1 = time.perf_counter()
                cri.rt("StopPodSandbox", pod_sandbox_id=pod_id)
                cri.rt("RemovePodSandbox", pod_sandbox_id=pod_id)
            else:
                t0 = time.perf_counter()
                sbid, ctid = direct_pod(eng, i, a.pause, a.image, tag)
                dt = time.perf_counter() - t0
                t1 = time.perf_counter()
                eng.json("DELETE", "/containers/%s?force=1&v=1" % ctid)
                eng.json("DELETE", "/containers/%s?force=1&v=1" % sbid)
            clean[mode].append(time.perf_counter() - t1)
            if i > 0:
                res[mode].append(dt)
    return res, clean


# ---------------------------------------------------------------------------
# measure: the kubelet's cadence, over a wall-clock window

def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def measure_cadence(a, cri, cpu):
    """The kubelet's calls on its own schedule: every 1 s PLEG's relist (ListPodSandbox and
    ListContainers, no filter, one after the other), every 10 s the stats provider's
    ListContainerStats, ListPodSandboxStats and ImageFsInfo (no filter, one after the
    other), every 5 s the runtime health check's Status, the three
    loops in their own threads as in the kubelet, each on fixed ticks from the window's
    start (a tick missed because a call overran it is skipped and counted, never made up).
    Before it, two idle windows, nothing calling crisp: crisp's own idle rate (crisp
    running: its timers may call the engine), then the engine's baseline with crisp
    stopped (SIGSTOP), so nothing crisp does, called or on its own timers, is in the
    baseline that is subtracted. CPU from the scheduler's ns counters (sample_ns); the
    tick-based utime+stime are kept in the JSON for comparison. A 1 s timeline of the
    groups' CPU over the whole phase goes to the JSON too."""
    res = {"window_s": a.cadence_secs, "relist_s": a.cadence_relist, "stats_s": a.cadence_stats,
           "status_s": a.cadence_status}
    eng = ("dockerd", "containerd", "shims")
    timeline = []
    t_phase = time.time()
    phase = ["settle"]
    stop_tl = threading.Event()

    def sampler():
        while True:
            d = cpu.sample_ns()
            timeline.append([round(time.time() - t_phase, 3), phase[0]] +
                            [round(d[g], 4) for g in ("crisp",) + eng])
            if stop_tl.wait(1.0):
                return
    tl = threading.Thread(target=sampler, daemon=True)
    tl.start()

    def both():
        return cpu.sample_ns(), cpu.sample(), time.time()

    def since(x):
        ns, tk, w0 = x
        ns1, tk1, w1 = both()
        return CpuGroups.delta(ns, ns1), CpuGroups.delta(tk, tk1), w1 - w0

    time.sleep(a.cadence_settle)  # what the previous cells left running (dockerd's collector) ends
    # 1. crisp running, not called: crisp's idle rate, the engine's with crisp's timers
    phase[0] = "idle, crisp running"
    x = both()
    time.sleep(a.cadence_crisp_idle_secs)
    d, dt, w = since(x)
    res["idle_crisp_running_s"] = w
    res["idle_rate_crisp_running"] = {k: v / w for k, v in d.items()}
    res["idle_rate_crisp_running_ticks"] = {k: v / w for k, v in dt.items()}
    # 2. crisp stopped: the engine's baseline
    os.kill(a.crisp_pid, signal.SIGSTOP)
    try:
        for _ in range(100):
            if proc_state(a.crisp_pid) in ("T", "t"):
                break
            time.sleep(0.01)
        time.sleep(1)  # what the engine was still doing for crisp (a sweep's listing) ends
        phase[0] = "idle, crisp stopped"
        x = both()
        time.sleep(a.cadence_idle_secs / 2)
        h1, _, hw1 = since(x)
        time.sleep(a.cadence_idle_secs / 2)
        d, dt, w = since(x)
    finally:
        os.kill(a.crisp_pid, signal.SIGCONT)
    # the engine's idle rate in each half of the baseline: how much it swings by itself
    res["idle_halves_pct_core"] = [sum(h1[g] for g in eng) / hw1 * 100,
                                   sum(d[g] - h1[g] for g in eng) / (w - hw1) * 100]
    res["idle_s"] = w
    res["idle_rate"] = idle = {k: v / w for k, v in d.items()}
    res["idle_rate_ticks"] = {k: v / w for k, v in dt.items()}

    # 3. the window
    calls = {m: [] for m in ("ListPodSandbox", "ListContainers", "ListContainerStats", "ListPodSandboxStats",
                             "ImageFsInfo", "Status")}
    errors = []
    skipped = {"relist": 0, "stats": 0, "status": 0}
    lock = threading.Lock()
    # what each answer holds, as a count: items, filesystems, conditions
    count = {"ListPodSandbox": lambda r: len(r.items), "ListContainers": lambda r: len(r.containers),
             "ImageFsInfo": lambda r: len(r.image_filesystems), "Status": lambda r: len(r.status.conditions)}

    def one(meth):
        t = time.perf_counter()
        try:
            r = cri.img(meth) if meth == "ImageFsInfo" else cri.rt(meth)
            n = count.get(meth, lambda r: len(r.stats))(r)
            ok = True
        except Exception as e:  # noqa: BLE001  (printed, counted, the loop goes on)
            n, ok = 0, False
            msg = "cadence: %s failed: %s" % (meth, str(e).replace("\n", " ")[:300])
            log(msg)
            with lock:
                errors.append(msg)
        with lock:
            calls[meth].append({"t": round(time.time() - t_win, 3), "us": int((time.perf_counter() - t) * 1e6),
                                "ok": ok, "n": n})

    def loop(name, period, offset, meths):
        k = 0
        while True:
            due = t_mono + offset + k * period
            if due - t_mono >= a.cadence_secs:
                return
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            elif now - due > period:  # the previous calls overran this tick: skip it
                with lock:
                    skipped[name] += 1
                k += 1
                continue
            for m in meths:
                one(m)
            k += 1

    phase[0] = "cadence"
    x = both()
    t_win, t_mono = time.time(), time.monotonic()
    th = [threading.Thread(target=loop, args=("relist", a.cadence_relist, 0.0, ("ListPodSandbox", "ListContainers"))),
          threading.Thread(target=loop, args=("stats", a.cadence_stats, a.cadence_stats_offset,
                                              ("ListContainerStats", "ListPodSandboxStats", "ImageFsInfo"))),
          threading.Thread(target=loop, args=("status", a.cadence_status, a.cadence_status_offset, ("Status",)))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    # the window ends at its last tick's period or when the last call came back, whichever is later
    end = t_mono + a.cadence_secs
    if time.monotonic() < end:
        time.sleep(end - time.monotonic())
    d, dt, wall = since(x)
    stop_tl.set()
    tl.join()
    res["wall_s"] = wall
    res["cpu_s"] = d
    res["cpu_s_ticks"] = dt
    pct = {g: (d[g] - idle[g] * wall) / wall * 100 for g in eng}
    res["engine_pct_core"] = dict(pct, all=sum(pct.values()))
    raw = {g: d[g] / wall * 100 for g in eng}
    res["engine_pct_core_raw"] = dict(raw, all=sum(raw.values()))
    pt = {g: (dt[g] - res["idle_rate_ticks"][g] * wall) / wall * 100 for g in eng}
    res["engine_pct_core_ticks"] = dict(pt, all=sum(pt.values()))
    res["crisp_pct_core"] = d["crisp"] / wall * 100
    res["crisp_idle_pct_core"] = res["idle_rate_crisp_running"]["crisp"] * 100
    res["calls"] = {m: {"n": len(v), "failed": sum(1 for c in v if not c["ok"]),
                        "p50_ms": pctl(sorted(c["us"] for c in v), 50) / 1e3 if v else None,
                        "max_ms": max(c["us"] for c in v) / 1e3 if v else None,
                        "answered": sorted(set(c["n"] for c in v if c["ok"]))}
                    for m, v in calls.items()}
    res["call_log"] = calls
    res["skipped_ticks"] = skipped
    res["errors"] = errors
    res["timeline_cols"] = ["t_s", "phase", "crisp", "dockerd", "containerd", "shims"]
    res["timeline"] = timeline
    return res


def event_stream(cri, res, stop):
    """The kubelet's evented PLEG: one GetContainerEvents call, its events counted, each
    checked to carry its pod's sandbox status and its own container's status."""
    import grpc
    pb = bench.pb
    call = cri.ch.unary_stream("/runtime.v1.RuntimeService/GetContainerEvents",
                               request_serializer=lambda r: r.SerializeToString(),
                               response_deserializer=pb.ContainerEventResponse.FromString)(
        pb.GetEventsRequest(), timeout=3600)

    def run():
        try:
            for ev in call:
                res["event_count"] += 1
                if ev.pod_sandbox_status.id and ev.container_id != ev.pod_sandbox_status.id and \
                        ev.container_id not in [c.id for c in ev.containers_statuses]:
                    res["errors"].append("an event of %s without its status" % ev.container_id[:12])
        except grpc.RpcError as e:
            if not stop.is_set():
                res["errors"].append("GetContainerEvents: %s" % e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return call, t


def measure_churn(a, cri, cpu):
    """Relists under churn: three windows of --churn-secs each, in which one bench container
    is restarted straight through the engine's API (behind crisp's back: kill, die, stop,
    start, restart events) every --churn-every seconds, round robin. In the first, nothing
    calls crisp (the restarts' own cost, and what crisp does on its own when told of them);
    in the second, the kubelet's relist (ListPodSandbox and ListContainers) every 1 s as
    well; in the third, a GetContainerEvents call open too (the evented PLEG's stream: each
    event carries its pod's statuses). The second minus the first is what the relists cost
    the engine under churn: a whole listing per change when the view drops everything, a
    listing of the changed entry when it patches; the third minus the second is what
    completing the events costs it. After it, crisp's ListContainers must equal the
    engine's listing (IDs and states)."""
    eng = Engine(a.docker)
    ids = [e["Id"] for e in eng.json("GET", "/containers/json?all=1&filters=" + FILTER_CTR)
           if e.get("State") == "running"]
    res = {"window_s": a.churn_secs, "every_s": a.churn_every, "restarts": [0, 0, 0], "errors": [],
           "event_count": 0}
    calls = []
    k = [0]

    def ticks(period, t_end):
        """Ticks every period from now until t_end (monotonic), on a fixed grid: a late tick runs at once."""
        t_next = time.monotonic()
        while t_next < t_end:
            now = time.monotonic()
            if now < t_next:
                time.sleep(t_next - now)
            yield
            t_next += period

    def churn(t_end):
        for _ in ticks(a.churn_every, t_end):
            cid = ids[k[0] % len(ids)]
            k[0] += 1
            try:
                eng.json("POST", "/containers/%s/restart?t=0" % cid)
            except Exception as e:  # noqa: BLE001  (counted, the loop goes on)
                res["errors"].append(str(e)[:300])

    def relist(t_end):
        for _ in ticks(1.0, t_end):
            for m in ("ListPodSandbox", "ListContainers"):
                t = time.perf_counter()
                try:
                    cri.rt(m)
                    calls.append((m, int((time.perf_counter() - t) * 1e6)))
                except Exception as e:  # noqa: BLE001
                    res["errors"].append("%s: %s" % (m, str(e)[:300]))

    stop = threading.Event()
    for i, (name, with_relists, with_events) in enumerate(
            (("quiet", False, False), ("relists", True, False), ("events", True, True))):
        events = event_stream(cri, res, stop) if with_events else None
        if events:
            time.sleep(1)  # the call open before the window
        c0, w0 = cpu.sample_ns(), time.time()
        k0 = k[0]
        t_end = time.monotonic() + a.churn_secs
        th = [threading.Thread(target=churn, args=(t_end,))]
        if with_relists:
            th.append(threading.Thread(target=relist, args=(t_end,)))
        for t in th:
            t.start()
        for t in th:
            t.join()
        time.sleep(max(0.0, t_end - time.monotonic()))
        d, w = CpuGroups.delta(c0, cpu.sample_ns()), time.time() - w0
        res["restarts"][i] = k[0] - k0
        res[name] = {g: d[g] / w * 100 for g in d}
        if events:
            time.sleep(2)  # the last restart's events
            stop.set()
            events[0].cancel()
            events[1].join(5)
    lc = sorted(us for m, us in calls if m == "ListContainers")
    res["list_containers"] = {"n": len(lc), "p50_ms": pctl(lc, 50) / 1e3 if lc else None,
                              "max_ms": lc[-1] / 1e3 if lc else None}
    time.sleep(2)  # the last restart's events
    want = {e["Id"]: e["State"] for e in eng.json("GET", "/containers/json?all=1&filters=" + FILTER_CTR)}
    cri_state = {0: "created", 1: "running", 2: "exited", 3: "unknown"}
    got = {c.id: cri_state.get(c.state, "?") for c in cri.rt("ListContainers").containers}
    res["equal_after"] = got == {i: s if s in ("created", "running") else "exited" for i, s in want.items()}
    eng.close()
    return res


# ---------------------------------------------------------------------------
# measure

def cmd_measure(a):
    cri = CRI(a.crisp)
    eng = Engine(a.docker)
    t_start = time.time()
    shims = shim_pids(a.exec_root)
    cpu = CpuGroups({"crisp": [a.crisp_pid], "dockerd": [a.dockerd_pid], "containerd": [a.containerd_pid],
                     "shims": shims})
    rss_setup = proc_status(a.crisp_pid, "VmRSS")
    hwm_setup = proc_status(a.crisp_pid, "VmHWM")

    # sanity: crisp and the engine see the same pods and containers
    n_ctr = len(cri.rt("ListContainers").containers)
    n_sb = len(cri.rt("ListPodSandbox").items)
    e_ctr = len(eng.json("GET", "/containers/json?all=1&filters=" + FILTER_CTR))
    e_sb = len(eng.json("GET", "/containers/json?all=1&filters=" + FILTER_SB))
    n_stats = len(cri.rt("ListContainerStats").stats)
    if n_ctr != e_ctr or n_sb != e_sb or n_ctr < a.min_pods or n_stats != n_ctr:
        log("counts differ or are too small (need >= %d): crisp %d containers / %d pods / %d stats, "
            "engine %d / %d" % (a.min_pods, n_ctr, n_sb, n_stats, e_ctr, e_sb))
        return 1
    eng.close()
    loadavg0 = " ".join(open("/proc/loadavg").read().split()[:3])
    L = Load(a.workdir)
    thr = a.thr

    # cells: name, crisp method, engine target, n at c1, n at thr, request body (None: empty);
    # the status calls ask for one running container and its sandbox, the engine row is
    # the inspect crisp would make (h2load counts HTTP 200s: the status must answer OK,
    # checked here first)
    one = next(x for x in cri.rt("ListContainers").containers if x.state == bench.pb.CONTAINER_RUNNING)
    cri.rt("ContainerStatus", container_id=one.id)
    cri.rt("PodSandboxStatus", pod_sandbox_id=one.pod_sandbox_id)
    lists = [
        ("ListPodSandbox", "ListPodSandbox", "/containers/json?all=1&filters=" + FILTER_SB, a.n_list, a.n_list * 2,
         None),
        ("ListContainers", "ListContainers", "/containers/json?all=1&filters=" + FILTER_CTR, a.n_list, a.n_list * 2,
         None),
        ("ContainerStatus", "ContainerStatus", "/containers/%s/json" % one.id, a.n_list, a.n_list * 2,
         L.request("ctr-status", bench.pb.ContainerStatusRequest(container_id=one.id))),
        ("PodSandboxStatus", "PodSandboxStatus", "/containers/%s/json" % one.pod_sandbox_id, a.n_list,
         a.n_list * 2, L.request("pod-status", bench.pb.PodSandboxStatusRequest(pod_sandbox_id=one.pod_sandbox_id))),
    ]
    engine_label = {"ListPodSandbox": "containers/json (sb)", "ListContainers": "containers/json",
                    "ContainerStatus": "containers/ID/json", "PodSandboxStatus": "containers/ID/json (sb)"}
    # profiles: crisp gets one connection with `thr` concurrent streams (the kubelet's
    # shape); HTTP/1.1 has one call per connection in flight, so the engine gets `thr`
    # keep-alive connections. Same number of calls in flight either way.
    t0 = time.time()
    for meth, rpc, tgt, n1, _, body in lists:  # warm-up
        L.run(a.crisp, rpc, max(20, n1 // 5), 1, thr, body=body)
        L.run(a.docker, tgt, max(20, n1 // 5), thr, 1, h1=True)
    L.run(a.crisp, "ListContainerStats", 2, 1, 1, timeout=120)
    log("docker: warm-up done in %.1fs" % (time.time() - t0))

    runs = {}
    t1 = time.time()
    k = max(1, a.chunks)
    for rep in range(a.reps):
        for meth, rpc, tgt, n1, nt, body in lists:
            # latency: the calls of a repetition in `k` short chunks that alternate between
            # crisp and the engine (the two see the same background load); throughput: one
            # run each, the order alternating between repetitions
            plan = [("lat c1 m1", 1, 1, 1, 1, n1 // k, rep * k + j) for j in range(k)]
            plan.append(("thr %d" % thr, 1, thr, thr, 1, nt, rep))
            for prof, cc, mc, ce, me, n, turn in plan:
                for mode in (("crisp", "engine") if turn % 2 == 0 else ("engine", "crisp")):
                    if mode == "crisp":
                        r = L.run(a.crisp, rpc, n, cc, mc, cpu=cpu, body=body)
                    else:
                        r = L.run(a.docker, tgt, n, ce, me, h1=True, cpu=cpu)
                    runs.setdefault((meth, prof, mode), []).append(r)
        log("docker: list repetition %d/%d done (%.1fs)" % (rep + 1, a.reps, time.time() - t1))

    # stats: crisp's ListContainerStats (latency of one call, and a few in parallel),
    # and the same engine calls made directly (list size=1, then every one-shot stats
    # request at once, over more keep-alive connections than containers)
    pool = EnginePool(a.docker, n_ctr + 8)
    stats_fanout(pool, 1)  # warm-up: opens the connections
    idle0, tid0 = cpu.sample(), time.time()
    time.sleep(a.idle_secs)
    idle = CpuGroups.delta(idle0, cpu.sample())
    idle_wall = time.time() - tid0
    idle_rate = {k: v / idle_wall for k, v in idle.items()}

    def fanout_run(pl, n):
        c0, w0 = cpu.sample(), time.time()
        lat, first = stats_fanout(pl, n)
        wall = time.time() - w0
        return {"lat": lat, "first": first, "n": len(lat), "wall": wall, "secs": wall, "rps": len(lat) / wall,
                "bytes": None,
                "cpu": CpuGroups.delta(c0, cpu.sample())}
    t2 = time.time()
    for rep in range(a.reps):
        r = L.run(a.crisp, "ListContainerStats", a.n_stats, 1, 1, cpu=cpu, timeout=300)
        runs.setdefault(("ListContainerStats", "lat c1 m1", "crisp"), []).append(r)
        runs.setdefault(("ListContainerStats", "lat c1 m1", "engine"), []).append(fanout_run(pool, a.n_fanout))
        r = L.run(a.crisp, "ListPodSandboxStats", a.n_pstats, 1, 1, cpu=cpu, timeout=300)
        runs.setdefault(("ListPodSandboxStats", "lat c1 m1", "crisp"), []).append(r)
        log("docker: stats repetition %d/%d done (%.1fs)" % (rep + 1, a.reps, time.time() - t2))
    r = L.run(a.crisp, "ListContainerStats", a.n_stats_thr, 1, a.stats_thr, cpu=cpu, timeout=300)
    runs.setdefault(("ListContainerStats", "thr %d" % a.stats_thr, "crisp"), []).append(r)
    pool.ex.shutdown()
    while not pool.q.empty():  # nothing of ours left open on dockerd for the idle windows
        pool.get().close()

    # the kubelet's cadence, measured over a wall-clock window
    cad = None
    if a.cadence_secs > 0:
        t4 = time.time()
        log("docker: kubelet cadence: %.0fs settling, %.0fs idle (crisp running), %.0fs idle (crisp stopped), "
            "then %.0fs of relists every %gs and stats every %gs"
            % (a.cadence_settle, a.cadence_crisp_idle_secs, a.cadence_idle_secs, a.cadence_secs,
               a.cadence_relist, a.cadence_stats))
        cad = measure_cadence(a, cri, cpu)
        log("docker: kubelet cadence done (%.1fs, %d calls failed)" % (time.time() - t4, len(cad["errors"])))

    churn = None
    if a.churn_secs > 0:
        t5 = time.time()
        log("docker: relists under churn: 3 x %.0fs, a container restarted behind crisp's back every %gs, "
            "the second window with relists every 1 s, the third with a GetContainerEvents call too"
            % (a.churn_secs, a.churn_every))
        churn = measure_churn(a, cri, cpu)
        log("docker: churn done (%.1fs, %d errors)" % (time.time() - t5, len(churn["errors"])))

    # pod start: crisp vs the same containers through the Docker API, interleaved
    t3 = time.time()
    eng = Engine(a.docker)
    ps, clean = measure_pod_start(a, cri, eng)
    eng.close()
    log("docker: pod start done (%d + %d pods, %.1fs)" % (len(ps["crisp"]), len(ps["direct"]), time.time() - t3))

    rss_after = proc_status(a.crisp_pid, "VmRSS")
    hwm = proc_status(a.crisp_pid, "VmHWM")
    after_ctr = len(cri.rt("ListContainers").containers)

    # ---- report
    med = statistics.median

    def allp(rs, p):
        return pctl(sorted(x for r in rs for x in r["lat"]), p)

    rows = []
    cells = {}
    order_keys = []
    for meth, _, _, _, _, _ in lists:
        for prof in ("lat c1 m1", "thr %d" % thr):
            for mode in ("engine", "crisp"):
                order_keys.append((meth, prof, mode))
    order_keys += [("ListContainerStats", "lat c1 m1", "engine"), ("ListContainerStats", "lat c1 m1", "crisp"),
                   ("ListContainerStats", "thr %d" % a.stats_thr, "crisp"),
                   ("ListPodSandboxStats", "lat c1 m1", "crisp")]
    for key in order_keys:
        rs = runs[key]
        ntot = sum(r["n"] for r in rs)
        # every call of every run of the cell pooled: percentiles of all of them, calls/s
        # and CPU per call over all of them
        d = {"method": key[0], "profile": key[1], "mode": key[2], "n": ntot, "runs": len(rs),
             "rps": ntot / sum(r["secs"] for r in rs),
             "p50": allp(rs, 50), "p99": allp(rs, 99), "max": max(max(r["lat"]) for r in rs),
             "bytes": rs[0]["bytes"],
             "rps_all": [round(r["rps"], 1) for r in rs]}
        if rs[0]["cpu"]:
            wall = sum(r["wall"] for r in rs)
            for g in ("crisp", "crisp_wait", "dockerd", "containerd", "shims"):
                d[g + "_cpu_us"] = (sum(r["cpu"][g] for r in rs) - idle_rate[g] * wall) / ntot * 1e6
        rows.append(d)
        cells[key] = d

    def pair(meth, prof, key, fn):
        return med(fn(x, y) for x, y in zip(runs[(meth, prof, "crisp")], runs[(meth, prof, "engine")]))

    def p50_ratio(meth, prof):
        """pooled p50 of crisp / pooled p50 of the engine (their calls interleaved in time)"""
        return cells[(meth, prof, "crisp")]["p50"] / cells[(meth, prof, "engine")]["p50"]

    def p50_pair_ratio(meth, prof):
        return pair(meth, prof, "p50", lambda x, y: pctl(sorted(x["lat"]), 50) / pctl(sorted(y["lat"]), 50))

    def rps_ratio(meth, prof):
        """median over the back-to-back pairs of runs"""
        return pair(meth, prof, "rps", lambda x, y: x["rps"] / y["rps"])

    out = []
    p = out.append
    p("")
    p("crisp benchmark, Docker backend: %d pods (pause + one running busybox each) made through crisp, "
      "%d repetitions, %d cores, load average before: %s" % (n_sb, a.reps, os.cpu_count(), loadavg0))
    p("engine = the Docker Engine API straight on dockerd's socket (h2load --h1, keep-alive connections); "
      "crisp = CRI through crisp (h2load, gRPC)")
    p("lat = one call at a time; thr %d = %d calls in flight (crisp: 1 connection x %d streams; engine: "
      "%d HTTP/1.1 connections)" % (thr, thr, thr, thr))
    p("")
    fmt_row = "%-20s %-9s %-7s %6s %8s %9s %9s %7s %8s %8s %8s %8s %8s"
    hdr = fmt_row % ("call", "load", "mode", "calls", "calls/s", "p50 ms", "p99 ms", "KB",
                     "crisp", "crisp", "dockerd", "ctrd", "shims")
    p(hdr)
    p(fmt_row % ("", "", "", "", "", "", "", "/call", "CPU", "wait", "CPU", "CPU", "CPU"))
    p(fmt_row % ("", "", "", "", "", "", "", "", "us/call", "us/call", "us/call", "us/call", "us/call"))
    p("-" * len(hdr))

    def fcpu(d, g):
        v = d.get(g + "_cpu_us")
        return "-" if v is None or (g.startswith("crisp") and d["mode"] != "crisp") else "%.0f" % max(0.0, v)
    for d in rows:
        p(fmt_row % (
            engine_label.get(d["method"], d["method"]) if d["mode"] == "engine" else d["method"],
            d["profile"], d["mode"], d["n"], "%.1f" % d["rps"], "%.2f" % (d["p50"] / 1000.0),
            "%.2f" % (d["p99"] / 1000.0), "%.1f" % (d["bytes"] / 1024.0) if d["bytes"] else "-",
            fcpu(d, "crisp"), fcpu(d, "crisp_wait"), fcpu(d, "dockerd"), fcpu(d, "containerd"), fcpu(d, "shims")))
    p("")
    p("engine rows of the lists: GET /containers/json?all=1 with crisp's label filter "
      "(io.kubernetes.docker.type=podsandbox | container); of the statuses: GET /containers/ID/json of one "
      "running container and of its sandbox, the inspect crisp makes when its view has no status kept")
    efirst = sorted(x for r in runs[("ListContainerStats", "lat c1 m1", "engine")] for x in r["first"])
    p("engine row of ListContainerStats: the engine calls crisp makes for it, made directly from Python "
      "(GET /containers/json?size=1, then %d one-shot stats at once over %d keep-alive connections)"
      % (n_ctr, n_ctr + 8))
    p("  first stats answer after %.0f ms (median), the whole call %.0f ms: dockerd's stats collector samples "
      "the waiting containers one after the other, then sleeps 1 s; a request that comes during a pass or the "
      "sleep waits for the next pass"
      % (pctl(efirst, 50) / 1e3, cells[("ListContainerStats", "lat c1 m1", "engine")]["p50"] / 1e3))
    p("every row pools all the calls of its runs (the lat rows: %d chunks of %d calls per repetition, "
      "alternating crisp / engine)" % (k, a.n_list // k))
    p("CPU: utime+stime per call minus the idle rate (measured over %.0fs with %d pods: dockerd %.1f %%, "
      "containerd %.1f %%, shims %.1f %% of a core)"
      % (idle_wall, n_sb, idle_rate["dockerd"] * 100, idle_rate["containerd"] * 100, idle_rate["shims"] * 100))
    p("crisp wait = time crisp was runnable but waited for a CPU (run-queue delay from schedstat), per call: "
      "what other load on the machine adds to the extra hop")
    p("calls/s of each run:")
    for d in rows:
        p("  %-20s %-9s %-7s %s" % (d["method"], d["profile"], d["mode"], d["rps_all"]))

    # engine CPU of the stats path
    lcs = cells[("ListContainerStats", "lat c1 m1", "crisp")]
    lps = cells[("ListPodSandboxStats", "lat c1 m1", "crisp")]

    def eng_us(d):
        return sum(max(0.0, d[g + "_cpu_us"]) for g in ("dockerd", "containerd", "shims"))
    per_min = 6 * (eng_us(lcs) + eng_us(lps)) / 1e6  # CPU seconds per minute
    dockerd_per_min = 6 * (lcs["dockerd_cpu_us"] + lps["dockerd_cpu_us"]) / 1e6

    p("")
    p("pod start (RunPodSandbox + CreateContainer + StartContainer through crisp, vs create+start pause and "
      "create+start busybox through the API), %d each, interleaved:" % a.pod_start_n)
    for mode in ("crisp", "direct"):
        v = sorted(ps[mode])
        p("  %-7s median %6.0f ms   p90 %6.0f ms   min %6.0f   max %6.0f   (cleanup median %.0f ms, not measured)"
          % (mode, med(v) * 1e3, pctl(v, 90) * 1e3, v[0] * 1e3, v[-1] * 1e3, med(clean[mode]) * 1e3))
    st_ratio = med(sorted(ps["crisp"])) / med(sorted(ps["direct"]))
    st_ratio90 = pctl(sorted(ps["crisp"]), 90) / pctl(sorted(ps["direct"]), 90)
    pair_ratio = med(x / y for x, y in zip(ps["crisp"], ps["direct"]))

    p("")
    p("targets (crisp vs the engine's own API in the same run; latency ratios from the pooled percentiles, "
      "throughput ratios: median over back-to-back runs)")
    p("-" * 120)
    verdicts = []
    fmt = "%-70s %-22s %-18s %s"

    def line(label, value, goal="", ok=None):
        if ok is not None:
            verdicts.append({"label": label, "value": value, "goal": goal, "pass": bool(ok)})
        p(fmt % (label, value, goal if ok is not None else "(info)",
                 ("PASS" if ok else "FAIL") if ok is not None else ""))
    r = p50_ratio("ListContainers", "lat c1 m1")
    line("ListContainers p50 latency crisp/engine (lat c1 m1, %d calls each)"
         % cells[("ListContainers", "lat c1 m1", "crisp")]["n"], "%.2fx" % r, "target <= 1.3x", r <= 1.3)
    s50, s99 = lcs["p50"] / 1e6, lcs["p99"] / 1e6
    line("ListContainerStats, %d containers: p50 of one call" % n_ctr, "%.3f s" % s50, "target < 1 s", s50 < 1)
    line("ListContainerStats, %d containers: p99 of one call" % n_ctr, "%.3f s" % s99, "target < 1 s", s99 < 1)
    line("pod start crisp/direct, median (%d each)" % a.pod_start_n, "%.2fx" % st_ratio, "target <= 1.2x",
         st_ratio <= 1.2)
    line("crisp RSS idle (after start, no pods yet)", "%.1f MiB" % (a.rss_idle_kb / 1024.0),
         "target <= 10 MiB", a.rss_idle_kb <= 10 * 1024)
    r = p50_ratio("ListPodSandbox", "lat c1 m1")
    line("ListPodSandbox p50 latency crisp/engine (lat c1 m1)", "%.2fx" % r)
    for meth in ("ListContainers", "ListPodSandbox"):
        line("%s p50 ratio, median of the %d chunk pairs" % (meth, len(runs[(meth, "lat c1 m1", "crisp")])),
             "%.2fx" % p50_pair_ratio(meth, "lat c1 m1"))
    for meth in ("ListContainers", "ListPodSandbox"):
        d = cells[(meth, "lat c1 m1", "crisp")]
        line("%s p50 added by crisp (vs its CPU + run-queue wait per call)" % meth, "%+.1f ms (%.1f + %.1f)" % (
            (d["p50"] - cells[(meth, "lat c1 m1", "engine")]["p50"]) / 1e3,
            d["crisp_cpu_us"] / 1e3, d["crisp_wait_cpu_us"] / 1e3))
    for meth in ("ListContainers", "ListPodSandbox"):
        line("%s p99 latency crisp/engine (lat c1 m1)" % meth, "%.2fx" % (
            cells[(meth, "lat c1 m1", "crisp")]["p99"] / cells[(meth, "lat c1 m1", "engine")]["p99"]))
    for meth in ("ListContainers", "ListPodSandbox"):
        line("%s throughput crisp/engine (thr %d)" % (meth, thr), "%.2f" % rps_ratio(meth, "thr %d" % thr))
    for meth in ("ContainerStatus", "PodSandboxStatus"):
        d, e = cells[(meth, "lat c1 m1", "crisp")], cells[(meth, "lat c1 m1", "engine")]
        line("%s p50 crisp / inspect direct (lat c1 m1)" % meth, "%.3f / %.3f ms" % (d["p50"] / 1e3, e["p50"] / 1e3))
        line("%s engine CPU per call, crisp / inspect direct (dockerd)" % meth,
             "%.0f / %.0f us" % (max(0.0, d["dockerd_cpu_us"]), max(0.0, e["dockerd_cpu_us"])))
    e50 = cells[("ListContainerStats", "lat c1 m1", "engine")]["p50"] / 1e6
    line("ListContainerStats p50 crisp / same engine calls made directly", "%.2fx (%.3f s)" % (s50 / e50, e50))
    line("pod start crisp/direct, p90", "%.2fx" % st_ratio90)
    line("pod start crisp/direct, median of back-to-back pairs", "%.2fx" % pair_ratio)
    line("engine CPU per ListContainerStats (dockerd+containerd+shims)", "%.0f ms" % (eng_us(lcs) / 1e3))
    line("  of which dockerd", "%.0f ms" % (lcs["dockerd_cpu_us"] / 1e3))
    line("engine CPU per ListPodSandboxStats (dockerd+containerd+shims)", "%.0f ms" % (eng_us(lps) / 1e3))
    if cad:
        ep = cad["engine_pct_core"]
        line("engine CPU at the kubelet's cadence, measured over %.0f s (relist %g s, stats %g s, status %g s)"
             % (cad["wall_s"], cad["relist_s"], cad["stats_s"], cad["status_s"]), "%.3f %% of a core" % ep["all"],
             "target <= 0.2 %", ep["all"] <= 0.2)
        line("  of which dockerd / containerd / shims",
             "%.3f / %.3f / %.3f %%" % (ep["dockerd"], ep["containerd"], ep["shims"]))
        line("  the same without the idle baseline (dockerd+containerd+shims)",
             "%.3f %% of a core" % cad["engine_pct_core_raw"]["all"])
        line("  the same from utime+stime (10 ms ticks) instead of schedstat's ns",
             "%.3f %% of a core" % cad["engine_pct_core_ticks"]["all"])
        ir = cad["idle_rate"]
        line("  idle baseline subtracted: %.0f s just before, crisp stopped (dockerd+ctrd+shims)" % cad["idle_s"],
             "%.3f %% of a core" % ((ir["dockerd"] + ir["containerd"] + ir["shims"]) * 100))
        line("  the same in each half of the baseline (its own swing)",
             "%.3f / %.3f %%" % tuple(cad["idle_halves_pct_core"]))
        line("crisp CPU at the kubelet's cadence (no subtraction) / crisp idle (%.0f s, not called)"
             % cad["idle_crisp_running_s"], "%.3f / %.3f %% of a core" % (cad["crisp_pct_core"], cad["crisp_idle_pct_core"]))
        for m, c in cad["calls"].items():
            line("  %-20s %4d calls, %d failed, p50 / max" % (m, c["n"], c["failed"]),
                 "%.2f / %.2f ms" % (c["p50_ms"], c["max_ms"]) if c["n"] else "-")
        sk = cad["skipped_ticks"]
        if any(sk.values()):
            line("  ticks skipped (calls overran them): relist / stats / status",
                 "%d / %d / %d" % (sk["relist"], sk["stats"], sk["status"]))
    if churn:
        q, r = churn["quiet"], churn["relists"]
        eng_q = q["dockerd"] + q["containerd"] + q["shims"]
        eng_r = r["dockerd"] + r["containerd"] + r["shims"]
        line("relists under churn (a restart behind crisp's back every %g s, %d + %d restarts): engine CPU "
             "with relists every 1 s minus without" % (churn["every_s"], churn["restarts"][0], churn["restarts"][1]),
             "%+.3f %% of a core (%.3f - %.3f)" % (eng_r - eng_q, eng_r, eng_q))
        line("  of which dockerd", "%+.3f %% of a core" % (r["dockerd"] - q["dockerd"]))
        line("  crisp CPU with / without the relists", "%.3f / %.3f %% of a core" % (r["crisp"], q["crisp"]))
        ev = churn["events"]
        eng_e = ev["dockerd"] + ev["containerd"] + ev["shims"]
        line("  a GetContainerEvents call open too (%d restarts, %d events, each with its pod's statuses): "
             "engine CPU minus with relists only" % (churn["restarts"][2], churn["event_count"]),
             "%+.3f %% of a core (%.3f - %.3f)" % (eng_e - eng_r, eng_e, eng_r))
        line("    of which dockerd", "%+.3f %% of a core" % (ev["dockerd"] - r["dockerd"]))
        line("    crisp CPU with / without the events", "%.3f / %.3f %% of a core" % (ev["crisp"], r["crisp"]))
        lc = churn["list_containers"]
        line("  ListContainers under churn: %d calls, p50 / max" % lc["n"],
             "%.2f / %.2f ms" % (lc["p50_ms"], lc["max_ms"]) if lc["n"] else "-")
        line("  crisp's ListContainers equals the engine's after it", "yes" if churn["equal_after"] else "NO",
             "must be yes", churn["equal_after"])
        if churn["errors"]:
            line("  errors", "%d (first: %s)" % (len(churn["errors"]), churn["errors"][0]))
    line("engine CPU at the kubelet's cadence, extrapolated from back-to-back calls",
         "%.2f %% of a core" % (per_min / 60 * 100))
    line("  (6 x per ListContainerStats + per ListPodSandboxStats; of which dockerd)",
         "%.2f %% of a core" % (dockerd_per_min / 60 * 100))
    line("crisp CPU per ListContainerStats / ListPodSandboxStats",
         "%.1f / %.1f ms" % (lcs["crisp_cpu_us"] / 1e3, lps["crisp_cpu_us"] / 1e3))
    line("crisp RSS with %d pods (after setup, VmRSS / VmHWM)" % n_sb,
         "%.1f / %.1f MiB" % (rss_setup / 1024.0, hwm_setup / 1024.0))
    line("crisp RSS after the load (VmRSS / peak VmHWM)", "%.1f / %.1f MiB" % (rss_after / 1024.0, hwm / 1024.0))
    line("ListContainers through crisp after the load", "%d containers%s" % (
        after_ctr, "" if after_ctr == n_ctr else " MISMATCH (was %d)" % n_ctr))
    p("")
    p("%d of %d targets met (measured in %.0fs)" % (sum(1 for v in verdicts if v["pass"]), len(verdicts),
                                                    time.time() - t_start))
    text = "\n".join(out)
    print(text, flush=True)
    with open(os.path.join(a.workdir, "results-docker.json"), "w") as f:
        json.dump({"rows": rows, "pod_start_s": ps, "pod_cleanup_s": clean, "idle_cpu_rate": idle_rate,
                   "rss_idle_kb": a.rss_idle_kb, "rss_setup_kb": rss_setup, "rss_after_kb": rss_after,
                   "hwm_kb": hwm, "pods": n_sb, "containers": n_ctr, "reps": a.reps,
                   "engine_cpu_pct_core_kubelet_cadence": per_min / 60 * 100,
                   "engine_cpu_pct_core_kubelet_cadence_extrapolated": per_min / 60 * 100,
                   "kubelet_cadence": cad, "churn": churn,
                   "loadavg_before": loadavg0, "targets": verdicts}, f, indent=1)
    with open(os.path.join(a.workdir, "results-docker.txt"), "w") as f:
        f.write(text + "\n")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--crisp", required=True)
    s.add_argument("--pods", type=int, default=110)
    s.add_argument("--image", required=True)
    s.add_argument("--pause", required=True)
    s.add_argument("--workdir", required=True)
    s.add_argument("--workers", type=int, default=6)
    t = sub.add_parser("teardown")
    t.add_argument("--docker", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--crisp", required=True)
    m.add_argument("--docker", required=True)
    m.add_argument("--crisp-pid", type=int, required=True)
    m.add_argument("--dockerd-pid", type=int, required=True)
    m.add_argument("--containerd-pid", type=int, required=True)
    m.add_argument("--exec-root", required=True)
    m.add_argument("--workdir", required=True)
    m.add_argument("--image", required=True)
    m.add_argument("--pause", required=True)
    m.add_argument("--rss-idle-kb", type=int, required=True)
    m.add_argument("--min-pods", type=int, default=110)
    m.add_argument("--reps", type=int, default=3)
    m.add_argument("--n-list", type=int, default=100,
                   help="list calls per repetition at c1 (in --chunks alternating runs; 2x at the thr load)")
    m.add_argument("--chunks", type=int, default=5)
    m.add_argument("--thr", type=int, default=8, help="calls in flight for the throughput runs")
    m.add_argument("--n-stats", type=int, default=4, help="ListContainerStats calls per repetition")
    m.add_argument("--n-pstats", type=int, default=2, help="ListPodSandboxStats calls per repetition")
    m.add_argument("--n-fanout", type=int, default=2, help="direct stats fan-outs per repetition and pool")
    m.add_argument("--n-stats-thr", type=int, default=8, help="ListContainerStats calls at --stats-thr (once)")
    m.add_argument("--stats-thr", type=int, default=4)
    m.add_argument("--idle-secs", type=float, default=5)
    m.add_argument("--pod-start-n", type=int, default=20)
    m.add_argument("--cadence-secs", type=float, default=120,
                   help="kubelet-cadence window (relists every 1 s, stats every 10 s); 0 skips the phase")
    m.add_argument("--cadence-idle-secs", type=float, default=30,
                   help="the engine's idle baseline before it, crisp stopped (SIGSTOP); keep it and "
                   "--cadence-secs multiples of 30 s: every containerd shim forces a GC every 30 s")
    m.add_argument("--cadence-crisp-idle-secs", type=float, default=10,
                   help="crisp's idle rate before that, crisp running, not called")
    m.add_argument("--cadence-settle", type=float, default=3, help="pause after the stats cells, not measured")
    m.add_argument("--cadence-relist", type=float, default=1, help="relist period (PLEG)")
    m.add_argument("--cadence-stats", type=float, default=10, help="stats period")
    m.add_argument("--churn-secs", type=float, default=30,
                   help="each of the three churn windows (restarts alone, with relists, with relists and a "
                        "GetContainerEvents call); 0 skips the phase")
    m.add_argument("--churn-every", type=float, default=2, help="a container restarted every so many seconds")
    m.add_argument("--cadence-stats-offset", type=float, default=0.5,
                   help="the stats loop's first tick, seconds into the window")
    m.add_argument("--cadence-status", type=float, default=5, help="Status period (runtime health check)")
    m.add_argument("--cadence-status-offset", type=float, default=0.25,
                   help="the status loop's first tick, seconds into the window")
    a = ap.parse_args()
    return {"setup": cmd_setup, "teardown": cmd_teardown, "measure": cmd_measure}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
