"""Forwarding headers from callers against a running proxy: who the client is (policies, access logs, the
x-forwarded-for sent upstream), and which x-forwarded-*, forwarded, x-request-id and traceparent headers are
believed. Each test checks what the client got and what the upstream received.

Listeners: `inner` (defaults: not an edge, no trusted hops), `edge` (`edge: true`), `hop` (`edge: true`,
`xff_num_trusted_hops: 1`: one load balancer in front) and `keep` (an edge that keeps request ids and traces).
`edge` and `hop` deny clients in 198.51.100.0/24 by policy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess
from testbed.raw import RawResponse, exchange
from testbed.upstream import Seen, UpstreamServer

BLOCKED = [{"name": "blocked-net", "action": "DENY",
            "rules": [{"from": [{"source": {"ip_blocks": ["198.51.100.0/24"]}}]}]}]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SPOOF = ("X-Forwarded-For: 198.51.100.7\r\nForwarded: for=198.51.100.7;proto=https\r\n"
         "X-Forwarded-Host: evil.example\r\nX-Real-IP: 198.51.100.7\r\n"
         "X-Forwarded-Proto: https\r\nX-Request-Id: chosen-by-client\r\n"
         f"Traceparent: {TRACEPARENT}\r\nTracestate: vendor=1\r\n")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def listeners() -> list[dict[str, Any]]:
    return [
        listener("inner", [route("inner-all", "a")]),
        listener("edge", [route("edge-all", "a")], edge=True, policies=BLOCKED),
        listener("hop", [route("hop-all", "a")], edge=True, xff_num_trusted_hops=1, policies=BLOCKED),
        listener("keep", [route("keep-all", "a")], edge=True, preserve_external_request_id=True,
                 preserve_external_trace=True),
    ]


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    process: MeshbatchProcess = module_mesh.start(config(listeners(), [cluster("a", upstreams["a"].address)]))
    return process


@pytest.fixture(autouse=True)
def fresh(upstreams: dict[str, UpstreamServer]) -> None:
    upstreams["a"].reset()


def send(proxy: MeshbatchProcess, name: str, extra: str) -> RawResponse:
    return exchange(proxy.address(name), f"GET /x HTTP/1.1\r\nHost: svc\r\n{extra}\r\n".encode())


def only(upstream: UpstreamServer) -> Seen:
    assert len(upstream.requests) == 1, upstream.requests
    return upstream.requests[0]


def test_xff_spoofing_on_an_edge(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    # The client claims to be 198.51.100.7 (a denied address, and one an upstream might trust): it is not
    # believed for the policy, and the upstream is told only what this proxy saw.
    response = send(proxy, "edge", SPOOF)
    assert response.status == 200
    seen = only(upstreams["a"])
    assert seen.header_all("x-forwarded-for") == ["127.0.0.1"]  # replaced, not appended to
    assert seen.header_all("x-forwarded-proto") == ["http"]  # this connection's scheme
    assert seen.header("forwarded") is None and seen.header("x-forwarded-host") is None
    assert seen.header("x-real-ip") is None


def test_one_trusted_hop_names_the_client(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    # The load balancer in front appended the address it saw (the rightmost entry); what is left of it is
    # whatever the client wrote. Only the trusted entry decides.
    spoofed = send(proxy, "hop", "X-Forwarded-For: 198.51.100.7, 203.0.113.5\r\nX-Forwarded-Proto: https\r\n")
    assert spoofed.status == 200
    seen = only(upstreams["a"])
    assert seen.header_all("x-forwarded-for") == ["198.51.100.7, 203.0.113.5, 127.0.0.1"]  # appended
    assert seen.header_all("x-forwarded-proto") == ["https"]  # set by the trusted hop
    upstreams["a"].reset()
    denied = send(proxy, "hop", "X-Forwarded-For: 203.0.113.5, 198.51.100.7\r\n")
    assert (denied.status, denied.json()["reason"]) == (403, "authz_denied")
    assert upstreams["a"].requests == []


def test_x_request_id_and_trace_on_an_edge(proxy: MeshbatchProcess, upstreams: dict[str, UpstreamServer]) -> None:
    response = send(proxy, "edge", SPOOF)
    seen = only(upstreams["a"])
    sent = seen.header_all("x-request-id")
    assert len(sent) == 1 and HEX32.match(sent[0])  # a new id, not the caller's
    assert response.header("x-request-id") == sent[0]
    assert seen.header("traceparent") is None and seen.header("tracestate") is None  # a new trace starts here


def test_an_edge_may_keep_request_ids_and_traces(proxy: MeshbatchProcess,
                                                 upstreams: dict[str, UpstreamServer]) -> None:
    response = send(proxy, "keep", SPOOF)
    seen = only(upstreams["a"])
    assert seen.header_all("x-request-id") == ["chosen-by-client"]
    assert response.header("x-request-id") == "chosen-by-client"
    assert (seen.header("traceparent"), seen.header("tracestate")) == (TRACEPARENT, "vendor=1")
    assert seen.header_all("x-forwarded-for") == ["127.0.0.1"]  # still an edge for addresses


def test_inside_the_mesh_headers_pass_and_the_peer_is_appended(proxy: MeshbatchProcess,
                                                               upstreams: dict[str, UpstreamServer]) -> None:
    send(proxy, "inner", SPOOF)
    seen = only(upstreams["a"])
    assert seen.header_all("x-forwarded-for") == ["198.51.100.7, 127.0.0.1"]
    assert seen.header_all("x-forwarded-proto") == ["http"]  # believed from trusted hops only
    assert seen.header("x-request-id") == "chosen-by-client" and seen.header("traceparent") == TRACEPARENT
    assert seen.header("forwarded") == "for=198.51.100.7;proto=https"


def test_the_access_log_records_the_trusted_client(mesh: Any, upstreams: dict[str, UpstreamServer],
                                                   tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    process: MeshbatchProcess = mesh.start(config(listeners(), [cluster("a", upstreams["a"].address)],
                                                  access_log={"path": str(log)}))
    assert send(process, "hop", "X-Forwarded-For: 198.51.100.7, 203.0.113.5\r\n").status == 200
    assert send(process, "edge", "X-Forwarded-For: 203.0.113.5\r\n").status == 200
    assert process.terminate() == 0  # a drain writes what the log buffered
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["listener"], e["client"]) for e in entries] == [("hop", "203.0.113.5"), ("edge", "127.0.0.1")]
