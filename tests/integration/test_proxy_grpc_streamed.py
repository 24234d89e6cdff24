"""gRPC answers larger than the listener's buffer limit are streamed to the caller, and keep their trailers: the
status, the trailing metadata, and the proxy's repairs (a missing grpc-status is INTERNAL, a malformed one
UNKNOWN), with real grpcio clients and servers through `meshbatch run`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from testbed.config import cluster, config, listener, route
from testbed.grpc_upstream import GrpcUpstream, HostileGrpc
from testbed.proxy import MeshbatchProcess

BUFFER = 4096  # the smallest max_buffer_bytes: every answer below is several times larger


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {"good": GrpcUpstream("good").start(), "hostile": HostileGrpc().start()}
    yield made
    for server in made.values():
        server.stop()


@pytest.fixture(scope="module")
def channel(module_mesh: Any, servers: dict[str, Any]) -> Iterator[grpc.Channel]:
    routes = [route("hostile", "hostile", {"path_prefix": "/hostile.H/"}),
              route("echo", "grpc", {"path_prefix": "/test.Echo/"})]
    clusters = [cluster("grpc", servers["good"].address, protocol="http2"),
                cluster("hostile", servers["hostile"].address, protocol="http2")]
    process: MeshbatchProcess = module_mesh.start(config(
        [listener("main", routes, {"max_buffer_bytes": BUFFER}, codec="http2")], clusters))
    host, port = process.address("main")
    with grpc.insecure_channel(f"{host}:{port}") as chan:
        yield chan


def test_a_large_unary_answer_keeps_its_status_and_trailing_metadata(channel: grpc.Channel) -> None:
    message = b"x" * (20 * BUFFER)
    answer, call = channel.unary_unary("/test.Echo/Unary").with_call(message, timeout=10)
    assert answer == message and call.code() == grpc.StatusCode.OK
    assert ("x-trail", "done") in call.trailing_metadata() and ("x-upstream", "good") in call.trailing_metadata()


def test_a_long_server_stream_ends_with_its_status(channel: grpc.Channel) -> None:
    call = channel.unary_stream("/test.Echo/Stream")(b"5000", timeout=10)
    assert [int(m) for m in call] == list(range(5000))
    assert call.code() == grpc.StatusCode.OK


def test_a_large_error_answer_is_aborted_status_intact(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary("/test.Echo/Unary")(b"abort:NOT_FOUND:" + b"y" * (4 * BUFFER), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND  # (trailers-only: never streamed)


@pytest.mark.parametrize(("path", "code", "details"), [
    ("/hostile.H/LargeNoTrailers", grpc.StatusCode.INTERNAL, "upstream answer ended without grpc-status"),
    ("/hostile.H/LargeBadStatus", grpc.StatusCode.UNKNOWN, None),
])
def test_a_streamed_answer_gets_the_same_repairs(channel: grpc.Channel, path: str, code: grpc.StatusCode,
                                                 details: str | None) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary(path)(b"", timeout=10)
    assert raised.value.code() == code
    if details is not None:
        assert details in (raised.value.details() or "")
