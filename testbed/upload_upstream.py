"""An HTTP/1.1 upstream that reads request bodies as they arrive and tells the test (a thread per connection).

Each request's head is recorded; then its body (Content-Length or chunked) is read piece by piece, and every
piece read is put on `pieces` (so a test can wait for the first bytes of a body its client has not finished
sending: proof that the proxy forwards it as it arrives). `reading` is an Event: cleared, the server stops
reading (its socket's receive buffer is small: the proxy's writes back up). At the end of the body it answers
`status` (200) with a JSON summary: the head's framing, the body's length and SHA-256; a connection that ends
before the body does is put on `cut`.
"""

from __future__ import annotations

import hashlib
import json
import queue
import socket
import socketserver
import threading
from typing import Any


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        owner = self.server.owner
        self.buffer = b""
        try:
            while True:
                head = self._until(b"\r\n\r\n")
                if head is None:
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                owner.heads.put({"line": lines[0], "headers": headers})
                digest, size = hashlib.sha256(), 0
                for piece in self._body(headers):
                    digest.update(piece)
                    size += len(piece)
                    owner.pieces.put(piece)
                body = json.dumps({"size": size, "sha256": digest.hexdigest(), "chunked":
                                   headers.get("transfer-encoding") == "chunked",
                                   "content_length": headers.get("content-length")}).encode()
                sock.sendall(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" %
                             (owner.status, len(body), body))
        except (OSError, _Cut):
            owner.cut.put(True)

    def _recv(self) -> bytes:
        self.server.owner.reading.wait()
        data: bytes = self.request.recv(16_384)
        if not data:
            raise _Cut
        return data

    def _until(self, marker: bytes) -> bytes | None:
        while marker not in self.buffer:
            try:
                self.buffer += self._recv()
            except _Cut:
                return None
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _take(self, n: int) -> Any:
        while n:
            if not self.buffer:
                self.buffer = self._recv()
            piece, self.buffer = self.buffer[:n], self.buffer[n:]
            n -= len(piece)
            yield piece

    def _body(self, headers: dict[str, str]) -> Any:
        if headers.get("transfer-encoding") == "chunked":
            while True:
                line = self._until(b"\r\n")
                if line is None:
                    raise _Cut
                size = int(line.split(b";")[0], 16)
                if not size:
                    self._until(b"\r\n")
                    return
                yield from self._take(size)
                self._until(b"\r\n")
        else:
            yield from self._take(int(headers.get("content-length", "0")))


class _Cut(Exception):
    pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: UploadUpstream

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)  # (accepted sockets inherit it)
        super().server_bind()


class UploadUpstream:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.heads: queue.Queue[dict[str, Any]] = queue.Queue()
        self.pieces: queue.Queue[bytes] = queue.Queue()
        self.cut: queue.Queue[bool] = queue.Queue()
        self.reading = threading.Event()
        self.reading.set()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.owner = self
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> UploadUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.reading.set()
        self.server.shutdown()
        self.server.server_close()

    def drain(self) -> None:
        """Forget what earlier tests left."""
        for q in (self.heads, self.pieces, self.cut):
            while not q.empty():
                q.get_nowait()


__all__ = ["UploadUpstream"]
