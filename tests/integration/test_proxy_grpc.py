"""gRPC proxied through plain routes of `meshbatch run`, with real grpcio clients and servers: unary, server
streaming and bidi calls with their metadata and statuses intact; every answer the proxy makes itself seen by
the client as its gRPC status; grpc-timeout as the deadline and passed on reduced; retries on UNAVAILABLE; the
grpc.health.v1 active check; metrics by grpc-status; hostile upstream answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from meshbatch.grpc.framing import frame
from testbed.config import cluster, config, listener, route
from testbed.grpc_upstream import GrpcUpstream, HostileGrpc
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.upstream import UpstreamServer

UNARY, BUDGET, STREAM, BIDI = "/test.Echo/Unary", "/test.Echo/Budget", "/test.Echo/Stream", "/test.Echo/Bidi"
DENY_TENANT = [{"name": "no-evil", "action": "DENY",
                "rules": [{"when": [{"key": "request.headers[x-tenant]", "values": ["evil"]}]}]}]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {"good": GrpcUpstream("good").start(), "down": GrpcUpstream("down").start(),
                            "checked": GrpcUpstream("checked").start(), "hostile": HostileGrpc().start()}
    made["down"].fail_with = grpc.StatusCode.UNAVAILABLE
    yield made
    for server in made.values():
        server.stop()


def _dead_address() -> str:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, servers: dict[str, Any], upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    h2 = {"protocol": "http2"}
    routes = [
        route("slow", "grpc", {"path": "/test.Echo/Slow"}, timeout_ms=200),
        route("budget", "grpc", {"path": BUDGET}, timeout_ms=5000),
        route("retried", "flaky", {"path_prefix": "/retry.Echo/"}, timeout_ms=5000,
              retry={"retry_on": ["unavailable"], "num_retries": 3, "backoff": {"base_ms": 1}}),
        route("dead", "dead", {"path_prefix": "/dead.Echo/"}),
        route("http", "http1", {"path_prefix": "/http.Echo/"}),
        route("hostile", "hostile", {"path_prefix": "/hostile.H/"}),
        route("echo", "grpc", {"path_prefix": "/test.Echo/"}, policies=DENY_TENANT),
    ]
    clusters = [
        cluster("grpc", servers["good"].address, **h2),
        cluster("flaky", servers["down"].address, servers["good"].address, **h2),
        cluster("dead", _dead_address(), **h2),
        cluster("http1", upstreams["a"].address),
        cluster("hostile", servers["hostile"].address, **h2),
        cluster("checked", servers["checked"].address, **h2,
                health_check={"type": "grpc", "interval_ms": 100, "timeout_ms": 500, "unhealthy_threshold": 1,
                              "healthy_threshold": 1}),
        cluster("unanswered", servers["hostile"].address, **h2,  # a Check answer without grpc-status
                health_check={"type": "grpc", "service": "x", "interval_ms": 100, "timeout_ms": 500,
                              "unhealthy_threshold": 1, "healthy_threshold": 1}),
    ]
    listeners = [listener("main", routes, codec="http2"),
                 listener("small", [route("small", "grpc")], {"max_body_bytes": 65_536}, codec="http2")]
    process: MeshbatchProcess = module_mesh.start(config(listeners, clusters))
    return process


@pytest.fixture(scope="module")
def channel(proxy: MeshbatchProcess) -> Iterator[grpc.Channel]:
    host, port = proxy.address("main")
    with grpc.insecure_channel(f"{host}:{port}") as chan:
        yield chan


def unary(channel: grpc.Channel, method: str, request: bytes, **kwargs: Any) -> Any:
    return channel.unary_unary(method).with_call(request, timeout=kwargs.pop("timeout", 5), **kwargs)


def code_of(channel: grpc.Channel, method: str, request: bytes = b"x", **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        unary(channel, method, request, **kwargs)
    return caught.value


def test_unary_with_metadata_and_trailing_metadata(channel: grpc.Channel) -> None:
    answer, call = unary(channel, UNARY, b"hello", metadata=(("x-meta", "m1"),))
    assert answer == b"hello"
    assert ("x-echo", "m1") in call.initial_metadata()
    trailing = dict(call.trailing_metadata())
    assert trailing["x-trail"] == "done" and trailing["x-upstream"] == "good"
    assert call.code() == grpc.StatusCode.OK


def test_upstream_status_and_message_pass_through(channel: grpc.Channel) -> None:
    error = code_of(channel, UNARY, "abort:NOT_FOUND:no such thing: ünïcode %".encode())
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no such thing: ünïcode %"


def test_server_streaming_and_bidi(channel: grpc.Channel) -> None:
    assert list(channel.unary_stream(STREAM)(b"5", timeout=5)) == [b"0", b"1", b"2", b"3", b"4"]
    answers = channel.stream_stream(BIDI)(iter([b"a", b"bc", b"def"]), timeout=5)
    assert list(answers) == [b"A", b"BC", b"DEF"]


@pytest.mark.parametrize(("method", "metadata", "code"), [
    ("/nowhere.Service/Method", (), grpc.StatusCode.UNAVAILABLE),              # no route (404)
    ("/dead.Echo/Unary", (), grpc.StatusCode.UNAVAILABLE),                    # connect failure (503)
    (UNARY, (("x-tenant", "evil"),), grpc.StatusCode.PERMISSION_DENIED),       # a policy (403)
    ("/test.Echo/Slow", (), grpc.StatusCode.DEADLINE_EXCEEDED),               # the route's timeout (504)
    ("/http.Echo/status/502", (), grpc.StatusCode.UNAVAILABLE),               # an HTTP/1.1 502, no grpc-status
    ("/http.Echo/status/403", (), grpc.StatusCode.PERMISSION_DENIED),         # the spec's HTTP mapping
    ("/http.Echo/echo", (), grpc.StatusCode.UNKNOWN),                         # a 200 that is not gRPC
])
def test_answers_of_the_proxy_are_grpc_statuses(channel: grpc.Channel, method: str,
                                                metadata: tuple[tuple[str, str], ...],
                                                code: grpc.StatusCode) -> None:
    error = code_of(channel, method, b"sleep:1000", metadata=metadata)
    assert error.code() == code, error.details()


def test_a_body_too_large_is_resource_exhausted(proxy: MeshbatchProcess) -> None:
    host, port = proxy.address("small")  # answered by the HTTP/2 connection, before any route is looked for
    with grpc.insecure_channel(f"{host}:{port}") as small:
        error = code_of(small, UNARY, b"x" * 100_000)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "body_too_large" in (error.details() or "")


def test_grpc_timeout_is_the_deadline_and_goes_upstream_reduced(channel: grpc.Channel,
                                                                 servers: dict[str, Any],
                                                                 proxy: MeshbatchProcess) -> None:
    answer, _ = unary(channel, BUDGET, b"sleep:0", timeout=2.0)
    assert 0.5 < float(answer) <= 2.05  # what the upstream was given: the caller's budget less the time spent
    # (2.05: grpc-timeout is rounded up to its unit on each hop, never down)
    error = code_of(channel, BUDGET, b"sleep:3000", timeout=0.3)  # the route allows 5 s; the caller 0.3 s
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The proxy's own enforcement, seen by a client that sends grpc-timeout but does not keep the deadline itself
    before = _grpc_count(proxy, "budget", "deadline-exceeded")
    started = time.monotonic()
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        answer = client.post(proxy.url("main", BUDGET), content=frame(b"sleep:3000"),
                             headers={"content-type": "application/grpc", "te": "trailers", "grpc-timeout": "300m"})
    assert time.monotonic() - started < 2
    assert (answer.status_code, answer.headers["grpc-status"]) == (200, "4")  # DEADLINE_EXCEEDED, trailers-only
    # the proxy's timer and the upstream's (it got the reduced grpc-timeout) fire at about the same moment: either
    # answer is the caller's deadline kept, counted once
    assert answer.headers["grpc-message"].startswith(("upstream_timeout", "Deadline Exceeded"))
    assert _grpc_count(proxy, "budget", "deadline-exceeded") == before + 1


def test_retry_on_unavailable_reaches_the_second_endpoint(channel: grpc.Channel, servers: dict[str, Any]) -> None:
    down_before = servers["down"].calls
    for i in range(6):
        answer, call = unary(channel, "/retry.Echo/Unary", f"r{i}".encode())
        assert answer == f"r{i}".encode()
        assert dict(call.trailing_metadata())["x-upstream"] == "good"
    assert servers["down"].calls > down_before  # some went there first, and were retried


def test_grpc_health_check_follows_the_servicer(proxy: MeshbatchProcess, servers: dict[str, Any]) -> None:
    checked = servers["checked"]

    def state() -> str:
        body = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()
        found = next(c for c in body["clusters"] if c["name"] == "checked")
        return str(found["endpoints"][0]["health"])

    def wait_for(wanted: str) -> None:
        deadline = time.monotonic() + 10
        while state() != wanted:
            assert time.monotonic() < deadline, f"still {state()}"
            time.sleep(0.05)

    wait_for("healthy")
    checked.set_serving(False)
    try:
        wait_for("unhealthy")
    finally:
        checked.set_serving(True)
    wait_for("healthy")


def test_a_health_answer_without_status_is_unhealthy(proxy: MeshbatchProcess) -> None:
    deadline = time.monotonic() + 10
    while True:
        body = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()
        found = next(c for c in body["clusters"] if c["name"] == "unanswered")
        checks = next(iter(found["health_checks"].values()))
        if checks["last"] == "no grpc-status":
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    assert found["endpoints"][0]["health"] == "unhealthy"


def test_metrics_count_by_grpc_status(channel: grpc.Channel, proxy: MeshbatchProcess) -> None:
    ok = _grpc_count(proxy, "echo", "ok")
    unavailable = _grpc_count(proxy, "-", "unavailable")
    unary(channel, UNARY, b"count me")
    code_of(channel, "/nowhere.Service/Method")
    assert _grpc_count(proxy, "echo", "ok") == ok + 1
    assert _grpc_count(proxy, "-", "unavailable") == unavailable + 1  # no route


def test_hostile_upstream_answers(channel: grpc.Channel) -> None:
    huge = code_of(channel, "/hostile.H/HugeMessage")  # 20 kB of grpc-message: cut, the status kept
    assert huge.code() == grpc.StatusCode.INTERNAL
    assert 4000 <= len(huge.details() or "") <= 4100
    bad = code_of(channel, "/hostile.H/BadStatus")
    assert bad.code() == grpc.StatusCode.UNKNOWN
    missing = code_of(channel, "/hostile.H/NoTrailers")
    assert missing.code() == grpc.StatusCode.INTERNAL
    assert "without grpc-status" in (missing.details() or "")


def _grpc_count(proxy: MeshbatchProcess, route_name: str, status: str) -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    return metric_value(text, "meshbatch_grpc_requests_total", listener="main", route=route_name,
                        grpc_status=status)
