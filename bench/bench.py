#!/usr/bin/python3
"""crisp benchmark helper (run by bench/run; needs Debian's /usr/bin/python3).

  bench.py ready     --sock S [--timeout T] [--pid PID]
  bench.py setup     --sock S --pods N --image I --pause P --workdir W [--workers K]
  bench.py teardown  --sock S
  bench.py measure   --direct S --crisp S --crisp-pid P --ctrd-pid P --workdir W [...]

setup/teardown talk to containerd directly (never through crisp), so cleanup works
whatever crisp does. measure drives h2load against both sockets and prints the
table; it also writes W/results.json.
"""
import argparse
import concurrent.futures as cf
import importlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import grpc

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LABEL = "crisp-bench"
CGROUP_ROOT = "crisp-bench"
MAX_MSG = 16 * 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print("[bench] %s" % msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# CRI client (classes generated from proto/runtime_v1.proto at import time)

def _gen_pb():
    out = tempfile.mkdtemp(prefix="crisp-bench-pb-")
    subprocess.run(["protoc", "--python_out=" + out, "-I", os.path.join(REPO, "proto"),
                    "runtime_v1.proto"], check=True)
    sys.path.insert(0, out)
    mod = importlib.import_module("runtime_v1_pb2")
    import atexit
    atexit.register(shutil.rmtree, out, True)
    return mod


pb = None


class CRI:
    def __init__(self, sock):
        global pb
        if pb is None:
            pb = _gen_pb()
        self.ch = grpc.insecure_channel("unix://" + sock, options=[
            ("grpc.max_receive_message_length", MAX_MSG),
            ("grpc.max_send_message_length", MAX_MSG)])
        self.stubs = {}

    def call(self, service, method, req, timeout=60):
        key = (service, method)
        if key not in self.stubs:
            m = pb.DESCRIPTOR.services_by_name[service].methods_by_name[method]
            self.stubs[key] = self.ch.unary_unary(
                "/runtime.v1.%s/%s" % (service, method),
                request_serializer=lambda r: r.SerializeToString(),
                response_deserializer=getattr(pb, m.output_type.name).FromString)
        return self.stubs[key](req, timeout=timeout)

    def rt(self, method, timeout=60, **fields):
        m = pb.DESCRIPTOR.services_by_name["RuntimeService"].methods_by_name[method]
        return self.call("RuntimeService", method, getattr(pb, m.input_type.name)(**fields), timeout)

    def img(self, method, timeout=120, **fields):
        m = pb.DESCRIPTOR.services_by_name["ImageService"].methods_by_name[method]
        return self.call("ImageService", method, getattr(pb, m.input_type.name)(**fields), timeout)


# ---------------------------------------------------------------------------
# ready / setup / teardown

def cmd_ready(a):
    deadline = time.time() + a.timeout
    last = "socket missing"
    c = None
    while time.time() < deadline:
        if a.pid and not os.path.exists("/proc/%d" % a.pid):
            log("pid %d exited while waiting for %s" % (a.pid, a.sock))
            return 1
        if os.path.exists(a.sock):
            c = c or CRI(a.sock)
            try:
                c.rt("Version", timeout=2)
                return 0
            except grpc.RpcError as e:
                last = "%s %s" % (e.code(), e.details())
        time.sleep(0.05)
    log("%s not ready after %.0fs: %s" % (a.sock, a.timeout, last))
    return 1


def _one_pod(c, i, a, run_id):
    uid = uuid.uuid4().hex[:16]
    name = "bench-%03d" % i
    ns = "crisp-bench"
    logdir = os.path.join(a.workdir, "pod-logs", "%s_%s_%s" % (ns, name, uid))
    os.makedirs(logdir, exist_ok=True)
    # labels/annotations shaped like the kubelet's, so ListContainers answers have a
    # realistic size (about 1 KiB per container)
    pod_labels = {LABEL: run_id, "app": name, "io.kubernetes.pod.name": name,
                  "io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.uid": uid}
    sbcfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=ns, attempt=0),
        hostname=name, log_directory=logdir, labels=pod_labels,
        annotations={"kubernetes.io/config.source": "api", "kubernetes.io/config.seen": "2024-01-01T00:00:00Z"},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent="/%s/pod%s" % (CGROUP_ROOT, uid),
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))))
    pod_id = c.rt("RunPodSandbox", config=sbcfg).pod_sandbox_id
    ccfg = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="sleeper", attempt=0),
        image=pb.ImageSpec(image=a.image),
        command=["sleep", "3600"],
        labels={LABEL: run_id, "io.kubernetes.container.name": "sleeper",
                "io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": ns,
                "io.kubernetes.pod.uid": uid},
        annotations={"io.kubernetes.container.hash": "%08x" % (i * 2654435761 % 2**32),
                     "io.kubernetes.container.restartCount": "0",
                     "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                     "io.kubernetes.container.terminationMessagePolicy": "File",
                     "io.kubernetes.pod.terminationGracePeriod": "30"},
        log_path="sleeper/0.log",
        linux=pb.LinuxContainerConfig())
    cid = c.rt("CreateContainer", pod_sandbox_id=pod_id, config=ccfg, sandbox_config=sbcfg).container_id
    c.rt("StartContainer", container_id=cid)
    return pod_id, cid


