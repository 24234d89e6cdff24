"""Raw-socket HTTP/1.1 for what httpx and curl will not send: pipelining, smuggling attempts, slow clients."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """One TCP connection; write bytes, read whole responses (Content-Length, chunked or close framed)."""

    def __init__(self, address: tuple[str, int], timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed before {marker!r}; got {self.buffer!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise ConnectionError(f"closed after {len(self.buffer)} of {n} bytes")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_response(self, head_request: bool = False) -> RawResponse:
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        _version, status, reason = ([*lines[0].split(" ", 2), ""])[:3]
        headers = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip().lower(), value.strip()))
        response = RawResponse(int(status), reason, headers, b"")
        code = int(status)
        if head_request or code in (204, 304) or 100 <= code < 200:
            return response
        length = response.header("content-length")
        if length is not None:
            response.body = self.read_exact(int(length))
        elif (response.header("transfer-encoding") or "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.read_until(b"\r\n")[:-2].split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")
                    break
                parts.append(self.read_exact(size))
                self.read_exact(2)
            response.body = b"".join(parts)
        else:
            while self._fill():
                pass
            response.body, self.buffer = self.buffer, b""
        return response

    def closed_by_peer(self, timeout: float = 3.0) -> bool:
        """True when the peer closes (EOF or reset) within `timeout` with no more bytes; False if it stays open."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buffer += chunk


def request(address: tuple[str, int], data: bytes, timeout: float = 5.0) -> tuple[RawResponse, bool]:
    """Send raw bytes on a fresh connection; the first response and whether the proxy then closed."""
    with RawClient(address, timeout) as client:
        client.send(data)
        response = client.read_response()
        return response, client.closed_by_peer(timeout)


def exchange(address: tuple[str, int], data: bytes, timeout: float = 5.0) -> RawResponse:
    """Send raw bytes on a fresh connection; the first response (the connection is then dropped)."""
    with RawClient(address, timeout) as client:
        client.send(data)
        return client.read_response()


def read_all(address: tuple[str, int], data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; everything that comes back until the peer closes it."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65_536):
            out += chunk
    return out


def get(path: str = "/", host: str = "test", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


__all__ = ["RawClient", "RawResponse", "exchange", "get", "request"]
