"""Per-request accounting for a listener: counts by route and status, latency, local replies by reason, and gRPC
calls by route and grpc-status (`meshbatch_grpc_requests_total`; looked for only on HTTP/2 answers, so an
HTTP/1.1 request pays one comparison)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from meshbatch.grpc.replies import status_of
from meshbatch.grpc.status import GrpcStatus
from meshbatch.http.message import Request, Response
from meshbatch.telemetry.metrics import Counter, Histogram, HistogramVec, Metric, Registry

_LISTED: Final = 600  # statuses counted in a list (0-599); the rare others (llhttp reads any three digits) in a dict


class RequestStats:
    """The server's `observe` callback: called once per answered request, after the answer is written.

    Counts go into plain dicts, per route by status; label strings are made only when scraped.
    """

    __slots__ = ("_grpc", "_listener", "_local", "_routes")

    def __init__(self, listener: str, registry: Registry) -> None:
        self._listener = listener
        # per route: answers by status (a list indexed by status below 600, a dict for the rare others), and the
        # duration histogram (one look-up per request, no key tuple)
        self._routes: dict[str, tuple[list[int], dict[int, int], Histogram]] = {}
        self._local: dict[tuple[int, str], int] = {}
        self._grpc: dict[tuple[str, int], int] = {}
        registry.add_source(self.metrics)

    def __call__(self, request: Request, response: Response, seconds: float) -> None:
        route = request.route or "-"
        entry = self._routes.get(route)
        if entry is None:
            entry = self._routes[route] = ([0] * _LISTED, {}, Histogram())
        status = response.status
        if 0 <= status < _LISTED:
            entry[0][status] += 1
        else:
            others = entry[1]
            others[status] = others.get(status, 0) + 1
        entry[2].observe(seconds)
        if response.reason:
            local = (response.status, response.reason)
            self._local[local] = self._local.get(local, 0) + 1
        if request.version == b"2":
            code = grpc_status(response)
            if code is not None:
                grpc = (route, code)
                self._grpc[grpc] = self._grpc.get(grpc, 0) + 1

    def metrics(self) -> Iterator[Metric]:
        lst = self._listener
        requests = Counter("meshbatch_requests_total", "Requests answered, by listener, route and status.",
                           ["listener", "route", "status"])
        durations = HistogramVec("meshbatch_request_duration_seconds",
                                 "Seconds from request received to answer written.", ["listener", "route"])
        for route, (listed, others, hist) in self._routes.items():
            for status, n in _statuses(listed, others).items():
                requests.values[(lst, route, str(status))] = n
            durations.series[(lst, route)] = hist
        yield requests
        yield durations
        local = Counter("meshbatch_local_replies_total",
                        "Answers the proxy produced itself (errors), by status and reason.",
                        ["listener", "status", "reason"])
        for (status, reason), n in self._local.items():
            local.values[(lst, str(status), reason)] = n
        yield local
        grpc = Counter("meshbatch_grpc_requests_total",
                       "gRPC calls answered, by listener, route and grpc-status (its name: ok, unavailable, ...).",
                       ["listener", "route", "grpc_status"])
        for (route, code), n in self._grpc.items():
            grpc.values[(lst, route, status_label(code))] = n
        yield grpc

    def grpc_count(self, route: str, code: int) -> int:
        return self._grpc.get((route, code), 0)

    def count(self, route: str, status: int) -> int:
        entry = self._routes.get(route)
        if entry is None:
            return 0
        return entry[0][status] if 0 <= status < _LISTED else entry[1].get(status, 0)

    def by_route(self) -> dict[str, tuple[dict[int, int], Histogram | None]]:
        """Per route: answers by status, and the duration histogram (read by the dashboard)."""
        return {route: (_statuses(listed, others), hist) for route, (listed, others, hist) in self._routes.items()}


def _statuses(listed: list[int], others: dict[int, int]) -> dict[int, int]:
    """Answers by status, in status order."""
    counts = {status: n for status, n in enumerate(listed) if n}
    counts.update(others)
    return dict(sorted(counts.items()))


def grpc_status(response: Response) -> int | None:
    """The grpc-status of a gRPC answer (content-type application/grpc...), None for any other answer (a streamed
    answer is observed when it is over, with its trailers)."""
    for name, value in response.headers:
        if name == b"content-type":
            if value.startswith(b"application/grpc"):
                found = status_of(response)
                return found[0] if found is not None else None
            return None
    return None


def status_label(code: int) -> str:
    try:
        return GrpcStatus(code).label
    except ValueError:
        return str(code)


__all__ = ["RequestStats", "grpc_status", "status_label"]
