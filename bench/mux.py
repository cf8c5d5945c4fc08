#!/usr/bin/python3
"""crisp benchmark, multiplexing part (run by bench/run-mux; needs Debian's
/usr/bin/python3). See bench/README.md.

  mux.py setup     --mux S --pods N --image I --workdir W [--workers K]
  mux.py measure   --mux S --cri S --docker-crisp S --containerd S --pids P,P,P --workdir W [...]
  mux.py teardown  --containerd S --docker S

setup makes N pods (one running busybox each) on each backend through the
mux (handler "" -> containerd, "docker" -> dockerd). teardown removes every
pod carrying the bench's label straight through each engine. measure prints
the table and writes W/results-mux.txt and W/results-mux.json.
"""
import argparse
import concurrent.futures as cf
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (CRI client, /proc helpers, percentiles)
import docker  # noqa: E402  (kubelet-shaped pod configs, the engine teardown)
from bench import CRI, log, pctl, proc_cpu  # noqa: E402

RT = "runtime.v1.RuntimeService/"
HANDLERS = {"containerd": "", "docker": "docker"}


# ---------------------------------------------------------------------------
# setup / teardown

def cmd_setup(a):
    c = CRI(a.mux)
    pb = bench.pb
    t0 = time.time()
    c.img("PullImage", image=pb.ImageSpec(image=a.image))  # into both engines ("pull": "all")
    logroot = os.path.join(a.workdir, "pod-logs")
    errors = []

    def one(backend, i):
        sb, cc = docker.pod_config(i, logroot, prefix="mux-" + backend)
        pod_id = c.rt("RunPodSandbox", config=sb, runtime_handler=HANDLERS[backend]).pod_sandbox_id
        cc.image.CopyFrom(pb.ImageSpec(image=a.image))
        cid = c.rt("CreateContainer", pod_sandbox_id=pod_id, config=cc, sandbox_config=sb).container_id
        c.rt("StartContainer", container_id=cid)
    with cf.ThreadPoolExecutor(max_workers=a.workers) as ex:
        futs = [ex.submit(one, b, i) for i in range(a.pods) for b in HANDLERS]
        for f in cf.as_completed(futs):
            try:
                f.result()
            except Exception as e:  # noqa: BLE001
                errors.append(str(e)[:300])
    if errors:
        log("%d of %d pods failed; first error: %s" % (len(errors), 2 * a.pods, errors[0]))
        return 1
    running = [x for x in c.rt("ListContainers").containers
               if docker.LABEL in x.labels and x.state == pb.CONTAINER_RUNNING]
    if len(running) < 2 * a.pods:
        log("only %d of %d containers running" % (len(running), 2 * a.pods))
        return 1
    log("%d pods on containerd + %d on dockerd, one running container each, made through the mux in %.1fs"
        % (a.pods, a.pods, time.time() - t0))
    return 0


def cmd_teardown(a):
    rc = 0
    if os.path.exists(a.containerd):
        c = CRI(a.containerd)
        pods = [p.id for p in c.rt("ListPodSandbox", timeout=30).items if docker.LABEL in p.labels]

        def rm(pid):
            for m in ("StopPodSandbox", "RemovePodSandbox"):
                c.rt(m, timeout=60, pod_sandbox_id=pid)
        with cf.ThreadPoolExecutor(max_workers=4) as ex:
            for f in [ex.submit(rm, p) for p in pods]:
                try:
                    f.result()
                except Exception as e:  # noqa: BLE001
                    log("teardown (containerd): %s" % str(e)[:200])
                    rc = 1
        log("removed %d pods from containerd" % len(pods))
    rc |= docker.cmd_teardown(argparse.Namespace(docker=a.docker))
    return rc


# ---------------------------------------------------------------------------
# measure

def grpc_body(path, msg):
    data = msg.SerializeToString()
    with open(path, "wb") as f:
        f.write(b"\0" + len(data).to_bytes(4, "big") + data)
    return path


