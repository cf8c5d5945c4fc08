"""A scripted fake CRI backend (grpcio server on a unix socket).

containerd 1.6 implements no server-streaming RPC, so crisp's streaming relay
is checked against this fake instead. Behaviour per method:

  Version                 -> runtime_name "fake-cri"
  GetContainerEvents      -> EVENTS events (container_id "c<i>", types cycling), then OK
  StreamContainers        -> 3 messages, then ABORTED "fake: mid-stream failure"
  StreamImages            -> 16 messages of ~64 KiB each (1 MiB in all), then OK
  StreamPodSandboxes      -> one message, a pause of SLOW_GAP s, one more message, then OK
  StreamContainerStats    -> a message every 50 ms until the client goes away
                             (records the cancellation in .cancelled)
  ContainerStatus         -> NOT_FOUND with a non-ASCII, percent-laden message
  anything else           -> UNIMPLEMENTED (grpcio's own answer)
"""
import os
import threading
import time
from concurrent import futures

import grpc

from crilib import v1

EVENTS = 100
SLOW_GAP = 1.0
ODD_MESSAGE = "fake: ünïcödé 100% not found\tcontainer \"x\" /runtime.v1 %41"


class FakeCRI:
    def __init__(self, sock, workers=16):
        self.sock = sock
        self.cancelled = threading.Event()
        self.calls = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        self.server.add_generic_rpc_handlers([_Handler(self)])
        if os.path.exists(sock):
            os.unlink(sock)
        self.server.add_insecure_port("unix:" + sock)

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop(0).wait(5)

    # --- unary
    def Version(self, req, ctx):
        return v1.VersionResponse(version="0.1.0", runtime_name="fake-cri",
                                  runtime_version="0.0.1", runtime_api_version="v1")

    def ContainerStatus(self, req, ctx):
        ctx.abort(grpc.StatusCode.NOT_FOUND, ODD_MESSAGE)

    # --- streaming
    def GetContainerEvents(self, req, ctx):
        for i in range(EVENTS):
            yield v1.ContainerEventResponse(container_id="c%d" % i, container_event_type=i % 4,
                                            created_at=1000 + i)

    def StreamContainers(self, req, ctx):
        for i in range(3):
            yield v1.StreamContainersResponse(containers=[v1.Container(id="sc%d" % i)])
        ctx.abort(grpc.StatusCode.ABORTED, "fake: mid-stream failure")

    def StreamImages(self, req, ctx):
        for i in range(16):
            yield v1.StreamImagesResponse(images=[v1.Image(id="img%d" % i, repo_tags=["t" * 65536])])

    def StreamPodSandboxes(self, req, ctx):
        yield v1.StreamPodSandboxesResponse(pod_sandboxes=[v1.PodSandbox(id="first")])
        time.sleep(SLOW_GAP)
        yield v1.StreamPodSandboxesResponse(pod_sandboxes=[v1.PodSandbox(id="second")])

    def StreamContainerStats(self, req, ctx):
        self.cancelled.clear()
        ctx.add_callback(self.cancelled.set)
        i = 0
        while ctx.is_active():
            yield v1.StreamContainerStatsResponse(
                container_stats=[v1.ContainerStats(attributes=v1.ContainerAttributes(id="s%d" % i))])
            i += 1
            time.sleep(0.05)


_STREAMING = {"GetContainerEvents", "StreamContainers", "StreamImages", "StreamPodSandboxes",
              "StreamContainerStats"}


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, fake):
        self.fake = fake

    def service(self, details):
        prefix = "/runtime.v1.RuntimeService/"
        prefix_img = "/runtime.v1.ImageService/"
        m = details.method
        self.fake.calls.append(m)
        for p, svc in ((prefix, "RuntimeService"), (prefix_img, "ImageService")):
            if m.startswith(p):
                name = m[len(p):]
                fn = getattr(self.fake, name, None)
                if fn is None:
                    return None
                mdesc = v1.DESCRIPTOR.services_by_name[svc].methods_by_name[name]
                req_cls = getattr(v1, mdesc.input_type.name)
                resp_cls = getattr(v1, mdesc.output_type.name)
                mk = grpc.unary_stream_rpc_method_handler if name in _STREAMING \
                    else grpc.unary_unary_rpc_method_handler
                return mk(fn, request_deserializer=req_cls.FromString,
                          response_serializer=resp_cls.SerializeToString)
        return None
