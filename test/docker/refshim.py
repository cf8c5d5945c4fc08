#!/usr/bin/python3
"""refshim: a slow, minimal *Python reference* of crisp's docker backend, used
only to check the test/docker suite itself (the suite must pass against a
straightforward translation of CRI to the Engine API, on both engines). It is
not part of crisp. Same command line as crisp for this backend:

    CRISP_BIN=test/docker/refshim.py /usr/bin/python3 -m pytest test/docker

    refshim.py --listen unix:///x.sock --backend docker:unix:///docker.sock
               --pod-infra-image IMAGE [--runtime-handler NAME=RUNTIME]... [--log-level L]

It is also a compact, executable record of the engine differences listed in
README.md (podman's states, logs, update endpoint, events, pull errors...).
"""
import argparse
import base64
import calendar
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import grpc  # noqa: E402

from crilib import v1  # noqa: E402
from enginelib import (ANNOTATION_PREFIX, CONTAINER_NAME_LABEL, LOGPATH_LABEL, SANDBOX_ID_LABEL,  # noqa: E402
                       TYPE_LABEL, Engine, EngineError)

HANDLER_LABEL = "io.crisp.runtime-handler"
# podman's inspect says IpcMode "shareable" for a host-IPC container: keep the mode in a label
IPC_LABEL = "io.crisp.refshim.ipc"
INTERNAL = {TYPE_LABEL, SANDBOX_ID_LABEL, LOGPATH_LABEL, HANDLER_LABEL, IPC_LABEL}


