#!/usr/bin/python3
"""The streaming part of `make bench` (bench/run-stream, bench/README.md):
exec round-trip latency and port-forward throughput through crisp's
streaming server, against the engine's own exec and a TCP connection made
inside the pod's network namespace.

  stream.py --crisp SOCK --docker SOCK --image BUSYBOX --workdir DIR [--reps N]

Every figure comes from test/streamgo (build/grpcgo/streamgo): client-go's
SPDY executor and port-forwarder, the URL from a CRI call over grpc-go, as
the kubelet asks for it; the baselines from the same program (a raw Docker
exec: create, hijacked start, inspect; TCP straight into the pod).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "test", "integration"))
sys.path.insert(0, os.path.join(REPO, "test", "docker"))
from crilib import CRIClient, v1  # noqa: E402
from enginelib import Engine  # noqa: E402

STREAMGO = os.environ.get("CRISP_TEST_STREAMGO", os.path.join(REPO, "build", "grpcgo", "streamgo"))
ECHO_PORT = 9090  # streamgo's echo server, started in the pod's network namespace


def say(msg):
    print("[bench] " + msg, file=sys.stderr, flush=True)


def streamgo(*args, nsenter_pid=None):
    cmd = [STREAMGO] + [str(a) for a in args]
    if nsenter_pid:
        cmd = ["nsenter", "-t", str(nsenter_pid), "-n"] + cmd
    p = subprocess.run(cmd, capture_output=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), p.stderr.decode(errors="replace")[-500:]))
    return json.loads(p.stdout)


def setup(cri, image, workdir):
    cri.img("PullImage", image=v1.ImageSpec(image=image), deadline=300)
    uid = uuid.uuid4().hex[:12]
    logdir = os.path.join(workdir, "pod-logs", uid)
    os.makedirs(os.path.join(logdir, "echo"), exist_ok=True)
    os.makedirs(os.path.join(logdir, "idle"), exist_ok=True)
    pcfg = v1.PodSandboxConfig(
        metadata=v1.PodSandboxMetadata(name="bench-stream", uid=uid, namespace="crisp-bench"),
        hostname="bench-stream", log_directory=logdir)
    pod = cri.rt("RunPodSandbox", config=pcfg).pod_sandbox_id
    ids = {}
    for name, cmd in (("idle", ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]),):
        ccfg = v1.ContainerConfig(metadata=v1.ContainerMetadata(name=name), image=v1.ImageSpec(image=image),
                                  command=cmd, log_path="%s/0.log" % name)
        cid = cri.rt("CreateContainer", pod_sandbox_id=pod, config=ccfg, sandbox_config=pcfg).container_id
        cri.rt("StartContainer", container_id=cid)
        ids[name] = cid
    return pod, ids


def teardown(cri, pod):
    try:
        cri.rt("StopPodSandbox", pod_sandbox_id=pod, deadline=60)
        for c in cri.rt("ListContainers").containers:
            if c.pod_sandbox_id == pod:
                cri.rt("RemoveContainer", container_id=c.id, deadline=60)
        cri.rt("RemovePodSandbox", pod_sandbox_id=pod, deadline=60)
    except Exception as e:  # noqa: BLE001
        say("teardown: %s" % e)


def cpu_s(pid):
    """utime + stime of a process, seconds."""
    if not pid:
        return 0.0
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def med(xs):
    return statistics.median(xs)


def measure(args, crisp_sock, docker_sock, pod, ids, sandbox_pid):
    cri = "unix://" + crisp_sock
    # warm-up: the echo server answers, both paths work once
    for _ in range(50):
        try:
            r = streamgo("portforward", "-cri", cri, "-id", pod, "-port", ECHO_PORT, "-bytes", 1000)
            if r["conns"][0]["same_data"]:
                break
        except RuntimeError:
            pass
        time.sleep(0.2)
    streamgo("bench-exec", "-cri", cri, "-id", ids["idle"], "-n", 3)
    streamgo("bench-exec", "-engine", "unix://" + docker_sock, "-id", ids["idle"], "-n", 3)
    rows = {"exec_crisp": [], "exec_docker": [], "pf1_crisp": [], "pf1_direct": [], "pf8_crisp": [],
            "pf8_direct": [], "crisp_cpu_ms_per_mib": []}
    big, each8 = args.mib << 20, (args.mib << 20) // 8
    for rep in range(args.reps):
        order = [0, 1] if rep % 2 == 0 else [1, 0]
        for which in order:
            if which == 0:
                r = streamgo("bench-exec", "-cri", cri, "-id", ids["idle"], "-n", args.execs)
                rows["exec_crisp"].append(r["p50_ms"])
                c0 = cpu_s(args.crisp_pid)
                r = streamgo("portforward", "-cri", cri, "-id", pod, "-port", ECHO_PORT, "-bytes", big)
                assert r["conns"][0]["same_data"], r
                rows["pf1_crisp"].append(r["mib_per_s"])
                # bytes both ways through crisp: what it costs per MiB moved
                rows["crisp_cpu_ms_per_mib"].append((cpu_s(args.crisp_pid) - c0) * 1000 / (2 * args.mib))
                r = streamgo("portforward", "-cri", cri, "-id", pod, "-port", ECHO_PORT, "-conns", 8,
                             "-bytes", each8)
                assert all(c["same_data"] for c in r["conns"]), r
                rows["pf8_crisp"].append(r["mib_per_s"])
            else:
                r = streamgo("bench-exec", "-engine", "unix://" + docker_sock, "-id", ids["idle"],
                             "-n", args.execs)
                rows["exec_docker"].append(r["p50_ms"])
                addr = "127.0.0.1:%d" % ECHO_PORT
                r = streamgo("tcp", "-addr", addr, "-bytes", big, nsenter_pid=sandbox_pid)
                rows["pf1_direct"].append(r["mib_per_s"])
                r = streamgo("tcp", "-addr", addr, "-conns", 8, "-bytes", each8, nsenter_pid=sandbox_pid)
                rows["pf8_direct"].append(r["mib_per_s"])
        say("rep %d/%d: %s" % (rep + 1, args.reps, {k: round(v[-1], 2) for k, v in rows.items()}))
    return rows


def report(rows, args):
    e_c, e_d = med(rows["exec_crisp"]), med(rows["exec_docker"])
    lines = [
        "streaming (%d reps, medians; exec: p50 of %d execs of `true` until the exit status;"
        " port-forward: %d MiB echoed, one connection / 8 at once)" % (args.reps, args.execs, args.mib),
        "%-38s %10s %10s %8s %8s  %s" % ("", "crisp", "baseline", "ratio", "target", ""),
    ]
    ratio = e_c / e_d
    lines.append("%-38s %8.1fms %8.1fms %8.2f %8s  %s" % ("exec round trip (SPDY v4) vs docker exec", e_c, e_d,
                                                          ratio, "<=1.20", "PASS" if ratio <= 1.2 else "FAIL"))
    for k, label in (("pf1", "port-forward, 1 connection (MiB/s)"), ("pf8", "port-forward, 8 connections (MiB/s)")):
        c, d = med(rows[k + "_crisp"]), med(rows[k + "_direct"])
        lines.append("%-38s %10.1f %10.1f %8.2f %8s  %s" % (label, c, d, c / d, ">=0.80",
                                                            "PASS" if c / d >= 0.8 else "FAIL"))
    if rows["crisp_cpu_ms_per_mib"] and med(rows["crisp_cpu_ms_per_mib"]) > 0:
        cost = med(rows["crisp_cpu_ms_per_mib"])
        lines.append("crisp's CPU per MiB forwarded (both ways): %.2f ms (one core would move %.0f MiB/s)"
                     % (cost, 1000 / cost))
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.workdir, "stream-results.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.workdir, "stream-results.json"), "w") as f:
        json.dump(rows, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crisp", required=True)
    ap.add_argument("--docker", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--execs", type=int, default=20)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--crisp-pid", type=int, default=0)
    args = ap.parse_args()
    cri = CRIClient("unix://" + args.crisp, "bench")
    pod, ids = setup(cri, args.image, args.workdir)
    echo = None
    try:
        eng = Engine("docker", args.docker)
        pid = eng.inspect(pod)["State"]["Pid"]
        # a fast echo server in the pod's network namespace: busybox's nc -e cat
        # would be the bottleneck of both paths
        echo = subprocess.Popen(["nsenter", "-t", str(pid), "-n", STREAMGO, "echo", "-listen",
                                 "127.0.0.1:%d" % ECHO_PORT], stdout=subprocess.PIPE)
        echo.stdout.readline()
        rows = measure(args, args.crisp, args.docker, pod, ids, pid)
        report(rows, args)
    finally:
        if echo:
            echo.kill()
            echo.wait()
        teardown(cri, pod)


if __name__ == "__main__":
    main()
