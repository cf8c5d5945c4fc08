"""Protocol tracing (--trace): the records match the calls made, through the
python (C-core) client and the grpc-go client; filters and levels; bodies cut
at --trace-max-body; registry credentials never written anywhere; env values
redacted on request; rotation by size, reopen and filter reload on SIGHUP; a
trace file that does not drain never slows calls (drops counted, said in the
trace). Each test runs its own crisp in front of the session's containerd."""
import base64
import os
import signal
import stat
import sys
import threading
import time

import grpc
import pytest
from google.protobuf.json_format import MessageToDict, ParseDict

import tracelib as tl
from conftest import WRAPPED, WORK, Crisp, Pods, _crisp_instances, stop_and_check, wait_for
from crilib import CRIClient, rpc_error, v1

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grpcgo"))
from crigo import GoCRI, built  # noqa: E402

TRACE_DIR = os.path.join(WORK, "traces")


def trace_path(name):
    os.makedirs(TRACE_DIR, exist_ok=True)
    p = os.path.join(TRACE_DIR, "%s-%d.jsonl" % (name, os.getpid()))
    for suffix in ("", ".1", ".2", ".3", ".old"):
        if os.path.exists(p + suffix):
            os.unlink(p + suffix)
    return p


class Traced:
    """A crisp of its own writing a trace (extra options as given)."""

    def __init__(self, testenv, name, *args):
        self.path = trace_path(name)
        self.crisp = Crisp("trace-" + name, testenv.CONTAINERD_SOCK,
                           extra_args=["--trace", self.path] + list(args))
        _crisp_instances.append(self.crisp)

    def __enter__(self):
        self.crisp.start()
        self.client = CRIClient("unix://" + self.crisp.sock, "traced")
        return self

    def __exit__(self, *exc):
        self.client.close()
        stop_and_check(self.crisp)

    def records(self, pred=lambda r: True, n=1, timeout=10.0):
        return tl.wait_records(self.path, pred, n, timeout)


def as_json(msg):
    return MessageToDict(msg)


def norm(cls, d):
    """A request as protojson would name it (what crisp's JSON must equal)."""
    return MessageToDict(ParseDict(d, cls()))


def check_common(rec, method, code="OK"):
    assert rec["method"] == method and rec["status"] == code, rec
    assert rec["service"] in ("RuntimeService", "ImageService") and rec["api"] == "v1"
    assert rec["backend"].startswith("cri:unix://"), rec
    assert rec["latency_us"] > 0 and 0 <= rec.get("backend_us", 0) <= rec["latency_us"], rec
    assert rec["conn"] >= 1 and rec["stream"] >= 1 and rec["uid"] == os.getuid()


# ---------------------------------------------------------------------------


