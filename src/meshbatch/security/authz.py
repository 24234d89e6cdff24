"""Authorization as layers that answer 401/403 themselves (never touching the upstream).

`ListenerGate` wraps a listener's router when the listener has policies or JWT validation: authenticate, then
authorize, before any route is matched (a denied caller learns nothing of the routes). `RouteGate` wraps a
route's handler when the route has policies of its own: a request must pass the listener's layer and then the
route's. Both keep the callback fast path of plain routes: `start` checks, then starts the exchange; a denied
request returns None from `start` and its answer comes from `__call__`, which reuses the decision (each request
is decided, and counted, once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshbatch.errors import BadRequest, Forbidden, PayloadTooLarge, ProxyError
from meshbatch.http.message import Handler, Request, Response
from meshbatch.proxy.fast import Exchange, Respond
from meshbatch.security.policy import Authorizer
from meshbatch.security.stats import SecurityStats
from meshbatch.security.tokens import JwtValidator

Start = Callable[[Request, Respond], Exchange | None]
_LISTENER = "authz.listener"
_ROUTE = "authz.route"
_PASSED = True


def _authorize(authorizer: Authorizer, request: Request, stats: SecurityStats, listener: str,
               scope: str) -> ProxyError | None:
    try:
        decision = authorizer.decide(request)
    except BadRequest as exc:
        stats.authz.inc((listener, scope, "", "ambiguous_path"))
        return exc
    stats.authz.inc((listener, scope, decision.policy, "allow" if decision.allowed else decision.reason))
    if decision.allowed:
        return None
    return Forbidden(decision.reason, "RBAC: access denied")


class ListenerGate:
    __slots__ = ("authorizer", "jwt", "listener", "router", "stats")

    def __init__(self, router: Any, authorizer: Authorizer | None, jwt: JwtValidator | None, listener: str,
                 stats: SecurityStats) -> None:
        self.router = router
        self.authorizer = authorizer
        self.jwt = jwt
        self.listener = listener
        self.stats = stats

    def _check(self, request: Request) -> ProxyError | bool:
        jwt = self.jwt
        if jwt is not None:
            error = jwt.authenticate(request)
            if error is not None:
                return error
        if self.authorizer is not None:
            refused = _authorize(self.authorizer, request, self.stats, self.listener, "listener")
            if refused is not None:
                return refused
        return _PASSED

    async def __call__(self, request: Request) -> Response:
        verdict = request.context.pop(_LISTENER, None)
        if verdict is None:
            verdict = self._check(request)
        if verdict is not _PASSED:
            assert isinstance(verdict, ProxyError)
            raise verdict
        response: Response = await self.router(request)
        return response

    def start(self, request: Request, respond: Respond) -> Exchange | None:
        verdict = self._check(request)
        if verdict is not _PASSED:
            request.context[_LISTENER] = verdict
            return None
        exchange: Exchange | None = self.router.start(request, respond)
        if exchange is None:
            request.context[_LISTENER] = _PASSED
        return exchange


class RouteGate:
    """A route's own policies around its handler (and its fast path, if it has one)."""

    __slots__ = ("_start", "authorizer", "handler", "listener", "route", "stats")

    def __init__(self, handler: Handler, start: Start | None, authorizer: Authorizer, listener: str, route: str,
                 stats: SecurityStats) -> None:
        self.handler = handler
        self._start = start
        self.authorizer = authorizer
        self.listener = listener
        self.route = route
        self.stats = stats

    async def __call__(self, request: Request) -> Response:
        verdict = request.context.pop(_ROUTE, None)
        if verdict is None:
            verdict = _authorize(self.authorizer, request, self.stats, self.listener, self.route) or _PASSED
        if verdict is not _PASSED:
            assert isinstance(verdict, ProxyError)
            raise verdict
        return await self.handler(request)

    def start(self, request: Request, respond: Respond) -> Exchange | None:
        verdict = _authorize(self.authorizer, request, self.stats, self.listener, self.route) or _PASSED
        if verdict is not _PASSED or self._start is None:
            request.context[_ROUTE] = verdict
            return None
        exchange = self._start(request, respond)
        if exchange is None:
            request.context[_ROUTE] = _PASSED
        return exchange


class ItemCap:
    """A batching route's handler behind a size check: one item may not exceed the batch's byte cap (413)."""

    __slots__ = ("handler", "max_bytes")

    def __init__(self, handler: Handler, max_bytes: int) -> None:
        self.handler = handler
        self.max_bytes = max_bytes

    async def __call__(self, request: Request) -> Response:
        if len(request.body) > self.max_bytes:
            raise PayloadTooLarge("item_too_large",
                                  f"an item of {len(request.body)} bytes exceeds the batch cap of {self.max_bytes}")
        return await self.handler(request)


__all__ = ["ItemCap", "ListenerGate", "RouteGate"]
