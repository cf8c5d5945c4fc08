"""A small Docker Engine API client (Docker and podman's compat API) over a
unix socket, for test setup and for assertions about engine-side state.

    e = Engine("docker", "/path/docker.sock")
    e.get("/containers/json", all=1)           # -> parsed JSON (raises EngineError on >= 400)
    e.post("/containers/create", body, name="x")
    e.request("GET", "/images/x/json")         # -> (status, parsed body or text)
    e.pull("localhost:5000/crisp-test/busybox:1", auth={"username": ..., "password": ...})

No third-party modules; /usr/bin/python3 or any python3 works.
"""
import base64
import http.client
import json
import socket
import time
import urllib.parse

API = "/v1.41"


class EngineError(Exception):
    def __init__(self, method, path, status, body):
        self.method, self.path, self.status, self.body = method, path, status, body
        msg = body.get("message") if isinstance(body, dict) else body
        super().__init__("%s %s -> %s: %s" % (method, path, status, msg))


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, sock_path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.sock_path = sock_path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.sock_path)
        self.sock = s


def _qs(params):
    params = {k: v for k, v in params.items() if v is not None}
    if not params:
        return ""
    out = {}
    for k, v in params.items():
        if isinstance(v, bool):
            v = "1" if v else "0"
        elif isinstance(v, (dict, list)):
            v = json.dumps(v)
        out[k] = v
    return "?" + urllib.parse.urlencode(out)


def registry_auth_header(username="", password="", serveraddress="", auth=None):
    """X-Registry-Auth: base64url(JSON AuthConfig)."""
    cfg = {}
    if username:
        cfg["username"] = username
    if password:
        cfg["password"] = password
    if auth:
        cfg["auth"] = auth
    if serveraddress:
        cfg["serveraddress"] = serveraddress
    return base64.urlsafe_b64encode(json.dumps(cfg).encode()).decode()