def test_trace_python_calls(testenv, direct_client):
    """Every call the python client makes has its record, bodies equal to
    what was sent and answered (protojson), status, timings, caller."""
    with Traced(testenv, "python", "--trace-level", "full") as t:
        c = t.client
        pods = Pods(c, direct_client, testenv, "trace-python")
        try:
            ver = c.rt("Version", v1.VersionRequest(version="0.1.0"))
            pod_id, cfg = pods.run_pod(labels={"app": "trace"})
            cid = pods.create_container(pod_id, "main", ["sleep", "30"], env={"GREETING": "hi"})
            st = c.rt("ContainerStatus", container_id=cid)
            ex = c.rt("ExecSync", container_id=cid, cmd=["sh", "-c", "echo out; exit 3"], timeout=10)
            lst = c.rt("ListContainers", filter=v1.ContainerFilter(pod_sandbox_id=pod_id))
            code, _ = rpc_error(c.rt, "ContainerStatus", container_id="nope-nope")
            assert code == grpc.StatusCode.NOT_FOUND
        finally:
            assert not pods.cleanup()
        recs = t.records(lambda r: r["kind"] == "call", 7)
        by = {}
        for r in tl.calls(recs):
            by.setdefault(r["method"], []).append(r)
        mine = [r for r in by["Version"] if r["request"]]   # not the readiness probe's
        check_common(mine[0], "Version")
        assert mine[0]["request"] == {"version": "0.1.0"}
        assert mine[0]["response"] == as_json(ver)
        assert mine[0]["pid"] == os.getpid()
        run = by["RunPodSandbox"][0]
        check_common(run, "RunPodSandbox")
        assert run["request"]["config"] == as_json(cfg)
        assert run["response"] == {"podSandboxId": pod_id}
        create = by["CreateContainer"][0]
        assert create["request"]["podSandboxId"] == pod_id
        envs = create["request"]["config"]["envs"]
        assert envs == [{"key": "GREETING", "value": base64.b64encode(b"hi").decode()}]
        assert create["response"] == {"containerId": cid}
        ok_status = [r for r in by["ContainerStatus"] if r["status"] == "OK"][0]
        assert ok_status["response"] == as_json(st)
        nf = [r for r in by["ContainerStatus"] if r["status"] != "OK"][0]
        check_common(nf, "ContainerStatus", "NOT_FOUND")
        assert nf["code"] == 5 and "nope-nope" in nf["message"] and "response" not in nf
        assert by["ExecSync"][0]["response"] == as_json(ex) and ex.exit_code == 3
        assert by["ListContainers"][0]["response"] == as_json(lst)
        assert by["ListContainers"][0]["msgs"] == 1 and by["ListContainers"][0]["resp_bytes"] > 5
        ids = [r["id"] for r in tl.calls(recs)]
        assert len(set(ids)) == len(ids), "call ids repeat"


@pytest.mark.skipif(built() is not None, reason=str(built()))
def test_trace_grpcgo_calls(testenv):
    """The kubelet's gRPC stack: its calls, their bodies and its pid."""
    with Traced(testenv, "grpcgo", "--trace-level", "full") as t:
        g = GoCRI("unix://" + t.crisp.sock, "trace-go")
        try:
            v = g.rt("Version", {"version": "0.1.0"})
            lst = g.rt("ListPodSandbox", {"filter": {"labelSelector": {"no-such": "pod"}}})
            r = g.call("PodSandboxStatus", {"podSandboxId": "does-not-exist"}, timeout=5)
            assert r.code == "NOT_FOUND"
            img = g.img("ImageStatus", {"image": {"image": testenv.BUSYBOX_IMAGE}})
            gpid = g.proc.pid
        finally:
            g.close()
        recs = [r for r in tl.calls(t.records(lambda r: r["kind"] == "call", 5))
                if r["request"] or r["method"] != "Version"]   # not the readiness probe's
        by = {r["method"]: r for r in recs}
        check_common(by["Version"], "Version")
        assert by["Version"]["pid"] == gpid and by["Version"]["response"] == v
        assert by["ListPodSandbox"]["request"] == norm(v1.ListPodSandboxRequest,
                                                       {"filter": {"labelSelector": {"no-such": "pod"}}})
        assert by["ListPodSandbox"]["response"] == lst
        assert by["PodSandboxStatus"]["status"] == "NOT_FOUND"
        assert by["ImageStatus"]["service"] == "ImageService"
        assert by["ImageStatus"]["response"] == img
        assert {r["conn"] for r in recs} == {by["Version"]["conn"]}, "one grpc-go connection"


def test_trace_summary_level(testenv):
    """summary: no bodies; sizes and timings still there."""
    with Traced(testenv, "summary") as t:
        t.client.rt("Version")
        t.client.img("ListImages")
        recs = tl.calls(t.records(n=3))
        for r in recs:
            assert "request" not in r and "response" not in r
            assert r["resp_bytes"] > 0 and r["latency_us"] > 0


def test_trace_method_filters(testenv):
    with Traced(testenv, "methods", "--trace-methods", "*Image*,Version",
                "--trace-methods", "!ImageFsInfo") as t:
        t.client.rt("Version")
        t.client.img("ImageFsInfo")
        t.client.img("ListImages")
        t.client.rt("ListPodSandbox")
        t.client.rt("Version")
        recs = tl.calls(t.records(n=4))
        time.sleep(0.3)
        # the readiness probe's Version first
        assert [r["method"] for r in tl.calls(tl.read_trace(t.path))] == ["Version", "Version",
                                                                         "ListImages", "Version"]