def cmd_setup(a):
    c = CRI(a.sock)
    t0 = time.time()
    c.img("PullImage", image=pb.ImageSpec(image=a.pause))
    c.img("PullImage", image=pb.ImageSpec(image=a.image))
    run_id = uuid.uuid4().hex[:8]
    errors = []
    done = 0
    with cf.ThreadPoolExecutor(max_workers=a.workers) as ex:
        futs = [ex.submit(_one_pod, c, i, a, run_id) for i in range(a.pods)]
        for f in cf.as_completed(futs):
            try:
                f.result()
                done += 1
            except Exception as e:  # noqa: BLE001
                errors.append(str(e)[:300])
    if errors:
        log("%d of %d pods failed; first error: %s" % (len(errors), a.pods, errors[0]))
        return 1
    running = [x for x in c.rt("ListContainers").containers
               if x.labels.get(LABEL) == run_id and x.state == pb.CONTAINER_RUNNING]
    if len(running) < a.pods:
        log("only %d of %d containers are running" % (len(running), a.pods))
        return 1
    log("%d pods with one running container each, in %.1fs (%d threads)"
        % (done, time.time() - t0, a.workers))
    return 0


def cmd_teardown(a):
    if not os.path.exists(a.sock):
        return 0
    c = CRI(a.sock)
    t0 = time.time()
    try:
        pods = [p.id for p in c.rt("ListPodSandbox", timeout=30).items if LABEL in p.labels]
    except grpc.RpcError as e:
        log("teardown: ListPodSandbox failed: %s" % e.details())
        return 1
    errors = []

    def rm(pid):
        for m in ("StopPodSandbox", "RemovePodSandbox"):
            try:
                c.rt(m, timeout=60, pod_sandbox_id=pid)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    errors.append("%s %s: %s" % (m, pid[:12], e.details()))
    with cf.ThreadPoolExecutor(max_workers=8) as ex:
        list(ex.map(rm, pods))
    # the (now empty) pod cgroups
    base = "/sys/fs/cgroup"
    for h in [os.path.join(base, d) for d in os.listdir(base)] + [base]:
        top = os.path.join(h, CGROUP_ROOT)
        if os.path.isdir(top):
            for root, _, _ in sorted(os.walk(top, topdown=False), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(root)
                except OSError:
                    pass
    if errors:
        log("teardown: %d errors, first: %s" % (len(errors), errors[0]))
    log("removed %d pods in %.1fs" % (len(pods), time.time() - t0))
    return 1 if errors else 0


# ---------------------------------------------------------------------------
# measure

def proc_cpu(pid):
    """utime+stime of a process (all threads), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sys_cpu():
    """(busy, total) jiffies over all cores, from /proc/stat"""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return None


H2LOAD_FINISHED = re.compile(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s")


def h2load_finished(out):
    """(seconds, calls/s) from h2load's "finished in" line, or None; a run shorter than
    1 ms says it in us."""
    m = H2LOAD_FINISHED.search(out)
    if not m:
        return None
    return float(m.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1.0}[m.group(2)], float(m.group(3))


def pctl(sorted_vals, p):
    """nearest-rank percentile"""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


class H2Load:
    def __init__(self, workdir):
        self.workdir = workdir
        self.body = os.path.join(workdir, "empty-msg.bin")
        with open(self.body, "wb") as f:
            f.write(b"\0\0\0\0\0")  # gRPC frame: uncompressed, length 0 (empty request)
        self.logfile = os.path.join(workdir, "h2load-req.tsv")

    def run(self, sock, method, n, c, m, pids=()):
        args = ["h2load", "-B", "unix:" + sock, "-n", str(n), "-c", str(c), "-m", str(m), "-t", "1",
                "-H", "content-type: application/grpc", "-H", "te: trailers",
                "-d", self.body, "--log-file", self.logfile,
                "http://localhost/runtime.v1.RuntimeService/" + method]
        try:
            os.unlink(self.logfile)  # h2load appends to --log-file
        except FileNotFoundError:
            pass
        cpu0 = [proc_cpu(p) for p in pids]
        sys0 = sys_cpu()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        wall = time.time() - t0
        cpu1 = [proc_cpu(p) for p in pids]
        sys1 = sys_cpu()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        h2_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        out = r.stdout.decode(errors="replace")
        fin = h2load_finished(out)
        mr = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored", out)
        md = re.search(r"\(([\d]+)\) data", out)
        if r.returncode != 0 or not fin or not mr:
            raise RuntimeError("h2load failed (rc %d):\n%s" % (r.returncode, out[-2000:]))
        succeeded = int(mr.group(3))
        if succeeded != n:
            raise RuntimeError("h2load: only %d of %d requests succeeded against %s %s:\n%s"
                               % (succeeded, n, sock, method, out[-1500:]))
        lat = []
        with open(self.logfile) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1] == "200":
                    lat.append(int(parts[2]))
        if len(lat) != n:
            raise RuntimeError("h2load log has %d rows with status 200, expected %d" % (len(lat), n))
        lat.sort()
        secs, rps = fin
        return {
            "rps": rps, "secs": secs, "wall": wall, "n": n,
            "p50": pctl(lat, 50), "p90": pctl(lat, 90), "p99": pctl(lat, 99),
            "p999": pctl(lat, 99.9), "max": lat[-1] if lat else None, "min": lat[0] if lat else None,
            "data_bytes_per_call": int(md.group(1)) / n if md else None,
            "cpu": [b - a for a, b in zip(cpu0, cpu1)],
            "h2load_cpu": h2_cpu,
            # CPU seconds that all other processes (and the kernel's softirq work) used
            # during the run: background load that disturbs the figures
            "other_cpu": (sys1[0] - sys0[0]) / CLK_TCK - h2_cpu - sum(b - a for a, b in zip(cpu0, cpu1)),
        }


def tracing_lines(line, pair_ratio, methods, plat, pthr, modes):
    """Tracing (issue 12): throughput with --trace at each level, as ratios to
    direct and to crisp without --trace (the two run back to back). off must
    be within noise (5 %) of no tracing; summary within 10 %."""
    names = {"t-off": "off", "t-sum": "summary", "t-full": "full"}
    goals = {"t-off": 0.95, "t-sum": 0.90}
    for meth, _ in methods:
        for pname in (pthr, plat):
            for mode in modes:
                r = pair_ratio(meth, pname, mode, "crisp")
                goal = goals.get(mode) if pname == pthr else None
                line("%s tracing %s / no tracing (%s)" % (meth, names[mode], pname), "%.2f" % r,
                     ("target >= %.2f" % goal) if goal else "", (r >= goal) if goal else None,
                     None)
                line("  ... as a ratio to direct", "%.2f" % pair_ratio(meth, pname, mode), "", None)


def cmd_measure(a):
    h = H2Load(a.workdir)
    socks = {"direct": a.direct, "crisp": a.crisp}
    proxy_pid = {"direct": None, "crisp": a.crisp_pid}
    if a.relay:
        socks["relay"] = a.relay
        proxy_pid["relay"] = a.relay_pid
    # crisp with tracing: --trace but --trace-level off, summary, full (issue 12)
    traced = [(m, sock, pid) for m, sock, pid in (("t-off", a.trace_off, a.trace_off_pid),
                                                  ("t-sum", a.trace_summary, a.trace_summary_pid),
                                                  ("t-full", a.trace_full, a.trace_full_pid)) if sock]
    for m, sock, pid in traced:
        socks[m] = sock
        proxy_pid[m] = pid
    modes = [m for m in ("direct", "relay", "crisp", "t-off", "t-sum", "t-full") if m in socks]
    # CPU is sampled for: crisp, containerd, the relay and the traced crisps when there are
    pids = [a.crisp_pid, a.ctrd_pid] + ([a.relay_pid] if a.relay else []) + [t[2] for t in traced]

    # sanity: every path answers, and ListContainers carries every container
    counts = {}
    for mode in modes:
        c = CRI(socks[mode])
        c.rt("Version")
        counts[mode] = len(c.rt("ListContainers").containers)
    if len(set(counts.values())) != 1 or counts["direct"] < a.min_containers:
        log("ListContainers counts differ or are too small (need >= %d): %s" % (a.min_containers, counts))
        return 1

    loadavg0 = " ".join(open("/proc/loadavg").read().split()[:3])
    rss_idle = proc_status(a.crisp_pid, "VmRSS")
    cpu_idle = proc_cpu(a.crisp_pid)

    profiles = [  # name, clients, streams per client
        ("lat c1 m1", 1, 1),
        ("thr c%d m%d" % (a.thr_clients, a.thr_streams), a.thr_clients, a.thr_streams),
    ]
    methods = [("Version", a.n_version), ("ListContainers", a.n_list)]

    def n_of(n, cc, ms):
        return n if cc * ms > 1 else max(1000, n // a.lat_divisor)

    t0 = time.time()
    # warm-up: every path, method and profile, results discarded
    for meth, n in methods:
        for _, cc, ms in profiles:
            for mode in modes:
                h.run(socks[mode], meth, max(cc * ms * 4, n_of(n, cc, ms) // 5), cc, ms)
    log("warm-up done in %.1fs" % (time.time() - t0))

    runs = {}  # (method, profile, mode) -> [result per repetition]
    t1 = time.time()
    for rep in range(a.reps):
        for meth, n in methods:
            for pname, cc, ms in profiles:
                # the modes run back to back (so a pair shares the machine's background
                # load), in an order that rotates every repetition
                order = modes[rep % len(modes):] + modes[:rep % len(modes)]
                for mode in order:
                    r = h.run(socks[mode], meth, n_of(n, cc, ms), cc, ms, pids)
                    pp = proxy_pid[mode]
                    r["proxy_cpu"] = r["cpu"][pids.index(pp)] if pp else 0.0
                    r["ctrd_cpu"] = r["cpu"][1]
                    runs.setdefault((meth, pname, mode), []).append(r)
        log("repetition %d/%d done (%.1fs)" % (rep + 1, a.reps, time.time() - t1))

    rss_after = proc_status(a.crisp_pid, "VmRSS")
    hwm = proc_status(a.crisp_pid, "VmHWM")
    cpu_total = proc_cpu(a.crisp_pid) - cpu_idle

    # crisp must still be alive and answer correctly after the load
    after_count = len(CRI(a.crisp).rt("ListContainers").containers)

    med = statistics.median
    rows = []
    cell = {}
    for meth, _ in methods:
        for pname, _, _ in profiles:
            for mode in modes:
                rs = runs[(meth, pname, mode)]
                d = {
                    "method": meth, "profile": pname, "mode": mode, "n": rs[0]["n"],
                    "rps": med(r["rps"] for r in rs), "p50": med(r["p50"] for r in rs),
                    "p99": med(r["p99"] for r in rs), "p999": med(r["p999"] for r in rs),
                    "rps_all": [round(r["rps"]) for r in rs],
                    "p50_all": [r["p50"] for r in rs], "p99_all": [r["p99"] for r in rs],
                    "bytes": rs[0]["data_bytes_per_call"],
                    # CPU seconds per call, shown as microseconds
                    "proxy_cpu_us": med(r["proxy_cpu"] / r["n"] * 1e6 for r in rs),
                    "ctrd_cpu_us": med(r["ctrd_cpu"] / r["n"] * 1e6 for r in rs),
                    "h2load_cpu_us": med(r["h2load_cpu"] / r["n"] * 1e6 for r in rs),
                    # clamped: /proc tick accounting (10 ms ticks) can make it slightly negative
                    "other_pct": max(0.0, med(100.0 * r["other_cpu"] / r["wall"] for r in rs)),
                }
                rows.append(d)
                cell[(meth, pname, mode)] = d

    def pair_ratio(meth, pname, mode, base="direct"):
        """median over repetitions of rps(mode)/rps(base), each pair run back to back"""
        return med(x["rps"] / y["rps"] for x, y in zip(runs[(meth, pname, mode)], runs[(meth, pname, base)]))

    def pair_added(meth, pname, mode, key="p50"):
        return med(x[key] - y[key] for x, y in zip(runs[(meth, pname, mode)], runs[(meth, pname, "direct")]))

    out = []
    p = out.append
    p("")
    p("crisp benchmark: %d containers in %d pods, %d repetitions per cell (medians shown), "
      "h2load -t 1, %d cores, load average before: %s"
      % (counts["direct"], counts["direct"], a.reps, os.cpu_count(), loadavg0))
    p("modes: direct = containerd's socket; crisp = through crisp"
      + ("; relay = through bench/relay.c, a byte copier that parses nothing (the floor for any proxy hop)"
         if a.relay else ""))
    p("")
    hdr = "%-15s %-11s %-7s %7s %9s %8s %8s %9s %9s %9s %9s %7s" % (
        "method", "load", "mode", "calls", "calls/s", "p50 us", "p99 us", "p99.9 us",
        "proxy CPU", "ctrd CPU", "h2ld CPU", "others")
    p(hdr)
    p("%-15s %-11s %-7s %7s %9s %8s %8s %9s %9s %9s %9s %7s" % (
        "", "", "", "", "", "", "", "", "us/call", "us/call", "us/call", "%core"))
    p("-" * len(hdr))
    for d in rows:
        p("%-15s %-11s %-7s %7d %9.0f %8.0f %8.0f %9.0f %9s %9.1f %9.1f %7.0f" % (
            d["method"], d["profile"], d["mode"], d["n"], d["rps"], d["p50"], d["p99"], d["p999"],
            ("%.1f" % d["proxy_cpu_us"]) if d["mode"] != "direct" else "-", d["ctrd_cpu_us"],
            d["h2load_cpu_us"], d["other_pct"]))
    p("")
    p("proxy CPU = utime+stime of crisp (or relay) per call; ctrd CPU = containerd's; "
      "h2ld = the load generator's;")
    p("others = CPU of every other process on the machine during the run, in % of one core "
      "(background load: above ~20 that cell is disturbed)")
    p("bytes per response (gRPC DATA): " + ", ".join(
        "%s %s %.0f" % (d["method"], d["mode"], d["bytes"]) for d in rows if d["profile"].startswith("lat")))
    p("calls/s of each repetition:")
    for d in rows:
        p("  %-15s %-11s %-7s %s" % (d["method"], d["profile"], d["mode"], d["rps_all"]))
    p("")
    p("targets (crisp vs direct; ratios and differences are medians over back-to-back pairs)")
    p("-" * 100)
    verdicts = []
    fmt = "%-58s %-17s %-17s %s"

    def line(label, value, goal, ok=None, relay_value=None):
        if ok is not None:
            verdicts.append({"label": label, "value": value, "goal": goal, "pass": ok})
        rv = ("relay: " + relay_value) if (relay_value and a.relay) else ""
        p(fmt % (label, value, goal if ok is not None else "(info)",
                 ("PASS" if ok else "FAIL") if ok is not None else "") + ("   " + rv if rv else ""))

    plat, pthr = profiles[0][0], profiles[1][0]
    for meth, _ in methods:
        r = pair_ratio(meth, pthr, "crisp")
        line("%s throughput crisp/direct (%s)" % (meth, pthr), "%.2f" % r, "target >= 0.90", r >= 0.90,
             "%.2f" % pair_ratio(meth, pthr, "relay") if a.relay else None)
    for meth, _ in methods:
        ad = pair_added(meth, plat, "crisp")
        line("%s added p50 latency (%s)" % (meth, plat), "%+.0f us" % ad, "target <= 30 us", ad <= 30,
             "%+.0f us" % pair_added(meth, plat, "relay") if a.relay else None)
    line("crisp RSS idle (VmRSS after start, before any load)", "%.1f MiB" % (rss_idle / 1024.0),
         "target <= 10 MiB", rss_idle <= 10 * 1024)
    for meth, _ in methods:
        line("%s throughput crisp/direct (%s)" % (meth, plat), "%.2f" % pair_ratio(meth, plat, "crisp"), "",
             None, "%.2f" % pair_ratio(meth, plat, "relay") if a.relay else None)
    for meth, _ in methods:
        line("%s added p99 latency (%s)" % (meth, plat), "%+.0f us" % pair_added(meth, plat, "crisp", "p99"),
             "", None, "%+.0f us" % pair_added(meth, plat, "relay", "p99") if a.relay else None)
    if traced:
        tracing_lines(line, pair_ratio, methods, plat, pthr, [t[0] for t in traced])
    line("crisp RSS after the load (VmRSS / peak VmHWM)",
         "%.1f / %.1f MiB" % (rss_after / 1024.0, hwm / 1024.0), "")
    line("crisp CPU over warm-up + measured runs", "%.2f s" % cpu_total, "")
    line("crisp ListContainers after the load", "%d containers%s" % (
        after_count, "" if after_count == counts["direct"] else " MISMATCH"), "")
    p("")
    p("%d of %d targets met (measured in %.0fs)" % (sum(1 for v in verdicts if v["pass"]), len(verdicts),
                                                    time.time() - t1))
    text = "\n".join(out)
    print(text, flush=True)
    with open(os.path.join(a.workdir, "results.json"), "w") as f:
        json.dump({"rows": rows, "rss_idle_kb": rss_idle, "rss_after_kb": rss_after, "hwm_kb": hwm,
                   "containers": counts["direct"], "reps": a.reps, "loadavg_before": loadavg0,
                   "targets": verdicts}, f, indent=1)
    with open(os.path.join(a.workdir, "results.txt"), "w") as f:
        f.write(text + "\n")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("ready")
    r.add_argument("--sock", required=True)
    r.add_argument("--timeout", type=float, default=15)
    r.add_argument("--pid", type=int, default=0)
    s = sub.add_parser("setup")
    s.add_argument("--sock", required=True)
    s.add_argument("--pods", type=int, default=100)
    s.add_argument("--image", required=True)
    s.add_argument("--pause", required=True)
    s.add_argument("--workdir", required=True)
    s.add_argument("--workers", type=int, default=8)
    t = sub.add_parser("teardown")
    t.add_argument("--sock", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--direct", required=True)
    m.add_argument("--crisp", required=True)
    m.add_argument("--crisp-pid", type=int, required=True)
    m.add_argument("--ctrd-pid", type=int, required=True)
    m.add_argument("--relay", default="", help="socket of bench/relay (optional third mode)")
    m.add_argument("--relay-pid", type=int, default=0)
    for lvl in ("off", "summary", "full"):
        m.add_argument("--trace-" + lvl, default="", help="socket of crisp --trace-level " + lvl)
        m.add_argument("--trace-%s-pid" % lvl, type=int, default=0)
    m.add_argument("--workdir", required=True)
    m.add_argument("--min-containers", type=int, default=100)
    m.add_argument("--reps", type=int, default=5)
    m.add_argument("--n-version", type=int, default=40000)
    m.add_argument("--n-list", type=int, default=2000)
    m.add_argument("--lat-divisor", type=int, default=4,
                   help="the c1 m1 runs make n/lat-divisor calls")
    m.add_argument("--thr-clients", type=int, default=4)
    m.add_argument("--thr-streams", type=int, default=16)
    a = ap.parse_args()
    return {"ready": cmd_ready, "setup": cmd_setup, "teardown": cmd_teardown, "measure": cmd_measure}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
