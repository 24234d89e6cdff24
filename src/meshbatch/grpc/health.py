"""The standard gRPC health-checking protocol (grpc/grpc doc/health-checking.md, `grpc.health.v1.Health/Check`),
encoded by hand: two one-field messages do not need protobuf.

    message HealthCheckRequest { string service = 1; }
    message HealthCheckResponse { enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2;
                                                       SERVICE_UNKNOWN = 3; } ServingStatus status = 1; }

`verdict` judges an answer: healthy only for an HTTP 200, grpc-status OK and SERVING; anything else (NOT_SERVING,
UNKNOWN, SERVICE_UNKNOWN, a gRPC error such as UNIMPLEMENTED from a server without the service, a malformed
message) is unhealthy, with what was seen.
"""

from __future__ import annotations

from meshbatch.grpc.framing import FramingError, frame, unary
from meshbatch.grpc.replies import CONTENT_TYPE, status_of
from meshbatch.grpc.status import GrpcStatus
from meshbatch.grpc.wire import VARINT, MalformedMessage, delimited, fields
from meshbatch.http.message import Headers, Response

PATH = b"/grpc.health.v1.Health/Check"
SERVING_STATUSES = ("unknown", "serving", "not_serving", "service_unknown")
SERVING = 1
MAX_ANSWER = 4096  # a HealthCheckResponse is a few bytes


def request_body(service: str) -> bytes:
    """A framed HealthCheckRequest (an empty service: the server as a whole)."""
    return frame(delimited(1, service.encode("utf-8")) if service else b"")


def request_headers(authority: str) -> Headers:
    return [(b"host", authority.encode()), (b"content-type", CONTENT_TYPE), (b"te", b"trailers"),
            (b"user-agent", b"meshbatch-health-check")]


def serving_status(message: bytes) -> int:
    """The `status` of a HealthCheckResponse (0 when absent, as proto3 reads it); MalformedMessage."""
    status = 0
    for number, wire_type, value in fields(message):
        if number == 1:
            if wire_type != VARINT or not isinstance(value, int):
                raise MalformedMessage("status is not a varint")
            status = value
    return status


def verdict(response: Response) -> tuple[bool, str]:
    """(healthy, what was seen) for an answer to Check."""
    if response.status != 200:
        return False, f"HTTP {response.status}"
    found = status_of(response)
    if found is None:
        return False, "no grpc-status"
    code, message = found
    if code != GrpcStatus.OK:
        name = GrpcStatus(code).name if code in GrpcStatus._value2member_map_ else str(code)
        return False, f"grpc-status {name}" + (f": {message[:200]}" if message else "")
    try:
        status = serving_status(unary(response.body, max_size=MAX_ANSWER))
    except (FramingError, MalformedMessage) as exc:
        return False, f"malformed HealthCheckResponse: {exc}"
    label = SERVING_STATUSES[status] if 0 <= status < len(SERVING_STATUSES) else str(status)
    return status == SERVING, label


__all__ = ["PATH", "SERVING", "request_body", "request_headers", "serving_status", "verdict"]
