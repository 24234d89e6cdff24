"""A scripted upstream on raw sockets, for answers no well-behaved server library would send: bytes after an
answer, an answer before the request body was read, interim answers, answers cut at any byte, resets.

Each accepted connection runs in its own thread: the server reads a request head, then calls
`handler(peer, request)`, which reads (or does not read) the body and writes whatever bytes it likes; it
returns False to close the connection. Every request is recorded with the number of its connection, so a
test can tell whether two requests shared one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class RawRequest:
    method: str
    path: str
    headers: dict[str, str]
    connection: int  # 1 for the first connection accepted, 2 for the next...

    @property
    def length(self) -> int:
        return int(self.headers.get("content-length", "0"))


class Peer:
    """One accepted connection, seen from the upstream."""

    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock = sock
        self.number = number
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def read_head(self) -> RawRequest | None:
        start = 0
        while (end := self.buffer.find(b"\r\n\r\n", start)) < 0:
            start = max(len(self.buffer) - 3, 0)
            if not self._fill():
                return None
        head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4:]
        lines = head.split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return RawRequest(method, path, headers, self.number)

    def read_body(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise ConnectionError(f"closed after {len(self.buffer)} of {n} body bytes")
        body, self.buffer = self.buffer[:n], self.buffer[n:]
        return body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


Handler = Callable[[Peer, RawRequest], bool]


class HostileUpstream:
    def __init__(self, handler: Handler, receive_buffer: int = 0) -> None:
        self.handler = handler
        self.listener = socket.socket()
        if receive_buffer:  # set before listening, so accepted sockets start (and stay) with a small window
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[RawRequest] = []
        self.closed: set[int] = set()  # connections the proxy closed (seen as EOF or a reset)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._peers: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="hostile-upstream")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> HostileUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for sock in self._peers:
                with contextlib.suppress(OSError):
                    sock.close()

    def last(self, path_prefix: str) -> RawRequest:
        with self._lock:
            return next(r for r in reversed(self.requests) if r.path.startswith(path_prefix))

    def wait_closed(self, connection: int, timeout: float = 5.0) -> None:
        """Until the proxy has closed connection number `connection`."""
        with self._changed:
            if not self._changed.wait_for(lambda: connection in self.closed, timeout):
                raise AssertionError(f"connection {connection} still open after {timeout}s")

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                number = self.connections
                self._peers.append(sock)
            threading.Thread(target=self._serve, args=(Peer(sock, number),), daemon=True).start()

    def _serve(self, peer: Peer) -> None:
        try:
            while True:
                request = peer.read_head()
                if request is None:
                    with self._changed:
                        self.closed.add(peer.number)
                        self._changed.notify_all()
                    return
                with self._lock:
                    self.requests.append(request)
                if not self.handler(peer, request):
                    return
        except OSError:
            with self._changed:
                self.closed.add(peer.number)
                self._changed.notify_all()
            return
        finally:
            with contextlib.suppress(OSError):
                peer.sock.close()


def answer(status: int, body: bytes, *headers: str) -> bytes:
    """A Content-Length framed answer."""
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


__all__ = ["HostileUpstream", "Peer", "RawRequest", "answer"]
