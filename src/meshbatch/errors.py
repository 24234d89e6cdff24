"""One error tree for everything the proxy answers itself, mapped to a status code, a reason and a flag.

Reasons are stable snake_case strings: they appear in the JSON body `{"error", "reason"}`, in /metrics
(`meshbatch_local_replies_total{reason=...}`) and in access logs. Flags follow Envoy's response flags.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson

_PHRASES: dict[int, str] = {}  # status -> its reason phrase in lower case (a few statuses: the classes' own)
_BODIES: dict[tuple[int, str, str], bytes] = {}  # (status, reason, detail) -> the JSON body, bounded
BODIES_KEPT = 512  # distinct bodies kept; the table is emptied when full (details can be the caller's words)


class ProxyError(Exception):
    """An error the proxy answers itself. Subclasses fix status and flag; the reason names the cause."""

    status = 500
    flag = "-"
    default_reason = "internal_error"

    def __init__(self, reason: str | None = None, detail: str = "") -> None:
        self.reason = reason or self.default_reason
        self.detail = detail
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)

    @property
    def error(self) -> str:
        phrase = _PHRASES.get(self.status)
        if phrase is None:  # the HTTPStatus look-up costs more than the rest of a refusal's answer
            phrase = _PHRASES[self.status] = HTTPStatus(self.status).phrase.lower()
        return phrase

    def body(self) -> bytes:
        """`{"error", "reason"[, "detail"]}`, encoded once per distinct answer: a refusal storm (producers that
        send again at once after a 429) answers the same body thousands of times a second."""
        key = (self.status, self.reason, self.detail)
        body = _BODIES.get(key)
        if body is None:
            payload: dict[str, str] = {"error": self.error, "reason": self.reason}
            if self.detail:
                payload["detail"] = self.detail
            body = orjson.dumps(payload)
            if len(_BODIES) >= BODIES_KEPT:
                _BODIES.clear()
            _BODIES[key] = body
        return body


class BadRequest(ProxyError):
    status, flag, default_reason = 400, "DPE", "bad_request"


class Forbidden(ProxyError):
    status, flag, default_reason = 403, "UAEX", "denied"


class NoRoute(ProxyError):
    status, flag, default_reason = 404, "NR", "no_route"


class MethodNotAllowed(ProxyError):
    status, flag, default_reason = 405, "-", "method_not_allowed"


class RequestTimeout(ProxyError):
    status, flag, default_reason = 408, "DT", "header_timeout"


class PayloadTooLarge(ProxyError):
    status, flag, default_reason = 413, "DPE", "body_too_large"


class HeadersTooLarge(ProxyError):
    status, flag, default_reason = 431, "DPE", "headers_too_large"


class Overloaded(ProxyError):
    """429: queue full or rate limited; carries a Retry-After in seconds."""

    status, flag, default_reason = 429, "UO", "overloaded"

    def __init__(self, reason: str | None = None, detail: str = "", retry_after: float = 1.0) -> None:
        super().__init__(reason, detail)
        self.retry_after = retry_after


class BadGateway(ProxyError):
    status, flag, default_reason = 502, "UPE", "bad_upstream_response"


class UpstreamReset(BadGateway):
    flag, default_reason = "UR", "upstream_reset"


class Unavailable(ProxyError):
    status, flag, default_reason = 503, "UH", "no_healthy_upstream"


class ConnectFailed(Unavailable):
    flag, default_reason = "UF", "upstream_connect_failed"


class StreamRefused(Unavailable):
    """503: an HTTP/2 upstream refused a stream before processing it (RST_STREAM REFUSED_STREAM, or a stream above
    the last one its GOAWAY says it processed): safe to send again, whatever the method."""

    flag, default_reason = "UR", "upstream_refused_stream"


class PoolOverflow(Unavailable):
    flag, default_reason = "UO", "upstream_pool_overflow"


class GatewayTimeout(ProxyError):
    status, flag, default_reason = 504, "UT", "upstream_timeout"


class ConnectTimeout(GatewayTimeout):
    flag, default_reason = "UF", "connect_timeout"


class DeadlineExceeded(GatewayTimeout):
    flag, default_reason = "DX", "deadline_exceeded"


class Draining(Unavailable):
    flag, default_reason = "DC", "draining"


class CircuitOpen(Unavailable):
    """503: a circuit breaker of the cluster (a threshold, or every endpoint's breaker) refused the request."""

    flag, default_reason = "UO", "circuit_open"


class ConcurrencyLimited(Unavailable):
    """503: the route's adaptive concurrency limit is reached (the upstream is saturated)."""

    flag, default_reason = "UO", "concurrency_limited"


class RateLimited(Overloaded):
    """429 with Retry-After: a local rate limit (a route's, a connection's, a peer's) refused the request."""

    flag, default_reason = "RL", "rate_limited"


class FaultInjected(ProxyError):
    """An abort injected by the route's fault policy, with the configured status."""

    flag, default_reason = "FI", "fault_injected"

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__("fault_injected", detail)
        self.status = status


__all__ = [
    "BadGateway",
    "BadRequest",
    "CircuitOpen",
    "ConcurrencyLimited",
    "ConnectFailed",
    "ConnectTimeout",
    "DeadlineExceeded",
    "Draining",
    "FaultInjected",
    "Forbidden",
    "GatewayTimeout",
    "HeadersTooLarge",
    "MethodNotAllowed",
    "NoRoute",
    "Overloaded",
    "PayloadTooLarge",
    "PoolOverflow",
    "ProxyError",
    "RateLimited",
    "RequestTimeout",
    "StreamRefused",
    "Unavailable",
    "UpstreamReset",
]