class Fail(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code, self.msg = code, msg


def ts(s):
    """RFC3339(Nano) -> ns since the epoch (0 for Docker's zero time)."""
    if not s or s.startswith("0001-"):
        return 0
    date, _, rest = s.partition("T")
    tz = 0
    if rest.endswith("Z"):
        rest = rest[:-1]
    else:
        for sep in ("+", "-"):
            if sep in rest:
                rest, _, off = rest.rpartition(sep)
                h, m = off.split(":")
                tz = (int(h) * 3600 + int(m) * 60) * (1 if sep == "+" else -1)
                break
    hms, _, frac = rest.partition(".")
    y, mo, d = (int(x) for x in date.split("-"))
    hh, mm, ss = (int(x) for x in hms.split(":"))
    secs = calendar.timegm((y, mo, d, hh, mm, ss, 0, 0, 0)) - tz
    return secs * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def split_labels(labels, sandbox):
    lab, ann = {}, {}
    for k, v in (labels or {}).items():
        if k in INTERNAL or (sandbox and k == CONTAINER_NAME_LABEL):
            continue
        if k.startswith(ANNOTATION_PREFIX):
            ann[k[len(ANNOTATION_PREFIX):]] = v
        else:
            lab[k] = v
    return lab, ann


def parse_name(name, sandbox):
    parts = name.lstrip("/").split("_")
    if len(parts) not in (6, 7) or parts[0] != "k8s":
        return None
    try:
        attempt = int(parts[5])
    except ValueError:
        return None
    if sandbox:
        return v1.PodSandboxMetadata(name=parts[2], namespace=parts[3], uid=parts[4], attempt=attempt)
    return v1.ContainerMetadata(name=parts[1], attempt=attempt)


def ctr_state(status):
    return {"created": v1.CONTAINER_CREATED, "configured": v1.CONTAINER_CREATED,
            "running": v1.CONTAINER_RUNNING, "paused": v1.CONTAINER_RUNNING, "restarting": v1.CONTAINER_RUNNING,
            "exited": v1.CONTAINER_EXITED, "stopped": v1.CONTAINER_EXITED, "dead": v1.CONTAINER_EXITED,
            }.get(status, v1.CONTAINER_UNKNOWN)


def ns_mode(mode, own):
    if mode == "host":
        return v1.NODE
    return own


class Shim:
    def __init__(self, engine_sock, infra, handlers):
        self.e = Engine("engine", engine_sock)
        self.url = "unix://" + engine_sock
        self.infra = infra
        self.handlers = handlers
        self.kind = None

    # --- engine access ------------------------------------------------------
    def engine_kind(self):
        if self.kind is None:
            v = self.call(self.e.version)
            self.kind = "podman" if any("Podman" in c.get("Name", "") for c in v.get("Components", [])) else "docker"
            self.e.kind = self.kind
        return self.kind

    def call(self, fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except EngineError:
            raise
        except (OSError, http.client.HTTPException) as ex:
            raise Fail(grpc.StatusCode.UNAVAILABLE, "docker engine %s unavailable: %s" % (self.url, ex))

    def req(self, method, path, body=None, **kw):
        return self.call(self.e.request, method, path, body, **kw)

    def inspect(self, cid, typ):
        if not cid:
            raise Fail(grpc.StatusCode.NOT_FOUND, "empty id")
        st, body = self.req("GET", "/containers/%s/json" % cid)
        if st == 404:
            raise Fail(grpc.StatusCode.NOT_FOUND, "%s %s not found" % ("pod sandbox" if typ == "podsandbox"
                                                                         else "container", cid))
        if st >= 400:
            raise Fail(grpc.StatusCode.UNKNOWN, "inspect %s: %s" % (cid, body))
        if (body["Config"].get("Labels") or {}).get(TYPE_LABEL) != typ:
            raise Fail(grpc.StatusCode.NOT_FOUND, "%s is not a %s" % (cid, typ))
        return body

    def list(self, typ, labels=None):
        flt = {"label": ["%s=%s" % (TYPE_LABEL, typ)] + ["%s=%s" % kv for kv in (labels or {}).items()]}
        st, body = self.req("GET", "/containers/json", all=True, filters=flt)
        if st >= 400:
            raise Fail(grpc.StatusCode.UNKNOWN, "list: %s" % body)
        return body

    def fail_http(self, st, body, what):
        msg = body.get("message") if isinstance(body, dict) else str(body)
        code = {404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.FAILED_PRECONDITION,
                400: grpc.StatusCode.INVALID_ARGUMENT}.get(st, grpc.StatusCode.UNKNOWN)
        raise Fail(code, "%s: %s" % (what, msg))

    # --- runtime ------------------------------------------------------------
    def Version(self, r, ctx):
        v = self.call(self.e.version)
        return v1.VersionResponse(version="0.1.0", runtime_name="docker", runtime_version=v["Version"],
                                  runtime_api_version="v1")

    def Status(self, r, ctx):
        ok = self.e.ping()
        conds = [v1.RuntimeCondition(type="RuntimeReady", status=ok),
                 v1.RuntimeCondition(type="NetworkReady", status=ok)]
        hs = [v1.RuntimeHandler(name="")] + [v1.RuntimeHandler(name=n) for n in self.handlers]
        return v1.StatusResponse(status=v1.RuntimeStatus(conditions=conds), runtime_handlers=hs)

    def RuntimeConfig(self, r, ctx):
        d = self.call(self.e.info).get("CgroupDriver")
        return v1.RuntimeConfigResponse(linux=v1.LinuxRuntimeConfiguration(
            cgroup_driver=v1.SYSTEMD if d == "systemd" else v1.CGROUPFS))

    def UpdateRuntimeConfig(self, r, ctx):
        return v1.UpdateRuntimeConfigResponse()

    # --- sandboxes ------------------------------------------------------------
    def RunPodSandbox(self, r, ctx):
        c = r.config
        h = r.runtime_handler
        if h and h not in self.handlers:
            raise Fail(grpc.StatusCode.INVALID_ARGUMENT, "unknown runtime handler %r" % h)
        if h and self.handlers[h] and self.engine_kind() == "podman":
            raise Fail(grpc.StatusCode.FAILED_PRECONDITION, "runtime handler %r: podman's compat API ignores "
                       "the runtime choice" % h)
        if self.call(self.e.image, self.infra) is None:
            self.pull(self.infra, None)
        md = c.metadata
        labels = dict(c.labels)
        labels.update({ANNOTATION_PREFIX + k: v for k, v in c.annotations.items()})
        labels[TYPE_LABEL] = "podsandbox"
        labels[CONTAINER_NAME_LABEL] = "POD"
        if h:
            labels[HANDLER_LABEL] = h
        nso = c.linux.security_context.namespace_options
        hc = {"IpcMode": "host" if nso.ipc == v1.NODE else "shareable", "OomScoreAdj": -998, "CpuShares": 2}
        labels[IPC_LABEL] = hc["IpcMode"]
        if nso.network == v1.NODE:
            hc["NetworkMode"] = "host"
            hc["UTSMode"] = "host"
        if nso.pid == v1.NODE:
            hc["PidMode"] = "host"
        if c.dns_config.servers:
            hc["Dns"] = list(c.dns_config.servers)
        if c.dns_config.searches:
            hc["DnsSearch"] = list(c.dns_config.searches)
        if c.dns_config.options:
            hc["DnsOptions"] = list(c.dns_config.options)
        if c.linux.cgroup_parent:
            hc["CgroupParent"] = c.linux.cgroup_parent
        if c.linux.sysctls:
            hc["Sysctls"] = dict(c.linux.sysctls)
        if h:
            hc["Runtime"] = self.handlers[h]
        exposed, binds = {}, {}
        for pm in c.port_mappings:
            proto = {v1.TCP: "tcp", v1.UDP: "udp", v1.SCTP: "sctp"}[pm.protocol]
            key = "%d/%s" % (pm.container_port, proto)
            exposed[key] = {}
            if pm.host_port:
                binds.setdefault(key, []).append({"HostIp": pm.host_ip, "HostPort": str(pm.host_port)})
        hc["PortBindings"] = binds
        body = {"Image": self.infra, "Labels": labels, "ExposedPorts": exposed, "HostConfig": hc}
        if nso.network != v1.NODE:
            body["Hostname"] = c.hostname
        name = "k8s_POD_%s_%s_%s_%d" % (md.name, md.namespace, md.uid, md.attempt)
        st, resp = self.req("POST", "/containers/create", body, name=name)
        if st >= 300:
            self.fail_http(st, resp, "creating the sandbox")
        sid = resp["Id"]
        st, resp = self.req("POST", "/containers/%s/start" % sid)
        if st >= 300:
            self.req("DELETE", "/containers/%s" % sid, force=True)
            self.fail_http(st, resp, "starting the sandbox")
        return v1.RunPodSandboxResponse(pod_sandbox_id=sid)

    def pod_containers(self, sid):
        return self.list("container", {SANDBOX_ID_LABEL: sid})

    def StopPodSandbox(self, r, ctx):
        sb = self.inspect(r.pod_sandbox_id, "podsandbox")
        for c in self.pod_containers(sb["Id"]):
            if c["State"] == "running":
                self.req("POST", "/containers/%s/stop" % c["Id"], t=10, timeout=60)
        if sb["State"]["Running"]:
            self.req("POST", "/containers/%s/stop" % sb["Id"], t=10, timeout=60)
        return v1.StopPodSandboxResponse()

    def RemovePodSandbox(self, r, ctx):
        try:
            sb = self.inspect(r.pod_sandbox_id, "podsandbox")
        except Fail as f:
            if f.code == grpc.StatusCode.NOT_FOUND:
                return v1.RemovePodSandboxResponse()
            raise
        for c in self.pod_containers(sb["Id"]):
            self.remove_container(c["Id"], (c.get("Labels") or {}).get(LOGPATH_LABEL))
        st, body = self.req("DELETE", "/containers/%s" % sb["Id"], force=True, v=True)
        if st >= 300 and st != 404:
            self.fail_http(st, body, "removing the sandbox")
        return v1.RemovePodSandboxResponse()

    def sandbox_status(self, sb):
        labels = sb["Config"].get("Labels") or {}
        lab, ann = split_labels(labels, True)
        hc = sb["HostConfig"]
        ip = ""
        if hc.get("NetworkMode") != "host":
            ns = sb.get("NetworkSettings") or {}
            ip = ns.get("IPAddress") or ""
            if not ip:
                for n in (ns.get("Networks") or {}).values():
                    if n.get("IPAddress"):
                        ip = n["IPAddress"]
                        break
        pid = v1.NODE if hc.get("PidMode") == "host" else v1.CONTAINER
        opts = v1.NamespaceOption(network=ns_mode(hc.get("NetworkMode"), v1.POD), pid=pid,
                                  ipc=ns_mode(labels.get(IPC_LABEL, hc.get("IpcMode")), v1.POD))
        return v1.PodSandboxStatus(
            id=sb["Id"], metadata=parse_name(sb["Name"], True),
            state=v1.SANDBOX_READY if sb["State"]["Running"] else v1.SANDBOX_NOTREADY,
            created_at=ts(sb["Created"]), network=v1.PodSandboxNetworkStatus(ip=ip),
            linux=v1.LinuxPodSandboxStatus(namespaces=v1.Namespace(options=opts)),
            labels=lab, annotations=ann, runtime_handler=labels.get(HANDLER_LABEL, ""))

    def PodSandboxStatus(self, r, ctx):
        sb = self.inspect(r.pod_sandbox_id, "podsandbox")
        info = {"info": json.dumps(sb)} if r.verbose else {}
        return v1.PodSandboxStatusResponse(status=self.sandbox_status(sb), info=info)

    def list_sandboxes(self, f):
        out = []
        for c in self.list("podsandbox", dict(f.label_selector)):
            if f.id and not c["Id"].startswith(f.id):
                continue
            md = parse_name(c["Names"][0], True)
            if md is None:
                continue
            state = v1.SANDBOX_READY if c["State"] == "running" else v1.SANDBOX_NOTREADY
            if f.HasField("state") and f.state.state != state:
                continue
            lab, ann = split_labels(c.get("Labels"), True)
            out.append(v1.PodSandbox(id=c["Id"], metadata=md, state=state, created_at=self.created_ns(c),
                                     labels=lab, annotations=ann,
                                     runtime_handler=(c.get("Labels") or {}).get(HANDLER_LABEL, "")))
        return out

    def created_ns(self, listed):
        # the list gives seconds only; the kubelet wants the same value as the status
        return ts(self.call(self.e.inspect, listed["Id"])["Created"])

    def ListPodSandbox(self, r, ctx):
        return v1.ListPodSandboxResponse(items=self.list_sandboxes(r.filter))

    def StreamPodSandboxes(self, r, ctx):
        yield v1.StreamPodSandboxesResponse(pod_sandboxes=self.list_sandboxes(r.filter))

    # --- containers -------------------------------------------------------------
    def CreateContainer(self, r, ctx):
        sb = self.inspect(r.pod_sandbox_id, "podsandbox")
        c, sc = r.config, r.sandbox_config
        sid = sb["Id"]
        labels = dict(c.labels)
        labels.update({ANNOTATION_PREFIX + k: v for k, v in c.annotations.items()})
        logpath = os.path.join(sc.log_directory, c.log_path) if c.log_path else ""
        labels.update({TYPE_LABEL: "container", SANDBOX_ID_LABEL: sid, LOGPATH_LABEL: logpath})
        shc = sb["HostConfig"]
        handler = (sb["Config"].get("Labels") or {}).get(HANDLER_LABEL, "")
        hc = {"Binds": ["%s:%s%s" % (m.host_path, m.container_path, ":ro" if m.readonly else "") for m in c.mounts],
              "RestartPolicy": {"Name": "no"}}
        if shc.get("NetworkMode") == "host":
            hc["NetworkMode"] = "host"
            hc["UTSMode"] = "host"
        else:
            hc["NetworkMode"] = "container:" + sid
            hc["UTSMode"] = "container:" + sid
        sipc = (sb["Config"].get("Labels") or {}).get(IPC_LABEL, shc.get("IpcMode"))
        hc["IpcMode"] = "host" if sipc == "host" else "container:" + sid
        nso = sc.linux.security_context.namespace_options
        if nso.pid == v1.NODE:
            hc["PidMode"] = "host"
        elif nso.pid == v1.POD:
            hc["PidMode"] = "container:" + sid
        if shc.get("CgroupParent"):
            hc["CgroupParent"] = shc["CgroupParent"]
        if handler:
            hc["Runtime"] = self.handlers[handler]
        res = c.linux.resources
        for k, f in (("CpuShares", "cpu_shares"), ("CpuPeriod", "cpu_period"), ("CpuQuota", "cpu_quota"),
                     ("Memory", "memory_limit_in_bytes"), ("MemorySwap", "memory_swap_limit_in_bytes"),
                     ("OomScoreAdj", "oom_score_adj")):
            if getattr(res, f):
                hc[k] = getattr(res, f)
        if self.engine_kind() == "podman" and logpath:
            hc["LogConfig"] = {"Type": "k8s-file", "Config": {"path": logpath}}
        body = {"Image": c.image.image, "Entrypoint": list(c.command) or None, "Cmd": list(c.args) or None,
                "Env": ["%s=%s" % (e.key, e.value.decode() if isinstance(e.value, bytes) else e.value)
                        for e in c.envs],
                "WorkingDir": c.working_dir, "Labels": labels, "Tty": c.tty, "OpenStdin": c.stdin,
                "StdinOnce": c.stdin_once, "HostConfig": hc}
        md, pmd = c.metadata, sc.metadata
        name = "k8s_%s_%s_%s_%s_%d" % (md.name, pmd.name, pmd.namespace, pmd.uid, md.attempt)
        st, resp = self.req("POST", "/containers/create", body, name=name)
        if st >= 300:
            self.fail_http(st, resp, "creating container %s (image %s)" % (md.name, c.image.image))
        return v1.CreateContainerResponse(container_id=resp["Id"])

    def StartContainer(self, r, ctx):
        c = self.inspect(r.container_id, "container")
        st, body = self.req("POST", "/containers/%s/start" % c["Id"])
        if st >= 300 and st != 304:
            self.fail_http(st, body, "starting container")
        logpath = (c["Config"].get("Labels") or {}).get(LOGPATH_LABEL)
        if self.engine_kind() == "docker" and logpath:
            c = self.call(self.e.inspect, c["Id"])  # Docker fills LogPath at start, not at create
        if self.engine_kind() == "docker" and logpath and c.get("LogPath"):
            if os.path.lexists(logpath):
                os.unlink(logpath)
            os.symlink(c["LogPath"], logpath)
        return v1.StartContainerResponse()

    def StopContainer(self, r, ctx):
        c = self.inspect(r.container_id, "container")
        if c["State"]["Running"]:
            st, body = self.req("POST", "/containers/%s/stop" % c["Id"], t=r.timeout, timeout=r.timeout + 60)
            if st >= 300 and st not in (304, 404):
                self.fail_http(st, body, "stopping container")
        return v1.StopContainerResponse()

    def remove_container(self, cid, logpath):
        st, body = self.req("DELETE", "/containers/%s" % cid, force=True, v=True)
        if st >= 300 and st != 404:
            self.fail_http(st, body, "removing container")
        if self.engine_kind() == "docker" and logpath and os.path.islink(logpath):
            os.unlink(logpath)

    def RemoveContainer(self, r, ctx):
        try:
            c = self.inspect(r.container_id, "container")
        except Fail as f:
            if f.code == grpc.StatusCode.NOT_FOUND:
                return v1.RemoveContainerResponse()
            raise
        self.remove_container(c["Id"], (c["Config"].get("Labels") or {}).get(LOGPATH_LABEL))
        return v1.RemoveContainerResponse()

    def container_status(self, c):
        labels = c["Config"].get("Labels") or {}
        lab, ann = split_labels(labels, False)
        s = c["State"]
        state = ctr_state(s["Status"])
        reason = ""
        if state == v1.CONTAINER_EXITED:
            reason = "OOMKilled" if s.get("OOMKilled") else ("Completed" if s["ExitCode"] == 0 else "Error")
        mounts = [v1.Mount(container_path=m["Destination"], host_path=m.get("Source", ""), readonly=not m.get("RW", True))
                  for m in c.get("Mounts") or []]
        started = ts(s.get("StartedAt")) if state != v1.CONTAINER_CREATED else 0
        finished = ts(s.get("FinishedAt")) if state == v1.CONTAINER_EXITED else 0
        if finished and finished < started:
            finished = started
        return v1.ContainerStatus(
            id=c["Id"], metadata=parse_name(c["Name"], False), state=state, created_at=ts(c["Created"]),
            started_at=started, finished_at=finished, exit_code=s["ExitCode"] if state == v1.CONTAINER_EXITED else 0,
            image=v1.ImageSpec(image=c["Config"]["Image"]), image_ref=c["Image"], image_id=c["Image"],
            reason=reason, labels=lab, annotations=ann, mounts=mounts, log_path=labels.get(LOGPATH_LABEL, ""))

    def ContainerStatus(self, r, ctx):
        c = self.inspect(r.container_id, "container")
        return v1.ContainerStatusResponse(status=self.container_status(c),
                                          info={"info": json.dumps(c)} if r.verbose else {})

    def list_containers(self, f):
        out = []
        lbl = dict(f.label_selector)
        if f.pod_sandbox_id:
            lbl[SANDBOX_ID_LABEL] = f.pod_sandbox_id
        for c in self.list("container", lbl):
            if f.id and not c["Id"].startswith(f.id):
                continue
            state = ctr_state(c["State"])
            if f.HasField("state") and f.state.state != state:
                continue
            md = parse_name(c["Names"][0], False)
            if md is None:
                continue
            lab, ann = split_labels(c.get("Labels"), False)
            out.append(v1.Container(id=c["Id"], pod_sandbox_id=(c.get("Labels") or {}).get(SANDBOX_ID_LABEL, ""),
                                    metadata=md, image=v1.ImageSpec(image=c["Image"]), image_ref=c["ImageID"],
                                    image_id=c["ImageID"], state=state, created_at=self.created_ns(c),
                                    labels=lab, annotations=ann))
        return out

    def ListContainers(self, r, ctx):
        return v1.ListContainersResponse(containers=self.list_containers(r.filter))

    def StreamContainers(self, r, ctx):
        yield v1.StreamContainersResponse(containers=self.list_containers(r.filter))

    def UpdateContainerResources(self, r, ctx):
        c = self.inspect(r.container_id, "container")
        res = r.linux
        if self.engine_kind() == "podman":
            body = {"cpu": {}, "memory": {}}
            for k, f in (("shares", "cpu_shares"), ("period", "cpu_period"), ("quota", "cpu_quota")):
                if getattr(res, f):
                    body["cpu"][k] = getattr(res, f)
            for k, f in (("limit", "memory_limit_in_bytes"), ("swap", "memory_swap_limit_in_bytes")):
                if getattr(res, f):
                    body["memory"][k] = getattr(res, f)
            st, resp = self.req("POST", "/libpod/containers/%s/update" % c["Id"], body, api="/v4.0.0")
        else:
            body = {}
            for k, f in (("CpuShares", "cpu_shares"), ("CpuPeriod", "cpu_period"), ("CpuQuota", "cpu_quota"),
                         ("Memory", "memory_limit_in_bytes"), ("MemorySwap", "memory_swap_limit_in_bytes")):
                if getattr(res, f):
                    body[k] = getattr(res, f)
            st, resp = self.req("POST", "/containers/%s/update" % c["Id"], body)
        if st >= 300:
            self.fail_http(st, resp, "updating resources")
        return v1.UpdateContainerResourcesResponse()

    def ReopenContainerLog(self, r, ctx):
        c = self.inspect(r.container_id, "container")
        if not c["State"]["Running"]:
            raise Fail(grpc.StatusCode.FAILED_PRECONDITION, "container is not running")
        return v1.ReopenContainerLogResponse()

    def ExecSync(self, r, ctx):
        c = self.inspect(r.container_id, "container")
        st, ex = self.req("POST", "/containers/%s/exec" % c["Id"],
                          {"Cmd": list(r.cmd), "AttachStdout": True, "AttachStderr": True})
        if st >= 300:
            self.fail_http(st, ex, "exec")
        try:
            st, raw = self.e.request("POST", "/exec/%s/start" % ex["Id"], {"Detach": False, "Tty": False},
                                     raw=True, timeout=r.timeout or None)
        except socket.timeout:
            raise Fail(grpc.StatusCode.DEADLINE_EXCEEDED, "ExecSync timeout %ds exceeded" % r.timeout)
        except (OSError, http.client.HTTPException) as e:
            raise Fail(grpc.StatusCode.UNAVAILABLE, "docker engine %s unavailable: %s" % (self.url, e))
        out, err = b"", b""
        i = 0
        while i + 8 <= len(raw):
            n = int.from_bytes(raw[i + 4:i + 8], "big")
            if raw[i] == 2:
                err += raw[i + 8:i + 8 + n]
            else:
                out += raw[i + 8:i + 8 + n]
            i += 8 + n
        code = self.call(self.e.get, "/exec/%s/json" % ex["Id"]).get("ExitCode") or 0
        return v1.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    # --- stats --------------------------------------------------------------------
    def raw_stats(self, cid):
        return self.call(self.e.get, "/containers/%s/stats" % cid, stream=False)

    def usage(self, s):
        now = time.time_ns()
        cpu = s["cpu_stats"]["cpu_usage"]["total_usage"]
        mem = s.get("memory_stats") or {}
        usage = mem.get("usage", 0)
        ws = usage - (mem.get("stats") or {}).get("total_inactive_file", 0)
        return (v1.CpuUsage(timestamp=now, usage_core_nano_seconds=v1.UInt64Value(value=cpu)),
                v1.MemoryUsage(timestamp=now, working_set_bytes=v1.UInt64Value(value=max(ws, 0)),
                               usage_bytes=v1.UInt64Value(value=usage)))

    def container_stats(self, c):
        lab, ann = split_labels(c["Config"].get("Labels"), False)
        cpu, mem = self.usage(self.raw_stats(c["Id"]))
        return v1.ContainerStats(attributes=v1.ContainerAttributes(
            id=c["Id"], metadata=parse_name(c["Name"], False), labels=lab, annotations=ann), cpu=cpu, memory=mem)

    def ContainerStats(self, r, ctx):
        return v1.ContainerStatsResponse(stats=self.container_stats(self.inspect(r.container_id, "container")))

    def list_container_stats(self, f):
        lbl = dict(f.label_selector)
        if f.pod_sandbox_id:
            lbl[SANDBOX_ID_LABEL] = f.pod_sandbox_id
        out = []
        for c in self.list("container", lbl):
            if f.id and not c["Id"].startswith(f.id):
                continue
            if c["State"] != "running":
                continue
            out.append(self.container_stats(self.call(self.e.inspect, c["Id"])))
        return out

    def ListContainerStats(self, r, ctx):
        return v1.ListContainerStatsResponse(stats=self.list_container_stats(r.filter))

    def StreamContainerStats(self, r, ctx):
        yield v1.StreamContainerStatsResponse(container_stats=self.list_container_stats(r.filter))

    def pod_stats(self, sb):
        lab, ann = split_labels(sb["Config"].get("Labels"), True)
        ctrs = [self.container_stats(self.call(self.e.inspect, c["Id"]))
                for c in self.pod_containers(sb["Id"]) if c["State"] == "running"]
        cpu, mem = self.usage(self.raw_stats(sb["Id"]))
        cpu.usage_core_nano_seconds.value += sum(c.cpu.usage_core_nano_seconds.value for c in ctrs)
        mem.working_set_bytes.value += sum(c.memory.working_set_bytes.value for c in ctrs)
        mem.usage_bytes.value += sum(c.memory.usage_bytes.value for c in ctrs)
        return v1.PodSandboxStats(attributes=v1.PodSandboxAttributes(
            id=sb["Id"], metadata=parse_name(sb["Name"], True), labels=lab, annotations=ann),
            linux=v1.LinuxPodSandboxStats(cpu=cpu, memory=mem, containers=ctrs))

    def PodSandboxStats(self, r, ctx):
        return v1.PodSandboxStatsResponse(stats=self.pod_stats(self.inspect(r.pod_sandbox_id, "podsandbox")))

    def list_pod_stats(self, f):
        out = []
        for c in self.list("podsandbox", dict(f.label_selector)):
            if f.id and not c["Id"].startswith(f.id):
                continue
            if c["State"] == "running":
                out.append(self.pod_stats(self.call(self.e.inspect, c["Id"])))
        return out

    def ListPodSandboxStats(self, r, ctx):
        return v1.ListPodSandboxStatsResponse(stats=self.list_pod_stats(r.filter))

    def StreamPodSandboxStats(self, r, ctx):
        yield v1.StreamPodSandboxStatsResponse(pod_sandbox_stats=self.list_pod_stats(r.filter))

    # --- events ------------------------------------------------------------------------
    def GetContainerEvents(self, r, ctx):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.e.sock)
        except OSError as ex:
            raise Fail(grpc.StatusCode.UNAVAILABLE, "docker engine %s unavailable: %s" % (self.url, ex))
        flt = json.dumps({"type": ["container"], "label": ["%s=container" % TYPE_LABEL]})
        s.sendall(("GET /v1.41/events?filters=%s HTTP/1.0\r\nHost: x\r\n\r\n"
                   % __import__("urllib.parse").parse.quote(flt)).encode())
        s.settimeout(0.5)
        buf = b""
        head = True
        types = {"create": v1.CONTAINER_CREATED_EVENT, "start": v1.CONTAINER_STARTED_EVENT,
                 "die": v1.CONTAINER_STOPPED_EVENT, "destroy": v1.CONTAINER_DELETED_EVENT,
                 "remove": v1.CONTAINER_DELETED_EVENT}
        try:
            while ctx.is_active():
                try:
                    b = s.recv(65536)
                except socket.timeout:
                    continue
                if not b:
                    raise Fail(grpc.StatusCode.UNAVAILABLE, "docker engine %s: event stream ended" % self.url)
                buf += b
                if head:
                    if b"\r\n\r\n" not in buf:
                        continue
                    buf = buf.split(b"\r\n\r\n", 1)[1]
                    head = False
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    t = types.get(ev.get("Action") or ev.get("status"))
                    if t is None:
                        continue
                    attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                    resp = v1.ContainerEventResponse(container_id=ev.get("id") or ev["Actor"]["ID"],
                                                     container_event_type=t,
                                                     created_at=int(ev.get("timeNano") or ev["time"] * 10 ** 9))
                    sid = attrs.get(SANDBOX_ID_LABEL)
                    if sid:
                        try:
                            resp.pod_sandbox_status.CopyFrom(self.sandbox_status(self.inspect(sid, "podsandbox")))
                            resp.containers_statuses.extend(
                                self.container_status(self.call(self.e.inspect, c["Id"]))
                                for c in self.pod_containers(sid))
                        except (Fail, EngineError):
                            pass
                    yield resp
        finally:
            s.close()

    # --- images ------------------------------------------------------------------------
    def image_msg(self, i):
        return v1.Image(id=i["Id"], repo_tags=i.get("RepoTags") or [], repo_digests=i.get("RepoDigests") or [],
                        size=i.get("Size") or 0)

    def list_images(self, f):
        params = {}
        if f.image.image:
            params["filters"] = {"reference": [f.image.image]}
        return [self.image_msg(i) for i in self.call(self.e.get, "/images/json", **params)]

    def ListImages(self, r, ctx):
        return v1.ListImagesResponse(images=self.list_images(r.filter))

    def StreamImages(self, r, ctx):
        yield v1.StreamImagesResponse(images=self.list_images(r.filter))

    def ImageStatus(self, r, ctx):
        i = self.call(self.e.image, r.image.image)
        if i is None:
            return v1.ImageStatusResponse()
        return v1.ImageStatusResponse(image=self.image_msg(i), info={"info": json.dumps(i)} if r.verbose else {})

    def pull(self, ref, auth):
        a = None
        if auth is not None and (auth.username or auth.auth):
            user, pw = auth.username, auth.password
            if auth.auth and not user:
                user, _, pw = base64.b64decode(auth.auth).decode().partition(":")
            a = {"username": user, "password": pw, "serveraddress": auth.server_address}
        try:
            self.call(self.e.pull, ref, auth=a)
        except EngineError as ex:
            msg = ex.body.get("error") or ex.body.get("message") if isinstance(ex.body, dict) else str(ex.body)
            low = (msg or "").lower()
            if "manifest unknown" in low or "not found" in low:
                raise Fail(grpc.StatusCode.NOT_FOUND, "pulling %s: %s" % (ref, msg))
            if "unauthorized" in low or "auth" in low:
                raise Fail(grpc.StatusCode.UNAUTHENTICATED, "pulling %s: %s" % (ref, msg))
            raise Fail(grpc.StatusCode.UNKNOWN, "pulling %s: %s" % (ref, msg))

    def PullImage(self, r, ctx):
        ref = r.image.image
        if ":" not in ref.rsplit("/", 1)[-1] and "@" not in ref:
            ref += ":latest"
        self.pull(ref, r.auth if r.HasField("auth") else None)
        i = self.call(self.e.image, ref)
        return v1.PullImageResponse(image_ref=i["Id"])

    def RemoveImage(self, r, ctx):
        st, body = self.req("DELETE", "/images/%s" % r.image.image)
        if st >= 300 and st != 404:
            self.fail_http(st, body, "removing image")
        return v1.RemoveImageResponse()

    def ImageFsInfo(self, r, ctx):
        info = self.call(self.e.info)
        root = info.get("DockerRootDir") or "/"
        st, df = self.req("GET", "/system/df")
        used = (df or {}).get("LayersSize") or sum(i.get("Size") or 0 for i in self.call(self.e.get, "/images/json"))
        now = time.time_ns()
        fs = v1.FilesystemUsage(timestamp=now, fs_id=v1.FilesystemIdentifier(mountpoint=root),
                                used_bytes=v1.UInt64Value(value=used), inodes_used=v1.UInt64Value(value=0))
        return v1.ImageFsInfoResponse(image_filesystems=[fs], container_filesystems=[fs])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--backend", required=True)
    ap.add_argument("--pod-infra-image", required=True)
    ap.add_argument("--runtime-handler", action="append", default=[])
    ap.add_argument("--log-level", default="info")
    a = ap.parse_args()
    assert a.backend.startswith("docker:unix://"), a.backend
    handlers = dict(h.split("=", 1) for h in a.runtime_handler)
    shim = Shim(a.backend[len("docker:unix://"):], a.pod_infra_image, handlers)
    sock = a.listen[len("unix://"):]

    services = {}
    for sname in ("RuntimeService", "ImageService"):
        for m in v1.DESCRIPTOR.services_by_name[sname].methods:
            services["/runtime.v1.%s/%s" % (sname, m.name)] = m

    class Handler(grpc.GenericRpcHandler):
        def service(self, details):
            m = services.get(details.method)
            if m is None:
                return None
            req_cls = getattr(v1, m.input_type.name)
            fn = getattr(shim, m.name, None)

            def unary(req, ctx):
                if fn is None:
                    ctx.abort(grpc.StatusCode.UNIMPLEMENTED, "%s is not implemented by refshim" % m.name)
                try:
                    return fn(req, ctx)
                except Fail as f:
                    ctx.abort(f.code, f.msg)
                except EngineError as e:
                    ctx.abort(grpc.StatusCode.UNKNOWN, str(e))

            def stream(req, ctx):
                if fn is None:
                    ctx.abort(grpc.StatusCode.UNIMPLEMENTED, "%s is not implemented by refshim" % m.name)
                try:
                    yield from fn(req, ctx)
                except Fail as f:
                    ctx.abort(f.code, f.msg)
                except EngineError as e:
                    ctx.abort(grpc.StatusCode.UNKNOWN, str(e))
            resp_ser = lambda msg: msg.SerializeToString()  # noqa: E731
            if m.server_streaming:
                return grpc.unary_stream_rpc_method_handler(stream, request_deserializer=req_cls.FromString,
                                                            response_serializer=resp_ser)
            return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=req_cls.FromString,
                                                       response_serializer=resp_ser)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64),
                         options=[("grpc.max_receive_message_length", 16 << 20),
                                  ("grpc.max_send_message_length", 16 << 20)])
    server.add_generic_rpc_handlers([Handler()])
    if os.path.exists(sock):
        os.unlink(sock)
    server.add_insecure_port("unix:" + sock)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop(2).wait()
    if os.path.exists(sock):
        os.unlink(sock)
    sys.exit(0)


if __name__ == "__main__":
    main()
