"""A unix-socket byte forwarder for tests: put in front of a peer's socket
(a runtime, an engine), it forwards both ways unchanged and counts the
connections opened through it (accepted, open now, most open at once).
A subclass sees what clients send by overriding client_data."""
import os
import socket
import threading


class UnixProxy:
    def __init__(self, path, target):
        self.path, self.target = path, target
        self.accepted = self.open = self.most_open = 0
        self.lock = threading.Lock()
        if os.path.exists(path):
            os.unlink(path)
        self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ls.bind(path)
        self.ls.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def client_data(self, conn, data):
        """Bytes a client sent on connection conn (a dict of its own, for
        state kept between reads), before they are forwarded."""

    def _accept(self):
        while True:
            try:
                a, _ = self.ls.accept()
            except OSError:
                return
            b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            b.connect(self.target)
            with self.lock:
                self.accepted += 1
                self.open += 1
                self.most_open = max(self.most_open, self.open)
            done, conn = [], {}
            for src, dst, up in ((a, b, True), (b, a, False)):
                threading.Thread(target=self._pipe, args=(src, dst, up, conn, done), daemon=True).start()

    def _pipe(self, src, dst, upstream, conn, done):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if upstream:
                    self.client_data(conn, d)
                dst.sendall(d)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self.lock:
            done.append(1)
            if len(done) == 2:
                self.open -= 1
                src.close()
                dst.close()

    def close(self):
        self.ls.close()