class Engine:
    """One engine (kind "docker" or "podman") behind a unix socket."""

    def __init__(self, kind, sock, timeout=60.0):
        self.kind = kind
        self.sock = sock
        self.timeout = timeout

    def __repr__(self):
        return "Engine(%s, %s)" % (self.kind, self.sock)

    # --- raw ---------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=None, raw=False, api=API, **params):
        conn = _UnixHTTPConnection(self.sock, timeout or self.timeout)
        try:
            hdrs = dict(headers or {})
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            conn.request(method, api + path + _qs(params), body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        if raw:
            return resp.status, payload
        text = payload.decode(errors="replace")
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            # streamed JSON (pull progress): one object per line
            try:
                parsed = [json.loads(l) for l in text.splitlines() if l.strip()]
            except ValueError:
                parsed = text
        return resp.status, parsed

    def _ok(self, method, path, body=None, headers=None, timeout=None, **params):
        status, parsed = self.request(method, path, body, headers, timeout, **params)
        if status >= 400:
            raise EngineError(method, path, status, parsed)
        return parsed

    def get(self, path, **params):
        return self._ok("GET", path, **params)

    def post(self, path, body=None, headers=None, timeout=None, **params):
        return self._ok("POST", path, body, headers, timeout, **params)

    def delete(self, path, **params):
        return self._ok("DELETE", path, **params)

    def ping(self, timeout=2.0):
        try:
            conn = _UnixHTTPConnection(self.sock, timeout)
            conn.request("GET", "/_ping")
            r = conn.getresponse()
            ok = r.status == 200 and r.read().strip() == b"OK"
            conn.close()
            return ok
        except OSError:
            return False

    # --- conveniences ----------------------------------------------------------
    def version(self):
        return self.get("/version")

    def info(self):
        return self.get("/info")

    def containers(self, all=True, labels=None):
        """List containers; labels: {"key": "value" or None}."""
        filters = None
        if labels:
            filters = {"label": [k if v is None else "%s=%s" % (k, v) for k, v in labels.items()]}
        return self.get("/containers/json", all=all, filters=filters)

    def inspect(self, cid):
        return self.get("/containers/%s/json" % cid)

    def try_inspect(self, cid):
        status, body = self.request("GET", "/containers/%s/json" % cid)
        if status == 404:
            return None
        if status >= 400:
            raise EngineError("GET", "/containers/%s/json" % cid, status, body)
        return body

    def runtime_of(self, cid):
        """The OCI runtime name a container runs with (podman's compat inspect
        says "oci" in HostConfig.Runtime; its libpod inspect has the name)."""
        if self.kind == "podman":
            status, body = self.request("GET", "/libpod/containers/%s/json" % cid, api="/v4.0.0")
            if status == 200:
                return body.get("OCIRuntime")
        return self.inspect(cid)["HostConfig"].get("Runtime")

    def remove(self, cid, force=True):
        status, body = self.request("DELETE", "/containers/%s" % cid, force=force, v=True)
        if status not in (200, 204, 404):
            raise EngineError("DELETE", "/containers/%s" % cid, status, body)

    def image(self, ref):
        status, body = self.request("GET", "/images/%s/json" % ref)
        return body if status == 200 else None

    def pull(self, ref, auth=None, timeout=120):
        """Pull REF (name:tag); auth: dict for X-Registry-Auth. Raises on error,
        including errors reported inside the progress stream (Docker answers 200
        and puts {"error": ...} in the stream for some failures)."""
        name, _, tag = ref.rpartition(":")
        if "/" in tag or not name:
            name, tag = ref, "latest"
        headers = {}
        if auth is not None:
            headers["X-Registry-Auth"] = registry_auth_header(**auth)
        status, body = self.request("POST", "/images/create", headers=headers, timeout=timeout,
                                    fromImage=name, tag=tag)
        if status >= 400:
            raise EngineError("POST", "/images/create", status, body)
        for item in body if isinstance(body, list) else [body]:
            if isinstance(item, dict) and item.get("error"):
                raise EngineError("POST", "/images/create", status, item)
        return body

    def remove_image(self, ref, force=False):
        status, body = self.request("DELETE", "/images/%s" % ref, force=force)
        if status not in (200, 404):
            raise EngineError("DELETE", "/images/%s" % ref, status, body)
        return status

    def create(self, body, name=None):
        return self.post("/containers/create", body, name=name)["Id"]

    def start(self, cid):
        status, body = self.request("POST", "/containers/%s/start" % cid)
        if status not in (204, 304):
            raise EngineError("POST", "/containers/%s/start" % cid, status, body)

    def stop(self, cid, t=0):
        status, body = self.request("POST", "/containers/%s/stop" % cid, t=t, timeout=t + 30)
        if status not in (204, 304, 404):
            raise EngineError("POST", "/containers/%s/stop" % cid, status, body)

    def wait_state(self, cid, pred, timeout=15.0, what="state"):
        deadline = time.time() + timeout
        while True:
            st = self.inspect(cid)["State"]
            if pred(st):
                return st
            if time.time() > deadline:
                raise AssertionError("%s: container %s not in %s after %.0fs: %s"
                                     % (self.kind, cid[:12], what, timeout, st))
            time.sleep(0.1)

    def exec_run(self, cid, cmd, timeout=30):
        """Run cmd in the container; returns (exit_code, combined output bytes)."""
        ex = self.post("/containers/%s/exec" % cid,
                       {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})["Id"]
        status, out = self.request("POST", "/exec/%s/start" % ex, {"Detach": False, "Tty": False},
                                   timeout=timeout, raw=True)
        if status >= 400:
            raise EngineError("POST", "/exec/%s/start" % ex, status, out)
        code = self.get("/exec/%s/json" % ex).get("ExitCode")
        return code, demux(out)


def demux(raw):
    """Docker's multiplexed stream (8-byte frame headers) -> concatenated bytes."""
    out = b""
    i = 0
    while i + 8 <= len(raw) and raw[i] in (0, 1, 2) and raw[i + 1:i + 4] == b"\0\0\0":
        n = int.from_bytes(raw[i + 4:i + 8], "big")
        out += raw[i + 8:i + 8 + n]
        i += 8 + n
    if i < len(raw):
        out += raw[i:]
    return out


# cri-dockerd's scheme (what crisp must write and read)
TYPE_LABEL = "io.kubernetes.docker.type"
SANDBOX_ID_LABEL = "io.kubernetes.sandbox.id"
LOGPATH_LABEL = "io.kubernetes.container.logpath"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
ANNOTATION_PREFIX = "annotation."


def sandbox_name(name, namespace, uid, attempt):
    return "k8s_POD_%s_%s_%s_%d" % (name, namespace, uid, attempt)


def container_name(cname, pod, namespace, uid, attempt):
    return "k8s_%s_%s_%s_%s_%d" % (cname, pod, namespace, uid, attempt)
