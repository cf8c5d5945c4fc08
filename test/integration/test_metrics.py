"""Metrics (--metrics-listen): the Prometheus text served over HTTP parses
(tracelib.parse_prom, strict) and counts what the test did: calls by method,
backend and status, latency histograms, calls in flight, the backend up or
down, client connections, trace records written and dropped."""
import os
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest

import fakecri
import tracelib as tl
from conftest import Crisp, _crisp_instances, free_unix_path, stop_and_check, wait_for
from crilib import CRIClient, rpc_error, v1

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grpcgo"))
from crigo import GoCRI, built  # noqa: E402


def started(name, backend_sock, *args):
    c = Crisp("metrics-" + name, backend_sock, extra_args=["--metrics-listen", "127.0.0.1:0"] + list(args))
    _crisp_instances.append(c)
    c.start()
    return c


def test_metrics_count_calls(testenv, tmp_path):
    trace = str(tmp_path / "t.jsonl")
    crisp = started("count", testenv.CONTAINERD_SOCK, "--trace", trace)
    try:
        url = tl.metrics_url(crisp)
        m0 = tl.parse_prom(tl.scrape(url))
        be = "cri:unix://" + testenv.CONTAINERD_SOCK
        assert tl.value(m0, "crisp_backend_up", backend=be) == 1
        assert tl.value(m0, "crisp_info") == 1
        c = CRIClient("unix://" + crisp.sock, "metrics")
        for _ in range(7):
            c.rt("Version")
        for _ in range(3):
            c.img("ListImages")
        for _ in range(2):
            rpc_error(c.rt, "ContainerStatus", container_id="nope")
        go = 0
        if built() is None:
            g = GoCRI("unix://" + crisp.sock, "metrics-go")
            g.rt("Version", {"version": "0.1.0"})
            g.rt("Version", {"version": "0.1.0"})
            g.close()
            go = 2
        wait_for(lambda: tl.value(tl.parse_prom(tl.scrape(url)), "crisp_trace_records_total") >=
                 7 + 3 + 2 + go + 1, what="the trace records")
        m = tl.parse_prom(tl.scrape(url))
        # the readiness probe's Version call came before m0
        v0 = tl.value(m0, "crisp_calls_total", method="Version", code="OK")
        assert tl.value(m, "crisp_calls_total", method="Version", code="OK", backend=be) - v0 == 7 + go
        assert tl.value(m, "crisp_calls_total", method="ListImages", code="OK") == 3
        assert tl.value(m, "crisp_calls_total", method="ContainerStatus", code="NOT_FOUND") == 2
        n = tl.value(m, "crisp_call_duration_seconds_count", method="Version")
        assert n == v0 + 7 + go
        assert tl.value(m, "crisp_call_duration_seconds_bucket", method="Version", le="+Inf") == n
        buckets = sorted((float(dict(ls)["le"]), v) for (name, ls), v in m.items()
                         if name == "crisp_call_duration_seconds_bucket" and dict(ls)["method"] == "Version")
        assert [v for _, v in buckets] == sorted(v for _, v in buckets), "buckets are cumulative"
        assert 0 < tl.value(m, "crisp_call_duration_seconds_sum", method="Version") < n * 10
        assert tl.value(m, "crisp_calls_in_flight") == 0
        assert tl.value(m, "crisp_connections") >= 1
        assert tl.value(m, "crisp_trace_dropped_total") == 0
        assert tl.value(m, "crisp_trace_records_total") == len(tl.calls(tl.read_trace(trace)))
        c.close()
    finally:
        stop_and_check(crisp)


def test_metrics_backend_down_and_in_flight(tmp_path):
    fake = fakecri.FakeCRI(free_unix_path("metrics-fake.sock")).start()
    crisp = started("fake", fake.sock)
    try:
        url = tl.metrics_url(crisp)
        be = "cri:unix://" + fake.sock
        c = CRIClient("unix://" + crisp.sock, "metrics")
        stream = c.rt_stream("StreamContainerStats", deadline=30)
        next(stream)                      # a call in flight: its stream is open
        m = tl.parse_prom(tl.scrape(url))
        assert tl.value(m, "crisp_calls_in_flight") == 1
        assert tl.value(m, "crisp_backend_calls_in_flight", backend=be) == 1
        assert tl.value(m, "crisp_backend_up", backend=be) == 1
        stream.cancel()
        wait_for(lambda: tl.value(tl.parse_prom(tl.scrape(url)), "crisp_calls_in_flight") == 0,
                 what="the cancelled call to end")
        m = tl.parse_prom(tl.scrape(url))
        assert tl.value(m, "crisp_calls_total", method="StreamContainerStats", code="CANCELLED") == 1
        fake.stop()
        code, _ = rpc_error(c.rt, "Version")
        assert code == grpc.StatusCode.UNAVAILABLE
        m = tl.parse_prom(tl.scrape(url))
        assert tl.value(m, "crisp_backend_up", backend=be) == 0
        assert tl.value(m, "crisp_calls_total", method="Version", code="UNAVAILABLE", backend=be) == 1
        c.close()
    finally:
        fake.stop()
        stop_and_check(crisp)


def test_metrics_http(testenv):
    crisp = started("http", testenv.CONTAINERD_SOCK)
    try:
        url = tl.metrics_url(crisp)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url.replace("/metrics", "/nope"), timeout=5)
        assert e.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"), timeout=5)
        assert e.value.code in (405, 501)   # evhttp: 501 for a method it does not allow
        # without --trace there are no trace metrics
        assert "crisp_trace_" not in tl.scrape(url)
        crisp.check_serving()
    finally:
        stop_and_check(crisp)