def test_trace_errors_and_mutating_only(testenv, direct_client):
    with Traced(testenv, "errors", "--trace-errors-only") as t:
        t.client.rt("Version")
        rpc_error(t.client.rt, "ContainerStatus", container_id="nope")
        rpc_error(t.client.rt, "StopContainer", container_id="nope")
        recs = tl.calls(t.records(n=2))
        time.sleep(0.3)
        assert sorted(r["method"] for r in tl.calls(tl.read_trace(t.path))) == ["ContainerStatus", "StopContainer"]
    with Traced(testenv, "mutating", "--trace-mutating-only") as t:
        t.client.rt("Version")
        t.client.rt("ListContainers")
        rpc_error(t.client.rt, "ContainerStatus", container_id="nope")
        rpc_error(t.client.rt, "StopContainer", container_id="nope")
        t.client.img("PullImage", image=v1.ImageSpec(image=testenv.BUSYBOX_IMAGE))
        recs = tl.calls(t.records(n=2))
        time.sleep(0.3)
        assert [r["method"] for r in tl.calls(tl.read_trace(t.path))] == ["StopContainer", "PullImage"]


def test_trace_sampling(testenv):
    """1 in 5 of the polling calls per method; failures always; others all."""
    with Traced(testenv, "sample", "--trace-sample", "5") as t:
        for _ in range(10):
            t.client.rt("Version")
            t.client.rt("ListPodSandbox")
        rpc_error(t.client.rt, "ContainerStatus", container_id="nope")
        rpc_error(t.client.rt, "StopContainer", container_id="nope")
        t.records(lambda r: r["method"] == "StopContainer")
        time.sleep(0.3)
        names = [r["method"] for r in tl.calls(tl.read_trace(t.path))]
        # 11 Version calls with the readiness probe's: the 1st, 6th and 11th
        assert names.count("Version") == 3 and names.count("ListPodSandbox") == 2, names
        assert names.count("ContainerStatus") == 1 and names.count("StopContainer") == 1


def test_trace_pod_filter(testenv, direct_client):
    """--trace-pod NS/NAME: the calls of that pod and its containers (IDs
    learned from the answers), none of another pod's or of lists."""
    with Traced(testenv, "pod", "--trace-pod", "crisp-test/traced-*", "--trace-level", "full") as t:
        pods = Pods(t.client, direct_client, testenv, "trace-pod")
        try:
            mine, _ = pods.run_pod(name="traced-web")
            other, _ = pods.run_pod(name="other-web")
            cid = pods.create_container(mine, "main", ["sleep", "30"])
            oid = pods.create_container(other, "main", ["sleep", "30"])
            for i in (mine, other):
                t.client.rt("PodSandboxStatus", pod_sandbox_id=i)
            for i in (cid, oid):
                t.client.rt("ContainerStatus", container_id=i)
            t.client.rt("ListPodSandbox")
            t.client.rt("StopContainer", container_id=cid, timeout=1)
        finally:
            assert not pods.cleanup()
        recs = tl.calls(t.records(lambda r: r["method"] == "StopContainer"))
        time.sleep(0.3)
        recs = tl.calls(tl.read_trace(t.path))
        names = [r["method"] for r in recs]
        assert names == ["RunPodSandbox", "CreateContainer", "StartContainer", "PodSandboxStatus",
                         "ContainerStatus", "StopContainer"], names
        text = open(t.path).read()
        assert other not in text and oid not in text


def test_trace_body_cut(testenv):
    """A body over --trace-max-body is cut, marked, and still valid JSON."""
    with Traced(testenv, "cut", "--trace-level", "full", "--trace-max-body", "300") as t:
        labels = {"k%03d" % i: "v" * 40 for i in range(50)}
        t.client.rt("ListPodSandbox", filter=v1.PodSandboxFilter(label_selector=labels))
        rec = tl.calls(t.records(lambda r: r["method"] == "ListPodSandbox"))[0]
        assert rec["cut"] is True
        assert rec["request"]["filter"]["labelSelector"]["@cut"] is True, rec
        assert 0 < len(rec["request"]["filter"]["labelSelector"]) < 10
        assert rec["response"] == {}


