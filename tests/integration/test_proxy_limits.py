"""Listener limits through a running proxy: 413, 431, the header-read timeout (slowloris), idle and body
timeouts, max_connections; each counted in /metrics by reason. Timers are small and polled, never slept on."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.raw import RawClient, get, request
from testbed.upstream import UpstreamServer

TIGHT = {"max_header_bytes": 1024, "max_body_bytes": 1000, "header_timeout_ms": 300, "idle_timeout_ms": 400}


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    return module_mesh.start(config(
        [listener("tight", [route("tight", "echo")], TIGHT),
         listener("few", [route("few", "echo")], {"max_connections": 2}),
         listener("queue", [route("queue", "echo")], {"max_pipelined": 2})],
        [cluster("echo", upstreams["a"].address)],
    ))


def local(proxy: MeshbatchProcess, status: str, reason: str, name: str = "tight") -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    return metric_value(text, "meshbatch_local_replies_total", listener=name, status=status, reason=reason)


def test_body_within_the_limit(proxy: MeshbatchProcess) -> None:
    response = httpx.post(proxy.url("tight", "/ok"), content=b"x" * 1000, timeout=5)
    assert response.status_code == 200 and len(response.json()["body"]) == 1000


def test_content_length_too_large_is_413_before_the_body(proxy: MeshbatchProcess) -> None:
    before = local(proxy, "413", "body_too_large")
    with RawClient(proxy.address("tight")) as conn:
        conn.send(b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n")  # and no body at all
        response = conn.read_response()
        assert response.status == 413 and response.json()["reason"] == "body_too_large"
        assert conn.closed_by_peer()
    assert local(proxy, "413", "body_too_large") == before + 1


def test_httpx_sees_413(proxy: MeshbatchProcess) -> None:
    try:
        response = httpx.post(proxy.url("tight", "/big"), content=b"x" * 50_000, timeout=5)
    except httpx.TransportError:  # the proxy may close while the body is still being written
        pytest.skip("the connection closed before httpx read the answer")
    assert response.status_code == 413


def test_expect_100_continue_with_a_body_too_large_is_413_at_once(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("tight")) as conn:
        conn.send(b"POST /big HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        response = conn.read_response()
        assert response.status == 413  # never 100 Continue first
        assert conn.closed_by_peer()


def test_chunked_body_too_long_is_413(proxy: MeshbatchProcess) -> None:
    before = local(proxy, "413", "body_too_large")
    with RawClient(proxy.address("tight")) as conn:
        conn.send(b"POST /big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(5):
                conn.send(b"190\r\n" + b"y" * 400 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = conn.read_response()
        assert response.status == 413 and response.json()["reason"] == "body_too_large"
        assert conn.closed_by_peer()
    assert local(proxy, "413", "body_too_large") == before + 1


def test_huge_headers_are_431(proxy: MeshbatchProcess) -> None:
    before = local(proxy, "431", "headers_too_large")
    response, closed = request(proxy.address("tight"), get("/h", extra="X-Big: " + "b" * 2000 + "\r\n"))
    assert response.status == 431 and response.json()["reason"] == "headers_too_large"
    assert closed
    assert local(proxy, "431", "headers_too_large") == before + 1


def test_many_headers_are_431_with_httpx(proxy: MeshbatchProcess) -> None:
    headers = {f"x-h{i}": "v" * 30 for i in range(60)}
    assert httpx.get(proxy.url("tight", "/h"), headers=headers, timeout=5).status_code == 431


def test_a_header_line_that_never_ends_is_431(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("tight")) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: ")
        try:
            for _ in range(20):
                conn.send(b"e" * 200)
                time.sleep(0.005)  # separate reads on the proxy's side
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = conn.read_response()
        assert response.status == 431
        assert conn.closed_by_peer()


def test_slowloris_gets_408_after_the_header_timeout(proxy: MeshbatchProcess) -> None:
    before = local(proxy, "408", "header_timeout")
    started = time.monotonic()
    with RawClient(proxy.address("tight")) as conn:
        conn.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n")
        conn.sock.settimeout(0.05)
        answer = b""
        deadline = started + 3
        # Keep dripping header bytes, each well within any idle timeout, until the proxy answers.
        while time.monotonic() < deadline:
            try:
                conn.send(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                chunk = conn.sock.recv(65536)
            except TimeoutError:
                continue
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"reason":"header_timeout"' in answer
    assert 0.25 <= elapsed < 2.0
    assert local(proxy, "408", "header_timeout") == before + 1


def test_empty_lines_alone_do_not_hold_a_connection(proxy: MeshbatchProcess) -> None:
    # llhttp skips CRLFs before a request line; a client sending only those is a slowloris too.
    started = time.monotonic()
    answer = b""
    with RawClient(proxy.address("tight")) as conn:
        conn.sock.settimeout(0.05)
        while time.monotonic() - started < 3:
            try:
                conn.send(b"\r\n")
                chunk = conn.sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            answer += chunk
            if not chunk:
                break
    assert time.monotonic() - started < 2.0
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")


def test_idle_keep_alive_connection_is_closed(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("tight")) as conn:
        conn.send(get("/once"))
        assert conn.read_response().status == 200
        started = time.monotonic()
        assert conn.closed_by_peer(timeout=3)
        assert 0.3 <= time.monotonic() - started < 2.0


def test_a_connection_that_never_sends_is_closed(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("tight")) as conn:
        started = time.monotonic()
        assert conn.closed_by_peer(timeout=3)
        assert time.monotonic() - started < 2.0
        assert conn.buffer == b""  # closed without an answer: there was no request


def test_a_body_that_stops_arriving_is_408(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("tight")) as conn:
        conn.send(b"POST /stuck HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        conn.sock.settimeout(3)
        response = conn.read_response()
        assert response.status == 408 and response.json()["reason"] == "body_timeout"
        assert conn.closed_by_peer()


def test_pipelining_beyond_max_pipelined_pauses_and_resumes(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("queue")) as conn:
        conn.send(b"".join(get(f"/q/{i}") for i in range(40)))
        targets = [conn.read_response().json()["target"] for _ in range(40)]
        assert targets == [f"/q/{i}" for i in range(40)]
        conn.send(get("/q/after"))  # reading resumed
        assert conn.read_response().json()["target"] == "/q/after"


def connection_is_served(address: tuple[str, int]) -> bool:
    try:
        response, _ = request(address, get("/probe", extra="Connection: close\r\n"), timeout=2)
    except (ConnectionError, OSError):
        return False
    return response.status == 200


def test_max_connections(proxy: MeshbatchProcess) -> None:
    address = proxy.address("few")
    held = [RawClient(address), RawClient(address)]
    try:
        for conn in held:  # both accepted and served
            conn.send(get("/held"))
            assert conn.read_response().status == 200
        extra = socket.create_connection(address, timeout=3)
        try:
            extra.sendall(get("/extra"))
            data = extra.recv(65536)  # closed at once: no answer
        except ConnectionResetError:
            data = b""
        finally:
            extra.close()
        assert data == b""
        held.pop().close()
        deadline = time.monotonic() + 3
        while not connection_is_served(address):  # the slot frees when the proxy sees the close
            assert time.monotonic() < deadline, "a freed connection slot was not reused"
            time.sleep(0.02)
    finally:
        for conn in held:
            conn.close()
    listeners = httpx.get(proxy.url("admin", "/listeners"), timeout=5).json()["listeners"]
    few = next(item for item in listeners if item["name"] == "few")
    assert few["rejected"] >= 1
