"""The one service interface, and a route's stack built from it.

A `Service` takes a `Call` and answers it, or raises a `ProxyError` for the proxy's own answer. Layers (retry,
timeout, rate limit ...) are services that wrap an inner one. A `Check` is a synchronous gate that refuses a call
before anything awaits (authorization, rate limits, size caps): it returns the error to answer, or None.

A route's `RouteStack` is its checks, its service, and, for a plain route with no layer that must await, a
`FastPath`: the same exchange driven by callbacks, with no task. A fast path that cannot start (no idle upstream
connection) returns None and the service runs instead; one that started answers through `respond` once, or with
None when the request must be replayed by the service (a reused connection found dead).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from meshbatch.errors import ProxyError
from meshbatch.http.message import Response
from meshbatch.http.serving import Pending  # what is under way, cancelled when the caller goes away
from meshbatch.service.call import Call

Respond = Callable[[Response | None], None]
Check = Callable[[Call], ProxyError | None]


class Service(Protocol):
    def __call__(self, call: Call, /) -> Awaitable[Response]: ...


class FastPath(Protocol):
    def __call__(self, call: Call, respond: Respond, /) -> Pending | None: ...


@dataclass(frozen=True, slots=True)
class RouteStack:
    """What a route does with a request, built once per config snapshot (runtime/stacks/)."""

    name: str
    kind: str  # plain | batch | ingest
    checks: tuple[Check, ...]
    service: Service
    fast: FastPath | None = None
    streams: bool = False  # takes a request body as it arrives (`request.upload`), else reads it whole first


__all__ = ["Check", "FastPath", "Pending", "Respond", "RouteStack", "Service"]