class Runner:
    """h2load on one socket and method with a given request body; latencies
    from its --log-file, CPU of the given processes per call."""

    def __init__(self, workdir, pids):
        self.logfile = os.path.join(workdir, "h2load-mux-req.tsv")
        self.pids = pids  # name -> pid

    def run(self, sock, method, body, n, c=1, m=1):
        args = ["h2load", "-B", "unix:" + sock, "-n", str(n), "-c", str(c), "-m", str(m), "-t", "1",
                "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", body,
                "--log-file", self.logfile, "http://localhost/" + RT + method]
        try:
            os.unlink(self.logfile)
        except FileNotFoundError:
            pass
        cpu0 = {k: proc_cpu(p) for k, p in self.pids.items()}
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        cpu1 = {k: proc_cpu(p) for k, p in self.pids.items()}
        out = r.stdout.decode(errors="replace")
        fin = bench.h2load_finished(out)
        mr = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
        md = re.search(r"\(([\d]+)\) data", out)
        if r.returncode != 0 or not fin or not mr or int(mr.group(3)) != n:
            raise RuntimeError("h2load %s %s: not every call answered (rc %d):\n%s"
                               % (sock, method, r.returncode, out[-1500:]))
        lat = []
        with open(self.logfile) as f:
            for line in f:
                p = line.split("\t")
                if len(p) >= 3 and p[1] == "200":
                    lat.append(int(p[2]))
        if len(lat) != n:
            raise RuntimeError("h2load log: %d rows with status 200, expected %d" % (len(lat), n))
        secs = fin[0]
        return {"lat": lat, "n": n, "secs": secs, "bytes": int(md.group(1)) / n if md else 0,
                "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0}}


def cell_stats(runs):
    lat = sorted(x for r in runs for x in r["lat"])
    n = sum(r["n"] for r in runs)
    cpu = {}
    for r in runs:
        for k, v in r["cpu"].items():
            cpu[k] = cpu.get(k, 0.0) + v
    return {"n": n, "p50": pctl(lat, 50), "p90": pctl(lat, 90), "p99": pctl(lat, 99),
            "rps": n / sum(r["secs"] for r in runs), "bytes": runs[0]["bytes"],
            "cpu_us": {k: v / n * 1e6 for k, v in cpu.items()}}


def pick_ids(c, pb):
    """A running container (and its sandbox) of each backend, as the mux lists them."""
    out = {}
    ctrd = CRI(os.environ["MUX_CONTAINERD"])
    mine = {x.id for x in ctrd.rt("ListContainers").containers}
    for x in c.rt("ListContainers").containers:
        if docker.LABEL not in x.labels or x.state != pb.CONTAINER_RUNNING:
            continue
        b = "containerd" if x.id in mine else "docker"
        out.setdefault(b, (x.id, x.pod_sandbox_id))
    return out


def cmd_measure(a):
    mux = CRI(a.mux)
    pb = bench.pb
    os.environ["MUX_CONTAINERD"] = a.containerd
    names = ["mux", "cri", "docker"]
    pids = dict(zip(names, [int(x) for x in a.pids.split(",")]))
    socks = {"mux": a.mux, "cri": a.cri, "docker": a.docker_crisp, "containerd": a.containerd}
    # sanity: the mux lists both backends' containers, each single crisp its own
    n_mux = len(mux.rt("ListContainers").containers)
    n_cri = len(CRI(a.cri).rt("ListContainers").containers)
    n_dk = len(CRI(a.docker_crisp).rt("ListContainers").containers)
    if n_mux != n_cri + n_dk or n_cri < a.min_pods or n_dk < a.min_pods:
        log("counts: mux %d, containerd %d, docker %d (need >= %d each, mux = sum)"
            % (n_mux, n_cri, n_dk, a.min_pods))
        return 1
    ids = pick_ids(mux, pb)
    bodies = {"list": grpc_body(os.path.join(a.workdir, "list.bin"), pb.ListContainersRequest())}
    for b, (cid, _) in ids.items():
        bodies["status-" + b] = grpc_body(os.path.join(a.workdir, "status-%s.bin" % b),
                                          pb.ContainerStatusRequest(container_id=cid))
        # the mux knows the owner from here on (its route cache), as it does
        # for every pod it made or saw once
        mux.rt("ContainerStatus", container_id=cid)
    R = Runner(a.workdir, pids)
    loadavg0 = " ".join(open("/proc/loadavg").read().split()[:3])
    # cells: (name, method, body, [modes]); a mode is a socket name
    cells = [
        ("ListContainers", "ListContainers", bodies["list"], ["mux", "cri", "docker", "containerd"]),
        ("ContainerStatus (docker)", "ContainerStatus", bodies["status-docker"], ["mux", "docker"]),
        ("ContainerStatus (containerd)", "ContainerStatus", bodies["status-containerd"],
         ["mux", "cri", "containerd"]),
    ]
    t0 = time.time()
    for name, method, body, modes in cells:  # warm-up
        for mode in modes:
            R.run(socks[mode], method, body, 50)
    log("mux: warm-up done in %.1fs" % (time.time() - t0))
    runs = {}
    k = max(1, a.chunks)
    for rep in range(a.reps):
        for name, method, body, modes in cells:
            n = a.n_list if method == "ListContainers" else a.n_status
            # lat: one call at a time; thr8: 8 in flight on one connection (the
            # kubelet's shape). Each in k chunks, the modes' order rotating from
            # chunk to chunk, so that every mode sees the same background load.
            for load, m in (("lat", 1), ("thr8", 8)):
                for j in range(k):
                    turn = rep * k + j
                    order = modes[turn % len(modes):] + modes[:turn % len(modes)]
                    for mode in order:
                        runs.setdefault((name, load, mode), []).append(
                            R.run(socks[mode], method, body, max(m, n // k), 1, m))
        log("mux: repetition %d/%d done (%.1fs)" % (rep + 1, a.reps, time.time() - t0))
    return report(a, cells, runs, ids, n_mux, n_cri, n_dk, loadavg0)


def report(a, cells, runs, ids, n_mux, n_cri, n_dk, loadavg0):
    st = {key: cell_stats(v) for key, v in runs.items()}
    out = []
    p = out.append
    p("")
    p("crisp benchmark, multiplexing: one crisp --config over containerd (cri) and dockerd (docker), "
      "%d + %d pods with one running busybox each; %d repetitions, %d cores, load average before: %s"
      % (n_cri, n_dk, a.reps, os.cpu_count(), loadavg0))
    p("mux = crisp --config (both backends); cri = crisp --backend cri: (containerd only); docker = crisp "
      "--backend docker: (dockerd only); containerd = containerd's own socket")
    p("lat = one call at a time; thr8 = 8 calls in flight on one connection; each in %d chunks per "
      "repetition, the modes' order rotating from chunk to chunk" % a.chunks)
    p("")
    fmt = "%-30s %-5s %-11s %7s %9s %8s %8s %8s %8s %9s"
    hdr = fmt % ("call", "load", "mode", "calls", "calls/s", "p50 us", "p90 us", "p99 us", "KB/call",
                 "crisp us")
    p(hdr)
    p(fmt % ("", "", "", "", "", "", "", "", "", "CPU/call"))
    p("-" * len(hdr))
    for name, _, _, modes in cells:
        for load in ("lat", "thr8"):
            for mode in modes:
                s = st[(name, load, mode)]
                cpu = s["cpu_us"].get(mode)
                p(fmt % (name, load, mode, s["n"], "%.0f" % s["rps"], s["p50"], s["p90"], s["p99"],
                         "%.1f" % (s["bytes"] / 1024.0), "%.0f" % cpu if cpu is not None else "-"))
    p("")
    p("IDs: docker container %s, containerd container %s" % (ids["docker"][0][:12], ids["containerd"][0][:12]))
    verdicts = []

    def line(label, value, goal, ok):
        verdicts.append({"label": label, "value": value, "goal": goal, "pass": bool(ok)})
        p("%-78s %-10s %-18s %s" % (label, value, goal, "PASS" if ok else "FAIL"))

    def info(label, value):
        p("%-78s %-10s %-18s" % (label, value, "(info)"))
    p("")
    p("targets (p50 of all the calls of a cell, their chunks interleaved in time)")
    p("-" * 112)
    lc = {m: st[("ListContainers", "lat", m)]["p50"] for m in ("mux", "cri", "docker", "containerd")}
    slower = max(lc["cri"], lc["docker"])
    r = lc["mux"] / slower
    line("ListContainers through the mux / the slower backend's own (single-backend crisp)",
         "%.2fx" % r, "target <= 1.20x", r <= 1.2)
    info("  the same / the sum of both (what one after the other would cost)",
         "%.2fx" % (lc["mux"] / (lc["cri"] + lc["docker"])))
    info("  the same / the slower of containerd's own socket and the docker crisp",
         "%.2fx" % (lc["mux"] / max(lc["containerd"], lc["docker"])))
    for b, single in (("docker", "docker"), ("containerd", "cri")):
        name = "ContainerStatus (%s)" % b
        r = st[(name, "lat", "mux")]["p50"] / st[(name, "lat", single)]["p50"]
        line("ContainerStatus routed by ID to %s: mux / single-backend crisp" % b, "%.2fx" % r,
             "target <= 1.10x", r <= 1.1)
        r = st[(name, "thr8", "mux")]["rps"] / st[(name, "thr8", single)]["rps"]
        info("  calls/s with 8 in flight: mux / single-backend crisp", "%.2fx" % r)
        cm, cs = st[(name, "lat", "mux")]["cpu_us"]["mux"], st[(name, "lat", single)]["cpu_us"][single]
        info("  crisp CPU per call (lat): mux / single-backend crisp", "%.0f / %.0f us" % (cm, cs))
        if st[(name, "lat", "mux")]["bytes"] != st[(name, "lat", single)]["bytes"] or \
                not st[(name, "lat", "mux")]["bytes"]:
            p("  WARNING: answers differ in size (mux %.0f B, single %.0f B): not the same answer"
              % (st[(name, "lat", "mux")]["bytes"], st[(name, "lat", single)]["bytes"]))
    text = "\n".join(out) + "\n"
    print(text)
    with open(os.path.join(a.workdir, "results-mux.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(a.workdir, "results-mux.json"), "w") as f:
        json.dump({"cells": {"|".join(k): {kk: vv for kk, vv in v.items()} for k, v in st.items()},
                   "verdicts": verdicts}, f, indent=1)
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--mux", required=True)
    s.add_argument("--pods", type=int, default=50)
    s.add_argument("--image", required=True)
    s.add_argument("--workdir", required=True)
    s.add_argument("--workers", type=int, default=6)
    t = sub.add_parser("teardown")
    t.add_argument("--containerd", required=True)
    t.add_argument("--docker", required=True)
    m = sub.add_parser("measure")
    for x in ("--mux", "--cri", "--docker-crisp", "--containerd", "--pids", "--workdir"):
        m.add_argument(x, required=True)
    m.add_argument("--min-pods", type=int, default=50)
    m.add_argument("--reps", type=int, default=3)
    m.add_argument("--chunks", type=int, default=6)
    m.add_argument("--n-list", type=int, default=300)
    m.add_argument("--n-status", type=int, default=1200)
    a = ap.parse_args()
    return {"setup": cmd_setup, "teardown": cmd_teardown, "measure": cmd_measure}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