def test_trace_credentials_never_leak(testenv):
    """A pull with credentials: the password, auth and tokens appear in no
    trace record, log line or metric, whatever the level."""
    secret, token = "pw-Zq9xK2-secret", "tok-Zq9xK2-identity"
    auth = base64.b64encode(b"user:" + secret.encode()).decode()
    with Traced(testenv, "secrets", "--trace-level", "full", "--metrics-listen", "127.0.0.1:0",
                "--log-level", "debug") as t:
        url = tl.metrics_url(t.crisp)
        for creds in (v1.AuthConfig(username="user", password=secret),
                      v1.AuthConfig(auth=auth, identity_token=token, registry_token=token)):
            t.client.img("PullImage", image=v1.ImageSpec(image=testenv.BUSYBOX_IMAGE), auth=creds)
        rpc_error(t.client.img, "PullImage", image=v1.ImageSpec(image=testenv.REGISTRY + "/no/such:1"),
                  auth=v1.AuthConfig(username="user", password=secret))
        recs = tl.calls(t.records(n=3))
        metrics = tl.scrape(url)
        pulls = tl.calls(recs, "PullImage")
        assert pulls[0]["request"]["auth"] == {"username": "user", "password": "[redacted]"}
        assert pulls[1]["request"]["auth"] == {"auth": "[redacted]", "identityToken": "[redacted]",
                                               "registryToken": "[redacted]"}
    with open(t.crisp.log) as f:
        log = f.read()
    trace = open(t.path).read()
    for where, text in (("trace", trace), ("log", log), ("metrics", metrics)):
        for s in (secret, token, auth, base64.b64encode(secret.encode()).decode()):
            assert s not in text, "%s leaked into the %s" % (s, where)


def test_trace_redact_env(testenv, direct_client):
    with Traced(testenv, "env", "--trace-level", "full", "--trace-redact-env") as t:
        pods = Pods(t.client, direct_client, testenv, "trace-env")
        try:
            pod_id, _ = pods.run_pod()
            cid = pods.create_container(pod_id, "main", ["sleep", "30"], env={"API_KEY": "k3y-Zq9"})
            t.client.rt("ContainerStatus", container_id=cid, verbose=True)
        finally:
            assert not pods.cleanup()
        recs = tl.calls(t.records(lambda r: r["method"] == "ContainerStatus"))
        time.sleep(0.2)
        create = tl.calls(tl.read_trace(t.path), "CreateContainer")[0]
        assert create["request"]["config"]["envs"] == [{"key": "API_KEY", "value": "[redacted]"}]
        st = recs[0]["response"]
        assert all(v == "[redacted]" for v in st.get("info", {}).values())
    text = open(t.path).read()
    assert "k3y-Zq9" not in text and base64.b64encode(b"k3y-Zq9").decode() not in text


def test_trace_rotation(testenv):
    """--trace-max-size: whole records, at most --trace-max-files old files."""
    with Traced(testenv, "rotate", "--trace-level", "full", "--trace-max-size", "4K",
                "--trace-max-files", "2") as t:
        for _ in range(150):
            t.client.rt("Version")
        wait_for(lambda: os.path.exists(t.path + ".2") and os.path.exists(t.path), timeout=10,
                 what="two rotations")
        time.sleep(0.3)
        assert not os.path.exists(t.path + ".3")
        n = 0
        for p in (t.path, t.path + ".1", t.path + ".2"):
            assert os.path.getsize(p) <= 4096, p
            n += len(tl.read_trace(p))   # every line a whole record
        assert 10 < n <= 150


