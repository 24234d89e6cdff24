"""Helpers for the layer tests: real clusters (no sockets are opened), scripted handlers, fixed random draws."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from meshbatch.config import model
from meshbatch.errors import ProxyError
from meshbatch.http.message import Request, Response
from meshbatch.service import Call
from meshbatch.upstream.cluster import Cluster
from meshbatch.upstream.guard import ClusterGuard
from meshbatch.upstream.target import Target


def cluster(name: str = "c", *endpoints: str | dict[str, Any], lb: str = "round_robin",
            breakers: dict[str, Any] | None = None) -> Cluster:
    specs: list[Any] = list(endpoints) or ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    config = model.Cluster(name=name, endpoints=specs, lb=lb,
                           circuit_breakers=model.CircuitBreakers(**breakers) if breakers is not None else None)
    return Cluster(config, asyncio.get_running_loop())


def guard(c: Cluster, **breakers: Any) -> ClusterGuard:
    return ClusterGuard(c.name, model.CircuitBreakers(**breakers))


def target(c: Cluster, subset: dict[str, str] | None = None, fallback: bool = False, **breakers: Any) -> Target:
    return Target(c, guard(c, **breakers), subset, fallback)


def draws(*values: float) -> Callable[[], float]:
    """A random source returning `values` in turn (then the last one forever)."""
    items = list(values)

    def next_value() -> float:
        return items.pop(0) if len(items) > 1 else items[0]
    return next_value


class Script:
    """A service answering from a list: a status (int) or an error (ProxyError) per call; records the requests."""

    def __init__(self, outcomes: Iterable[int | ProxyError], delay: float = 0.0) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[Request] = []
        self.delay = delay

    async def __call__(self, call: Call) -> Response:
        self.calls.append(call.request)
        if self.delay:
            await asyncio.sleep(self.delay)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, ProxyError):
            raise outcome
        return Response(outcome, [], b"%d" % outcome)


def request(body: bytes = b"{}", headers: list[tuple[bytes, bytes]] | None = None, received_at: float = 0.0,
            client: str = "10.0.0.1") -> Call:
    """A caller's request as a route's layers receive it (a `Call`)."""
    if not received_at:
        received_at = asyncio.get_running_loop().time()
    return Call(Request(b"POST", b"/orders", list(headers or []), body, received_at=received_at, client=client))
