"""Tiny CRI client for the crisp integration tests.

The Python classes are generated at import time from the repo's proto/ with
Debian's protoc (3.21) into a private temp dir, so they always match the
schema crisp is built from. Use with /usr/bin/python3 (Debian's grpc/protobuf).

    from crilib import v1, v1alpha2, CRIClient
    c = CRIClient("unix:///path.sock", "direct")
    c.rt("Version", v1.VersionRequest())
    c.img("ListImages")
    for ev in c.rt_stream("GetContainerEvents", v1.GetEventsRequest(), deadline=10): ...
"""
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO_DIR = os.path.join(REPO, "proto")
DEFAULT_TIMEOUT = float(os.environ.get("CRISP_TEST_RPC_TIMEOUT", "30"))
MAX_MSG = 16 * 1024 * 1024


def _generate():
    out = tempfile.mkdtemp(prefix="crisp-test-pb-")
    protos = ["runtime_v1.proto", "runtime_v1alpha2.proto"]
    subprocess.run(["protoc", "--python_out=" + out, "-I", PROTO_DIR] + protos,
                   check=True, cwd=REPO)
    sys.path.insert(0, out)
    v1_ = importlib.import_module("runtime_v1_pb2")
    v1a2_ = importlib.import_module("runtime_v1alpha2_pb2")
    import atexit
    atexit.register(shutil.rmtree, out, True)
    return v1_, v1a2_


v1, v1alpha2 = _generate()


class CRIClient:
    """A CRI client on one unix socket, for one API version (v1 or v1alpha2)."""

    def __init__(self, target, name, pb=None, version="v1"):
        self.target = target
        self.name = name
        self.pb = pb or (v1 if version == "v1" else v1alpha2)
        self.version = version
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", MAX_MSG),
            ("grpc.max_send_message_length", MAX_MSG),
            # never reuse a subchannel across clients: each client is its own connection
            ("grpc.use_local_subchannel_pool", 1),
        ])
        self._stubs = {}

    def __repr__(self):
        return "CRIClient(%s, %s, %s)" % (self.name, self.target, self.version)

    def close(self):
        self.channel.close()

    def with_version(self, version):
        """Same socket, other API version (v1 or v1alpha2)."""
        return CRIClient(self.target, self.name, version=version)

    def _method(self, service, method):
        sdesc = self.pb.DESCRIPTOR.services_by_name[service]
        mdesc = sdesc.methods_by_name[method]
        req_cls = getattr(self.pb, mdesc.input_type.name)
        resp_cls = getattr(self.pb, mdesc.output_type.name)
        return mdesc, req_cls, resp_cls

    def path(self, service, method):
        return "/runtime.%s.%s/%s" % (self.version, service, method)

    def _stub(self, service, method, streaming):
        key = (service, method, streaming)
        if key not in self._stubs:
            _, req_cls, resp_cls = self._method(service, method)
            mk = self.channel.unary_stream if streaming else self.channel.unary_unary
            self._stubs[key] = (mk(self.path(service, method),
                                   request_serializer=req_cls.SerializeToString,
                                   response_deserializer=resp_cls.FromString), req_cls)
        return self._stubs[key]

    # `deadline` (seconds) is the gRPC deadline; every other keyword is a field
    # of the request message (so ExecSync's and StopContainer's own `timeout`
    # fields can be given as keywords).
    def call(self, service, method, req=None, deadline=None, metadata=None, **fields):
        stub, req_cls = self._stub(service, method, False)
        if req is None:
            req = req_cls(**fields)
        return stub(req, timeout=deadline or DEFAULT_TIMEOUT, metadata=metadata)

    def stream(self, service, method, req=None, deadline=None, metadata=None, **fields):
        """Returns the response iterator (a grpc.Call: .cancel(), .code() ...)."""
        stub, req_cls = self._stub(service, method, True)
        if req is None:
            req = req_cls(**fields)
        return stub(req, timeout=deadline or DEFAULT_TIMEOUT, metadata=metadata)

    def rt(self, method, req=None, **kw):
        return self.call("RuntimeService", method, req, **kw)

    def img(self, method, req=None, **kw):
        return self.call("ImageService", method, req, **kw)

    def rt_stream(self, method, req=None, **kw):
        return self.stream("RuntimeService", method, req, **kw)

    def img_stream(self, method, req=None, **kw):
        return self.stream("ImageService", method, req, **kw)

    def raw(self, path, payload=b"", deadline=None):
        """Raw bytes in, raw bytes out, on any path."""
        return self.channel.unary_unary(path)(payload, timeout=deadline or DEFAULT_TIMEOUT)


def rpc_error(fn, *a, **kw):
    """Call fn, expect a grpc.RpcError; return (code, details)."""
    try:
        fn(*a, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()
    raise AssertionError("expected an RPC error, the call succeeded")


VOLATILE = frozenset(["timestamp", "createdAt", "startedAt", "finishedAt", "usageBytes",
                      "inodesUsed", "workingSetBytes", "usageCoreNanoSeconds", "usageNanoCores",
                      "availableBytes", "rssBytes", "pageFaults", "majorPageFaults"])


def as_dict(msg, drop=VOLATILE):
    """Message -> plain dict (proto JSON names), without the volatile fields."""
    from google.protobuf.json_format import MessageToDict

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in drop}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip(MessageToDict(msg, preserving_proto_field_name=False))