def test_trace_sighup_reopens_and_reloads(testenv, tmp_path):
    """logrotate's way: move the file, SIGHUP, the next records go to a new
    file; and the --trace-filter file is read again."""
    flt = tmp_path / "filter.json"
    flt.write_text('{"level": "summary", "methods": ["Version"]}')
    with Traced(testenv, "hup", "--trace-filter", str(flt)) as t:
        t.client.rt("Version")
        t.client.img("ListImages")
        t.records(n=2)
        time.sleep(0.2)
        os.rename(t.path, t.path + ".old")
        flt.write_text('{"level": "full", "methods": ["ListImages"]}')
        t.crisp.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        t.client.rt("Version")
        t.client.img("ListImages")
        new = tl.calls(t.records())
        old = tl.calls(tl.read_trace(t.path + ".old"))
        assert [r["method"] for r in old] == ["Version", "Version"] and "request" not in old[0]
        time.sleep(0.2)
        new = tl.calls(tl.read_trace(t.path))
        assert [r["method"] for r in new] == ["ListImages"] and new[0]["request"] == {}
        # a bad filter file keeps the running filter
        flt.write_text('{"level": "loud"}')
        mark = t.crisp.log_mark()
        t.crisp.proc.send_signal(signal.SIGHUP)
        t.crisp.wait_log(mark, r"trace_filter_reload_failed")
        t.client.img("ListImages")
        t.records(lambda r: r["method"] == "ListImages", 2)


def test_trace_slow_disk_never_blocks(testenv):
    """The trace is a FIFO nobody reads: calls go on at full speed, the
    records that do not fit the queue are dropped and counted, and the
    trace says so once it drains."""
    path = trace_path("fifo")
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)   # there, but not reading
    crisp = Crisp("trace-fifo", testenv.CONTAINERD_SOCK,
                  extra_args=["--trace", path, "--trace-level", "full", "--trace-queue", "64K",
                              "--metrics-listen", "127.0.0.1:0"])
    _crisp_instances.append(crisp)
    crisp.start()
    try:
        c = CRIClient("unix://" + crisp.sock, "fifo")
        url = tl.metrics_url(crisp)
        t0 = time.time()
        for _ in range(600):
            c.img("ListImages")
        took = time.time() - t0
        m = tl.parse_prom(tl.scrape(url))
        assert tl.value(m, "crisp_trace_dropped_total") > 0, m
        assert tl.value(m, "crisp_calls_total", method="ListImages", code="OK") == 600
        assert took < (120 if WRAPPED else 30), "calls slowed down: %.1fs" % took
        # drain: what was written, then a dropped record
        data = b""
        deadline = time.time() + 10
        while time.time() < deadline and b'"kind":"dropped"' not in data:
            try:
                chunk = os.read(reader, 1 << 16)
                data += chunk
            except BlockingIOError:
                c.img("ListImages")
                time.sleep(0.05)
        assert b'"kind":"dropped"' in data
        c.close()
    finally:
        # keep draining while crisp stops: its writer flushes what is queued
        stop = threading.Event()

        def drain():
            while not stop.is_set():
                try:
                    os.read(reader, 1 << 16)
                except BlockingIOError:
                    time.sleep(0.01)
        th = threading.Thread(target=drain)
        th.start()
        try:
            stop_and_check(crisp)
        finally:
            stop.set()
            th.join()
            os.close(reader)
            os.unlink(path)


