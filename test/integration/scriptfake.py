"""fakecri.FakeCRI plus the behaviours the resilience tests script.

Runs in the test process (to look at what it saw) or as its own process, so
a test can SIGKILL the backend under crisp and start it again on the same
socket path:  /usr/bin/python3 scriptfake.py /path/to/sock

On top of FakeCRI (Version, GetContainerEvents, StreamContainerStats, ...):

  Status          echo: answers info["md:<key>"] = each received metadata value
                  (binary ones hex-encoded) and info["time_remaining"]; sends
                  INIT_MD as initial metadata and TRAIL_MD as trailers
  ImageStatus     NOT_FOUND "fake: no such image" with ERR_TRAIL_MD as trailers
  ListPodSandbox  never answers: waits until the call is cancelled (or 120 s);
                  counts starts (.hang_started) and cancellations (.hang_cancelled)
  ListImages      one answer with a repo tag of `filter.image.image` bytes
                  (default BIG_ANSWER), for response caps and large answers
  StreamImages    `filter.image.image` = "N:SIZE" messages of SIZE bytes each
                  (default 16 x 64 KiB); .produced counts the ones handed to grpc
"""
import os
import signal
import sys
import threading
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecri  # noqa: E402
from crilib import v1  # noqa: E402

INIT_MD = (("x-backend-init", "init-value"), ("x-backend-init-bin", b"\x00\x01\xfe\xff"))
TRAIL_MD = (("x-backend-trail", "trail value; with=odd,chars"), ("x-backend-trail-bin", b"\xff\x00\x80"))
ERR_TRAIL_MD = (("x-backend-err", "why-not"), ("grpc-status-details-bin", b"\x08\x05\x12\x03why"))
BIG_ANSWER = 100 * 1024
HANG_LIMIT = 120.0


class ScriptedFake(fakecri.FakeCRI):
    def __init__(self, sock):
        super().__init__(sock, workers=96)
        self.lock = threading.Condition()
        self.hang_started = 0
        self.hang_cancelled = 0
        self.produced = 0
        self.seen = []   # (method, metadata dict, time_remaining, monotonic time)

    def _bump(self, attr):
        with self.lock:
            setattr(self, attr, getattr(self, attr) + 1)
            self.lock.notify_all()

    def wait_count(self, attr, n, timeout):
        end = time.time() + timeout
        with self.lock:
            while getattr(self, attr) < n:
                left = end - time.time()
                if left <= 0:
                    return False
                self.lock.wait(left)
        return True

    # --- unary
    def Status(self, req, ctx):
        md = list(ctx.invocation_metadata())
        rem = ctx.time_remaining()
        self.seen.append(("Status", md, rem, time.monotonic()))
        info = {}
        for k, v in md:
            val = v.hex() if isinstance(v, bytes) else v
            key = "md:" + k
            info[key] = info[key] + "," + val if key in info else val
        info["time_remaining"] = "none" if rem is None else "%.6f" % rem
        ctx.send_initial_metadata(INIT_MD)
        ctx.set_trailing_metadata(TRAIL_MD)
        return v1.StatusResponse(info=info)

    def ImageStatus(self, req, ctx):
        ctx.set_trailing_metadata(ERR_TRAIL_MD)
        ctx.abort(grpc.StatusCode.NOT_FOUND, "fake: no such image")

    def ListPodSandbox(self, req, ctx):
        gone = threading.Event()
        ctx.add_callback(gone.set)
        self.seen.append(("ListPodSandbox", list(ctx.invocation_metadata()), ctx.time_remaining(),
                          time.monotonic()))
        self._bump("hang_started")
        gone.wait(HANG_LIMIT)
        if not ctx.is_active():
            self._bump("hang_cancelled")
        return v1.ListPodSandboxResponse()

    def ListImages(self, req, ctx):
        spec = req.filter.image.image if req.HasField("filter") else ""
        size = int(spec) if spec else BIG_ANSWER
        return v1.ListImagesResponse(images=[v1.Image(id="big", repo_tags=["b" * size])])

    # --- streaming
    def StreamImages(self, req, ctx):
        spec = req.filter.image.image if req.HasField("filter") else ""
        n, size = (int(x) for x in spec.split(":")) if spec else (16, 65536)
        for i in range(n):
            if not ctx.is_active():
                return
            yield v1.StreamImagesResponse(images=[v1.Image(id="img%d" % i, repo_tags=["t" * size])])
            self._bump("produced")


def main():
    sock = sys.argv[1]
    fake = ScriptedFake(sock).start()
    print("scriptfake: serving on %s (pid %d)" % (sock, os.getpid()), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    fake.stop()


if __name__ == "__main__":
    main()
