"""Malformed and ambiguous requests over raw sockets: 400 with a JSON reason, the connection closed, nothing
smuggled to the upstream, and each counted in /metrics by reason."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from testbed.config import simple
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.raw import RawClient, get, request
from testbed.upstream import UpstreamServer

CASES: dict[str, tuple[bytes, str]] = {
    "content_length_and_chunked": (
        b"POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: 45\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n", "malformed_request"),
    "chunked_and_content_length": (
        b"POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n", "malformed_request"),
    "duplicate_content_length": (
        b"POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n", "malformed_request"),
    "bad_chunk_size": (
        b"POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n0\r\n\r\n",
        "malformed_request"),
    "negative_chunk_size": (
        b"POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
        "malformed_request"),
    "obs_fold": (b"GET /s HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n", "malformed_request"),
    "bare_lf": (b"GET /s HTTP/1.1\nHost: t\n\n", "malformed_request"),
    "bare_lf_in_chunk": (
        b"POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n", "malformed_request"),
    "xchunked": (b"POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", "malformed_request"),
    "gzip_chunked": (
        b"POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "malformed_request"),
    "te_on_http10": (b"POST /s HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "te_on_http10"),
    "two_hosts": (b"GET /s HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "duplicate_host"),
    "missing_host": (b"GET /s HTTP/1.1\r\nAccept: */*\r\n\r\n", "missing_host"),
    "http09": (b"GET /s\r\n\r\n", "unsupported_version"),
    "space_before_colon": (b"GET /s HTTP/1.1\r\nHost: t\r\nX-A : 1\r\n\r\n", "malformed_request"),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "malformed_request"),  # a TLS hello
    "websocket_upgrade": (
        b"GET /s HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "upgrade_not_supported"),
    "unknown_expect": (b"POST /s HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx",
                       "unsupported_expect"),
}


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    return module_mesh.start(simple(upstreams["b"].address))


def local_replies(proxy: MeshbatchProcess, reason: str) -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    return metric_value(text, "meshbatch_local_replies_total", listener="main", status="400", reason=reason)


@pytest.mark.parametrize("name", sorted(CASES))
def test_answered_400_and_closed(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer], name: str) -> None:
    data, reason = CASES[name]
    upstream = upstreams["b"]
    upstream.reset()
    before = local_replies(proxy, reason)
    response, closed = request(proxy.address("main"), data)
    assert response.status == 400
    assert response.json()["reason"] == reason
    assert response.json()["error"] == "bad request"
    assert response.header("content-type") == "application/json"
    assert response.header("connection") == "close"
    assert closed, "the connection must be closed after a malformed request"
    assert upstream.requests == [], "nothing of a malformed request may reach the upstream"
    assert local_replies(proxy, reason) == before + 1


def test_requests_before_the_bad_one_are_answered_first(proxy: MeshbatchProcess,
                                                        upstreams: dict[str, UpstreamServer]) -> None:
    upstreams["b"].reset()
    with RawClient(proxy.address("main")) as conn:
        conn.send(get("/first") + get("/second") + b"GET /bad HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + get("/never"))
        assert conn.read_response().json()["target"] == "/first"
        assert conn.read_response().json()["target"] == "/second"
        error = conn.read_response()
        assert (error.status, error.json()["reason"]) == (400, "duplicate_host")
        assert conn.closed_by_peer()
    assert [seen.target for seen in upstreams["b"].requests] == ["/first", "/second"]


def test_bad_request_after_a_good_one_on_a_later_write(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("main")) as conn:
        conn.send(get("/ok"))
        assert conn.read_response().status == 200
        conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
        assert conn.read_response().status == 400
        assert conn.closed_by_peer()


def test_the_proxy_still_serves_after_bad_requests(proxy: MeshbatchProcess) -> None:
    response = httpx.get(proxy.url("main", "/still-fine"), timeout=5)
    assert response.status_code == 200