def test_trace_options_checked(testenv):
    import subprocess
    from conftest import CRISP_BIN
    for args, want in ((["--trace-level", "full"], "need --trace"),
                       (["--trace", "/nonexistent/dir/t.jsonl"], "/nonexistent/dir"),
                       (["--trace", "-", "--trace-level", "loud"], "want off, summary or full"),
                       (["--trace", "-", "--trace-sample", "0"], "sample"),
                       (["--trace", "-", "--trace-max-size", "12"], "trace-max-size"),
                       (["--trace", "-", "--metrics-listen", "256.0.0.1:1"], "256.0.0.1")):
        r = subprocess.run([CRISP_BIN, "--listen", "unix:///tmp/crisp-never.sock",
                            "--backend", "cri:unix://" + testenv.CONTAINERD_SOCK] + args,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        assert r.returncode != 0 and want in r.stdout.decode(), (args, r.stdout.decode())


def test_trace_streamed_messages(tmp_path):
    """A streamed answer: one record per message (full: its body), then the
    call's own record with the count; a 64 KiB message over the body cap is
    cut and marked."""
    import fakecri
    from conftest import free_unix_path
    fake = fakecri.FakeCRI(free_unix_path("trace-fake.sock")).start()
    path = str(tmp_path / "stream.jsonl")
    crisp = Crisp("trace-stream", fake.sock, extra_args=["--trace", path, "--trace-level", "full"])
    _crisp_instances.append(crisp)
    crisp.start()
    try:
        c = CRIClient("unix://" + crisp.sock, "stream")
        evs = list(c.rt_stream("GetContainerEvents", deadline=20))
        imgs = list(c.img_stream("StreamImages", deadline=20))
        c.close()
        recs = tl.wait_records(path, lambda r: r["method"] == "StreamImages" and r["kind"] == "call")
        ev_msgs = [r for r in tl.read_trace(path) if r["kind"] == "msg" and r["method"] == "GetContainerEvents"]
        assert [r["n"] for r in ev_msgs] == list(range(1, len(evs) + 1)) and len(evs) == fakecri.EVENTS
        assert [r["response"] for r in ev_msgs] == [as_json(e) for e in evs]
        assert all(r["bytes"] > 0 and r["at_us"] >= 0 for r in ev_msgs)
        call = [r for r in tl.read_trace(path) if r["kind"] == "call" and r["method"] == "GetContainerEvents"][0]
        assert call["msgs"] == len(evs) and call["status"] == "OK" and "response" not in call
        img_msgs = [r for r in tl.read_trace(path) if r["kind"] == "msg" and r["method"] == "StreamImages"]
        assert len(img_msgs) == len(imgs) == 16
        assert all(r["cut"] is True and r["bytes"] > 60000 for r in img_msgs)
    finally:
        stop_and_check(crisp)
        fake.stop()


def test_trace_subcalls(testenv, tmp_path):
    """Behind --config, the router's own calls (a Status to every backend)
    are traced with --trace-subcalls only, naming their parent and backend."""
    import json
    import fakecri
    from conftest import free_unix_path
    fake = fakecri.FakeCRI(free_unix_path("trace-sub.sock")).start()
    cfg = tmp_path / "crisp.json"
    cfg.write_text(json.dumps({
        "backends": {"ctrd": {"kind": "cri", "endpoint": "unix://" + testenv.CONTAINERD_SOCK},
                     "fake": {"kind": "cri", "endpoint": "unix://" + fake.sock}},
        "handlers": {"": {"backend": "ctrd"}, "fake": {"backend": "fake"}}}))
    try:
        for sub in (False, True):
            path = str(tmp_path / ("sub-%d.jsonl" % sub))
            args = ["--trace", path] + (["--trace-subcalls"] if sub else [])
            crisp = Crisp("trace-sub", testenv.CONTAINERD_SOCK, extra_args=args)
            i = crisp.args.index("--backend")
            crisp.args[i:i + 2] = ["--config", str(cfg)]
            _crisp_instances.append(crisp)
            crisp.start()
            try:
                c = CRIClient("unix://" + crisp.sock, "sub")
                c.rt("Status")
                c.close()
                recs = tl.wait_records(path, lambda r: r["method"] == "Status" and "parent" not in r)
                time.sleep(0.3)
                recs = tl.calls(tl.read_trace(path))
                status = [r for r in recs if r["method"] == "Status" and "parent" not in r][0]
                subs = [r for r in recs if r.get("parent") == status["id"]]
                if not sub:
                    assert not [r for r in recs if "parent" in r]
                else:
                    assert {r["backend"] for r in subs} == {"cri:unix://" + testenv.CONTAINERD_SOCK,
                                                            "cri:unix://" + fake.sock}, recs
            finally:
                stop_and_check(crisp)
    finally:
        fake.stop()
