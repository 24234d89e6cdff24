"""Request smuggling and desync attempts against a running proxy, and slow clients: every ambiguous framing is
answered 400 and the connection closed, and the upstream never sees a byte of it (not the smuggled request, not
the carrier); requests read before a bad one on the same connection are answered and forwarded alone.
Slowloris (a head that never ends, a TLS handshake that never starts) is cut off at the configured timeout
while other clients are served."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.pki import Pki
from testbed.proxy import MeshbatchProcess
from testbed.raw import RawClient, get, request
from testbed.upstream import UpstreamServer

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
P = b"POST /carrier HTTP/1.1\r\nHost: t\r\n"
ATTEMPTS: dict[str, bytes] = {
    "cl_te": P + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_cl": P + b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_te_xchunked": P + b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_te_space_before_colon": P + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_te_two_headers": P + b"Transfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_te_vertical_tab": P + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_te_list": P + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_te_quoted": P + b'Transfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n' + SMUGGLED,
    "te_te_folded": P + b"X: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_te_bare_lf": P + b"X: y\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_on_http10": b"POST /carrier HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "duplicate_cl": P + b"Content-Length: 0\r\nContent-Length: 37\r\n\r\n" + SMUGGLED,
    "duplicate_cl_same_value": P + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + SMUGGLED,
    "cl_list": P + b"Content-Length: 5, 5\r\n\r\nhello" + SMUGGLED,
    "cl_plus_sign": P + b"Content-Length: +5\r\n\r\nhello" + SMUGGLED,
    "cl_overflow": P + b"Content-Length: 99999999999999999999999\r\n\r\n" + SMUGGLED,
    "chunk_size_overflow": P + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nx\r\n0\r\n\r\n" + SMUGGLED,
    "chunk_size_wraps_64_bits": P + b"Transfer-Encoding: chunked\r\n\r\n10000000000000001\r\nx\r\n0\r\n\r\n" + SMUGGLED,
    "chunk_size_leading_space": P + b"Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    "chunk_ext_bare_cr": P + b"Transfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    "chunk_data_overrun": P + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" + SMUGGLED,
    "two_hosts": b"GET /carrier HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + SMUGGLED,
}


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    return module_mesh.start(config([listener("main", [route("all", "echo")],
                                              limits={"header_timeout_ms": 500})],
                                    [cluster("echo", upstreams["b"].address)]))


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
def test_smuggling_attempts_are_400_and_never_forwarded(proxy: MeshbatchProcess,
                                                        upstreams: dict[str, UpstreamServer], name: str) -> None:
    upstream = upstreams["b"]
    upstream.reset()
    response, closed = request(proxy.address("main"), ATTEMPTS[name])
    assert response.status == 400 and closed
    time.sleep(0.05)  # a forwarded request would have arrived by now (loopback); nothing may have
    assert upstream.requests == []


@pytest.mark.parametrize("name", ["cl_te", "te_cl", "duplicate_cl", "chunk_size_overflow"])
def test_a_good_request_before_the_attempt_is_forwarded_alone(proxy: MeshbatchProcess,
                                                              upstreams: dict[str, UpstreamServer],
                                                              name: str) -> None:
    upstream = upstreams["b"]
    upstream.reset()
    with RawClient(proxy.address("main")) as client:
        client.send(get("/first") + ATTEMPTS[name])
        assert client.read_response().status == 200
        assert client.read_response().status == 400
        assert client.closed_by_peer()
    time.sleep(0.05)
    assert [seen.target for seen in upstream.requests] == ["/first"]


def test_slowloris_is_cut_off_while_others_are_served(proxy: MeshbatchProcess) -> None:
    address = proxy.address("main")
    slow = [RawClient(address) for _ in range(20)]
    stop = threading.Event()

    def drip() -> None:  # one byte of a head that never ends, every 100 ms, on every connection
        line = b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 200
        for i in range(len(line)):
            for client in slow:
                try:
                    client.send(line[i:i + 1])
                except OSError:
                    pass
            if stop.wait(0.1):
                return

    thread = threading.Thread(target=drip, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        for _ in range(5):  # meanwhile, ordinary callers are answered at once
            assert httpx.get(proxy.url("main", "/fine"), timeout=2).status_code == 200
        for client in slow:
            response = client.read_response()
            assert response.status == 408 and response.json()["reason"] == "header_timeout"
        assert time.monotonic() - started < 3.0
    finally:
        stop.set()
        thread.join(5)
        for client in slow:
            client.close()


def test_a_tls_handshake_that_never_starts_is_cut_off(mesh: Any, upstreams: dict[str, UpstreamServer],
                                                      tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    pki.issue("server", "/ns/shop/sa/orders")
    for mode in ("strict", "permissive"):
        proxy = mesh.start(config([listener("main", [route("all", "echo")],
                                            tls={"mode": mode, "handshake_timeout_ms": 300})],
                                  [cluster("echo", upstreams["b"].address)], identity=pki.identity("server")))
        started = time.monotonic()
        with socket.create_connection(proxy.address("main"), timeout=5) as idle:
            if mode == "strict":
                idle.sendall(b"\x16\x03\x01")  # the start of a ClientHello, never finished
            assert idle.recv(100) == b""
        assert time.monotonic() - started < 2.0
