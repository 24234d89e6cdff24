"""Which gRPC status stands for which HTTP status and for which of the proxy's own errors.

- `from_http`: a plain HTTP answer seen by a gRPC client, as grpc/grpc doc/http-grpc-status-mapping.txt says
  (400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE,
  anything else UNKNOWN).
- `for_error`: an answer the proxy makes itself. Its reason says more than its HTTP status, so the choice is
  Envoy's where Envoy makes one, by meaning: a deadline or timeout is DEADLINE_EXCEEDED (not the UNAVAILABLE of a
  504 from elsewhere), a full queue or a rate limit RESOURCE_EXHAUSTED (Envoy's local rate limit answers
  UNAVAILABLE unless `rate_limited_as_resource_exhausted`; RESOURCE_EXHAUSTED tells the client the proxy is
  shedding load rather than down, and gRPC clients do not retry it blindly), a body too large
  RESOURCE_EXHAUSTED (gRPC's own answer to a message over the limit), no route UNAVAILABLE (the contract's
  answer, as for no endpoint: a route may appear with the next config, and the caller's channel may reach
  another proxy that has it).
- `to_http`: the HTTP status that stands for a gRPC status inside the batching core (retry conditions, batch
  isolation, metrics), as google.rpc.Code documents and grpc-gateway maps it.
"""

from __future__ import annotations

from meshbatch.errors import ProxyError
from meshbatch.grpc.status import GrpcStatus

S = GrpcStatus

_FROM_HTTP = {400: S.INTERNAL, 401: S.UNAUTHENTICATED, 403: S.PERMISSION_DENIED, 404: S.UNIMPLEMENTED,
              429: S.UNAVAILABLE, 502: S.UNAVAILABLE, 503: S.UNAVAILABLE, 504: S.UNAVAILABLE}

# The proxy's own answers by HTTP status (errors.py), where the reason does not say more.
_BY_STATUS = {400: S.INTERNAL, 401: S.UNAUTHENTICATED, 403: S.PERMISSION_DENIED, 404: S.UNIMPLEMENTED,
              405: S.UNIMPLEMENTED, 408: S.DEADLINE_EXCEEDED, 413: S.RESOURCE_EXHAUSTED,
              415: S.INTERNAL, 429: S.RESOURCE_EXHAUSTED, 431: S.RESOURCE_EXHAUSTED, 500: S.INTERNAL,
              502: S.UNAVAILABLE, 503: S.UNAVAILABLE, 504: S.DEADLINE_EXCEEDED}

# Reasons whose meaning is narrower than their HTTP status.
_BY_REASON = {
    "bad_upstream_response": S.INTERNAL,    # a batch answer that cannot be split: the contract's INTERNAL
    "codec_error": S.INTERNAL,
    "internal_error": S.INTERNAL,
    "upstream_reset": S.UNAVAILABLE,
    "upstream_refused_stream": S.UNAVAILABLE,  # an HTTP/2 upstream never processed it: safe to try elsewhere
    "upstream_connect_failed": S.UNAVAILABLE,
    "connect_timeout": S.UNAVAILABLE,        # nothing was sent: the client may try elsewhere
    "draining": S.UNAVAILABLE,
    "no_route": S.UNAVAILABLE,
    "method_not_allowed": S.UNIMPLEMENTED,
    # A gRPC caller's own message that cannot be batched (batching/codecs/grpc_answers.py).
    "grpc_bad_message": S.INTERNAL,
    "grpc_message_too_large": S.RESOURCE_EXHAUSTED,
    "grpc_encoding_unsupported": S.UNIMPLEMENTED,
    "grpc_method_not_batched": S.UNIMPLEMENTED,
}

_TO_HTTP = {S.OK: 200, S.CANCELLED: 499, S.UNKNOWN: 500, S.INVALID_ARGUMENT: 400, S.DEADLINE_EXCEEDED: 504,
            S.NOT_FOUND: 404, S.ALREADY_EXISTS: 409, S.PERMISSION_DENIED: 403, S.RESOURCE_EXHAUSTED: 429,
            S.FAILED_PRECONDITION: 400, S.ABORTED: 409, S.OUT_OF_RANGE: 400, S.UNIMPLEMENTED: 501,
            S.INTERNAL: 500, S.UNAVAILABLE: 503, S.DATA_LOSS: 500, S.UNAUTHENTICATED: 401}

# google.rpc.Code's HTTP statuses read back (a consumer's per-item error given as an HTTP status).
_SEMANTIC = {400: S.INVALID_ARGUMENT, 401: S.UNAUTHENTICATED, 403: S.PERMISSION_DENIED, 404: S.NOT_FOUND,
             409: S.ABORTED, 412: S.FAILED_PRECONDITION, 413: S.RESOURCE_EXHAUSTED, 422: S.INVALID_ARGUMENT,
             429: S.RESOURCE_EXHAUSTED, 499: S.CANCELLED, 500: S.INTERNAL, 501: S.UNIMPLEMENTED,
             503: S.UNAVAILABLE, 504: S.DEADLINE_EXCEEDED}


def from_http(status: int) -> GrpcStatus:
    """A plain HTTP answer's gRPC status (the gRPC spec's mapping); 2xx is not an error here: UNKNOWN."""
    return _FROM_HTTP.get(status, S.UNKNOWN)


def for_status(status: int) -> GrpcStatus:
    """The gRPC status of an answer the proxy made with this HTTP status."""
    found = _BY_STATUS.get(status)
    if found is not None:
        return found
    return S.INTERNAL if 500 <= status < 600 else S.UNKNOWN


def for_reason(reason: str, status: int) -> GrpcStatus:
    """The gRPC status of a proxy-made answer from its stable reason, else from its HTTP status."""
    found = _BY_REASON.get(reason)
    if found is None:  # (fault_injected too: the status injected says what it stands for)
        if reason.startswith("upstream_status_"):  # a batch call refused by an upstream speaking plain HTTP
            return from_http(status if status != 502 else _upstream_status(reason))
        return for_status(status)
    return found


def _upstream_status(reason: str) -> int:
    number = reason.rpartition("_")[2]
    return int(number) if number.isdigit() else 502


def for_error(error: ProxyError) -> GrpcStatus:
    return for_reason(error.reason, error.status)


def to_http(status: GrpcStatus | int) -> int:
    """The HTTP status the batching core reads for a gRPC status (an unknown code counts as UNKNOWN: 500)."""
    try:
        return _TO_HTTP[S(status)]
    except ValueError:
        return 500


def from_item_http(status: int) -> GrpcStatus:
    """The gRPC status of a per-item answer given as an HTTP status (google.rpc.Code's table read back):
    the meaning of a handler's `ItemError(422)` is INVALID_ARGUMENT, not the transport mapping's UNKNOWN."""
    if 200 <= status < 300:
        return S.OK
    found = _SEMANTIC.get(status)
    if found is not None:
        return found
    return S.INTERNAL if status >= 500 else S.FAILED_PRECONDITION if status >= 400 else S.UNKNOWN


__all__ = ["for_error", "for_reason", "for_status", "from_http", "from_item_http", "to_http"]
