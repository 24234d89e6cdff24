"""Hostile request heads against a running proxy: repeated headers the proxy acts on, too many header or
trailer fields, Connection nominating what the proxy must keep (both ways). Each test checks what the client
got and what the upstream received (nothing, for a refused request).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess
from testbed.raw import RawResponse, exchange
from testbed.upstream import UpstreamServer


class HostileUpstream:
    """Answers every request with a fixed response head naming protected headers in Connection."""

    HEAD = (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, content-type, x-request-id, via, x-meshbatch-batch-id, "
            b"x-upstream-private\r\ncontent-type: application/json\r\nx-request-id: upstream-id\r\n"
            b"x-upstream-private: secret\r\nx-end-to-end: kept\r\ncontent-length: 2\r\n\r\n{}")

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.heads: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while True:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if b"\r\n\r\n" not in data:
                        break
                    head, _, data = data.partition(b"\r\n\r\n")
                    self.heads.append(head)
                    conn.sendall(self.HEAD)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    server = HostileUpstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer], hostile: HostileUpstream) -> MeshbatchProcess:
    process: MeshbatchProcess = module_mesh.start(config(
        [listener("main", [route("hostile", "hostile", {"path_prefix": "/hostile"}), route("all", "a")]),
         listener("small", [route("small-all", "a")], {"max_headers": 20})],
        [cluster("a", upstreams["a"].address), cluster("hostile", hostile.address)]))
    return process


@pytest.fixture(autouse=True)
def fresh(upstreams: dict[str, UpstreamServer]) -> None:
    upstreams["a"].reset()


def send(proxy: MeshbatchProcess, head: str, body: str = "", listener_name: str = "main") -> RawResponse:
    return exchange(proxy.address(listener_name), (head + "\r\n" + body).encode())


def get(extra: str, path: str = "/x") -> str:
    return f"GET {path} HTTP/1.1\r\nHost: svc\r\n{extra}"


@pytest.mark.parametrize("name", [
    "Authorization", "Proxy-Authorization", "Idempotency-Key", "X-Meshbatch-Priority", "X-Meshbatch-Deadline-Ms",
    "X-Request-Id", "Traceparent", "Content-Type", "Content-Encoding", "X-Forwarded-Proto",
])
def test_a_repeated_header_the_proxy_acts_on_is_refused(proxy: MeshbatchProcess,
                                                        upstreams: dict[str, UpstreamServer], name: str) -> None:
    # Two Authorization headers: the proxy validated the first and forwarded both; the upstream read either.
    response = send(proxy, get(f"{name}: Bearer first\r\n{name.lower()}: Bearer second\r\n"))
    assert response.status == 400
    body = response.json()
    assert body["reason"] == "duplicate_header" and name.lower() in body["detail"]
    assert upstreams["a"].requests == []


def test_list_headers_still_repeat(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    assert send(proxy, get("Accept: a/b\r\nAccept: c/d\r\nCookie: a=1\r\nCookie: b=2\r\n")).status == 200
    seen = upstreams["a"].last()
    assert seen.header_all("accept") == ["a/b", "c/d"] and seen.header_all("cookie") == ["a=1", "b=2"]


def fields(n: int) -> str:
    return "".join(f"X-Field-{i}: v\r\n" for i in range(n))


def test_one_hundred_header_fields_pass(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    assert send(proxy, get(fields(99))).status == 200  # with Host: 100
    assert len([k for k, _ in upstreams["a"].last().headers if k.startswith("x-field-")]) == 99


def test_one_hundred_and_one_header_fields_are_431(proxy: MeshbatchProcess,
                                                   upstreams: dict[str, UpstreamServer]) -> None:
    # 13,000 header fields were once accepted and forwarded (1,000 here: all of it fits the socket buffers, so
    # the answer is not lost to a reset while the client is still sending).
    for n in (100, 1_000):
        response = send(proxy, get(fields(n)))
        assert (response.status, response.json()["reason"]) == (431, "too_many_headers")
    assert upstreams["a"].requests == []


def test_the_header_field_cap_is_the_listeners(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    assert send(proxy, get(fields(19)), listener_name="small").status == 200
    assert send(proxy, get(fields(20)), listener_name="small").status == 431
    assert len(upstreams["a"].requests) == 1


def test_trailer_fields_are_capped_too(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    head = "POST /x HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n"
    trailers = "".join(f"T-{i}: v\r\n" for i in range(101))
    response = send(proxy, head, "1\r\nz\r\n0\r\n" + trailers + "\r\n")
    assert (response.status, response.json()["reason"]) == (431, "too_many_headers")
    assert upstreams["a"].requests == []


def test_connection_cannot_remove_what_the_proxy_keeps(proxy: MeshbatchProcess,
                                                       upstreams: dict[str, UpstreamServer]) -> None:
    # `Connection: host` once stripped the Host the route was matched on; `Connection: x-request-id` the id.
    response = send(proxy, get("Connection: keep-alive, host, x-request-id, x-forwarded-for, via, traceparent, "
                               "content-type, x-meshbatch-priority, x-hop\r\nX-Request-Id: rid-1\r\n"
                               "X-Forwarded-For: 192.0.2.1\r\nTraceparent: "
                               "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nContent-Type: text/plain\r\n"
                               "X-Meshbatch-Priority: high\r\nX-Hop: gone\r\n"))
    assert response.status == 200
    seen = upstreams["a"].last()
    assert seen.header("host") == "svc"
    assert seen.header("x-request-id") == "rid-1" and response.header("x-request-id") == "rid-1"
    assert seen.header("x-forwarded-for") == "192.0.2.1, 127.0.0.1"
    assert seen.header("traceparent") is not None and seen.header("content-type") == "text/plain"
    assert seen.header("x-hop") is None  # a nomination of anything else is honoured
    assert seen.header("connection") in (None, "keep-alive")


def test_an_upstream_connection_cannot_remove_them_either(proxy: MeshbatchProcess, hostile: HostileUpstream) -> None:
    response = send(proxy, get("X-Request-Id: rid-2\r\n", "/hostile/x"))
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.header("via") == "1.1 meshbatch"
    assert response.header("x-end-to-end") == "kept"
    assert response.header("x-upstream-private") is None
    assert hostile.heads and b"x-request-id: rid-2" in hostile.heads[-1].lower()
