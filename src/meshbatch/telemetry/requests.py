"""Per-request accounting for a listener: counts by route and status, latency, local replies by reason."""

from __future__ import annotations

from meshbatch.http.message import Request, Response
from meshbatch.telemetry.metrics import Registry


class RequestStats:
    """The server's `observe` callback: called once per answered request, after the answer is written."""

    __slots__ = ("_duration", "_listener", "_local", "_requests")

    def __init__(self, listener: str, registry: Registry) -> None:
        self._listener = listener
        self._requests = registry.counter(
            "meshbatch_requests_total", "Requests answered, by listener, route and status.",
            ["listener", "route", "status"])
        self._duration = registry.histogram(
            "meshbatch_request_duration_seconds", "Time from request received to answer written.",
            ["listener", "route"])
        self._local = registry.counter(
            "meshbatch_local_replies_total", "Answers the proxy produced itself (errors), by status and reason.",
            ["listener", "status", "reason"])

    def __call__(self, request: Request, response: Response, seconds: float) -> None:
        route = request.route or "-"
        self._requests.inc((self._listener, route, str(response.status)))
        self._duration.labels((self._listener, route)).observe(seconds)
        if response.reason:
            self._local.inc((self._listener, str(response.status), response.reason))


__all__ = ["RequestStats"]
