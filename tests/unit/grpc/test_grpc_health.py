"""The grpc.health.v1 messages encoded by hand (grpc/health.py), checked against protobuf's own classes, and the
verdict on every kind of answer, hostile ones included."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2

from meshbatch.grpc import health
from meshbatch.grpc.framing import frame, unary
from meshbatch.http.message import Response
from testbed.grpc_batch import grpc_answer, trailers_only

R = health_pb2.HealthCheckResponse


@pytest.mark.parametrize("service", ["", "inventory.Inventory", "ünï"])
def test_the_request_is_what_protobuf_reads(service: str) -> None:
    message = unary(health.request_body(service))
    assert health_pb2.HealthCheckRequest.FromString(message).service == service


def _answer(status: int) -> Response:
    return grpc_answer(R(status=status).SerializeToString())  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "healthy", "seen"), [
    (R.SERVING, True, "serving"), (R.NOT_SERVING, False, "not_serving"), (R.UNKNOWN, False, "unknown"),
    (R.SERVICE_UNKNOWN, False, "service_unknown"),
])
def test_only_serving_is_healthy(status: int, healthy: bool, seen: str) -> None:
    assert health.verdict(_answer(status)) == (healthy, seen)


def test_errors_are_unhealthy() -> None:
    assert health.verdict(trailers_only(12, b"no such service")) == \
        (False, "grpc-status UNIMPLEMENTED: no such service")
    assert health.verdict(trailers_only(5)) == (False, "grpc-status NOT_FOUND")
    assert health.verdict(Response(503, [])) == (False, "HTTP 503")
    assert health.verdict(Response(200, [(b"content-type", b"application/grpc")], frame(b"\x08\x01"))) == \
        (False, "no grpc-status")
    assert health.verdict(trailers_only(99)) == (False, "grpc-status 99")


@pytest.mark.parametrize("body", [
    b"", frame(b"\x08"), frame(b"\x0a\x05ab"), frame(b"\x0a\x01a"), b"\x00\x00\x00\x00\x05\x08",
    frame(b"\x08\x01") * 2, b"\x00" + (10**6).to_bytes(4, "big"),
])
def test_malformed_answers_are_unhealthy_never_a_crash(body: bytes) -> None:
    response = grpc_answer(b"")
    response.body = body
    healthy, seen = health.verdict(response)
    assert not healthy and seen.startswith("malformed HealthCheckResponse"), seen


def test_unknown_fields_and_statuses_are_read_as_protobuf_does() -> None:
    assert health.serving_status(b"\x12\x03abc\x08\x01") == 1  # an unknown field first
    assert health.serving_status(b"") == 0
    assert health.verdict(grpc_answer(b"\x08\x07")) == (False, "7")
