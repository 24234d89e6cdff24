"""Trailers through `meshbatch run` from an HTTP/1.1 upstream: a chunked answer's trailer section reaches an
HTTP/1.1 caller that said `TE: trailers` (chunked, with its trailer section); any other caller gets the plain
answer without them. The upstream is told `TE: trailers` only when the caller said it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from testbed.config import simple
from testbed.proxy import MeshbatchProcess
from testbed.raw import RawClient
from testbed.upstream import UpstreamServer


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    process: MeshbatchProcess = module_mesh.start(simple(upstreams["b"].address))
    return process


def test_trailers_reach_a_caller_that_asks(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    with RawClient(proxy.address("main")) as raw:
        for _ in range(2):  # (twice on one connection: the answer ends where it should)
            raw.send(b"GET /trailers HTTP/1.1\r\nhost: svc\r\nte: trailers\r\n\r\n")
            head = raw.read_until(b"\r\n\r\n").lower()
            assert b"transfer-encoding: chunked" in head and b"content-length" not in head
            if b"trailer:" in head:  # announced when the answer was read whole (a streamed one's come unannounced)
                assert b"trailer: grpc-status, x-checksum" in head
            body = raw.read_until(b"\r\n0\r\n")
            trailers = raw.read_until(b"\r\n\r\n")
            assert b'"server": "b"' in body
            assert trailers == b"grpc-status: 0\r\nx-checksum: 42\r\n\r\n"
    seen = upstreams["b"].last("/trailers")
    assert ("te", "trailers") in seen.headers


def test_a_caller_that_does_not_ask_gets_no_trailers(proxy: MeshbatchProcess,
                                                     upstreams: dict[str, UpstreamServer]) -> None:
    answer = httpx.get(proxy.url("main", "/trailers"), timeout=5)
    assert answer.status_code == 200 and answer.json()["server"] == "b"
    # (framed by Content-Length when the upstream's chunks came in one read; else the answer streamed, chunked)
    assert answer.headers.get("content-length", str(len(answer.content))) == str(len(answer.content))
    assert "grpc-status" not in answer.headers and "trailer" not in answer.headers
    assert all(name != "te" for name, _ in upstreams["b"].last("/trailers").headers)
