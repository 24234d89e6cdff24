"""Fault injection: delay a share of requests, abort a share with a chosen status (as Envoy's fault filter).

Configured on a route (`fault.delay`, `fault.abort`, each with a `percent`), or asked for per request when
the route sets `fault.from_headers` (for tests; a caller must not be able to do this in production):
    x-meshbatch-fault-delay-ms: 200          x-meshbatch-fault-delay-percent: 50   (default 100)
    x-meshbatch-fault-abort: 503             x-meshbatch-fault-abort-percent: 10   (default 100)
Header values that are not numbers in range are ignored. A delay counts against the route's deadline: one
longer than what is left is answered 504 `upstream_timeout` when the deadline comes (a slow upstream would
be). An abort is a local reply with the status, reason `fault_injected`, flag FI; a delayed answer has flag
DI. With `max_active`, requests beyond that many faults under way pass untouched.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from http import HTTPStatus

from meshbatch.config.plain import Fault
from meshbatch.errors import FaultInjected, GatewayTimeout
from meshbatch.http.message import Request, Response
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.layers.timeout import route_deadline
from meshbatch.service import Call, Service

DELAY_HEADER = b"x-meshbatch-fault-delay-ms"
DELAY_PERCENT_HEADER = b"x-meshbatch-fault-delay-percent"
ABORT_HEADER = b"x-meshbatch-fault-abort"
ABORT_PERCENT_HEADER = b"x-meshbatch-fault-abort-percent"
STATUSES = frozenset(s.value for s in HTTPStatus if 200 <= s.value < 600)


def _number(value: bytes | None, low: float, high: float) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if low <= number <= high else None


def _percent(value: bytes | None) -> float:
    percent = _number(value, 0, 100)
    return 100.0 if percent is None else percent


class FaultPlan:
    """Decides, per request, the delay (seconds, 0 for none) and the abort status (0 for none)."""

    __slots__ = ("_random", "config")

    def __init__(self, config: Fault, rng: Callable[[], float] | None = None) -> None:
        self.config = config
        self._random = rng or random.random

    def _hit(self, percent: float) -> bool:
        return percent >= 100 or (percent > 0 and self._random() * 100 < percent)

    def decide(self, request: Request) -> tuple[float, int]:
        config = self.config
        delay_ms, delay_percent = (config.delay.fixed_ms, config.delay.percent) if config.delay else (0.0, 0.0)
        status, abort_percent = (config.abort.status, config.abort.percent) if config.abort else (0, 0.0)
        if config.from_headers:
            asked = _number(request.header(DELAY_HEADER), 0, 86_400_000)
            if asked is not None:
                delay_ms = asked
                delay_percent = _percent(request.header(DELAY_PERCENT_HEADER))
            code = _number(request.header(ABORT_HEADER), 200, 599)
            if code is not None and int(code) in STATUSES:
                status = int(code)
                abort_percent = _percent(request.header(ABORT_PERCENT_HEADER))
        delay = delay_ms / 1000 if delay_ms and self._hit(delay_percent) else 0.0
        abort = status if status and self._hit(abort_percent) else 0
        return delay, abort


class FaultLayer:
    __slots__ = ("active", "inner", "loop", "metrics", "plan", "route", "timeout")

    def __init__(self, inner: Service, plan: FaultPlan, route: str, timeout: float,
                 loop: asyncio.AbstractEventLoop, metrics: LayerMetrics | None = None) -> None:
        self.inner = inner
        self.plan = plan
        self.route = route
        self.timeout = timeout
        self.loop = loop
        self.metrics = metrics
        self.active = 0

    async def __call__(self, call: Call) -> Response:
        delay, abort = self.plan.decide(call.request)
        limit = self.plan.config.max_active
        if not (delay or abort) or (limit is not None and self.active >= limit):
            return await self.inner(call)
        self.active += 1
        try:
            if delay:
                self._count("delay")
                now = self.loop.time()
                left = route_deadline(call, self.timeout, now) - now
                if delay >= left:
                    await asyncio.sleep(max(left, 0.0))
                    raise GatewayTimeout("upstream_timeout", "the injected delay outlived the route's deadline")
                await asyncio.sleep(delay)
            if abort:
                self._count("abort")
                raise FaultInjected(abort, f"fault injected by route {self.route!r}")
        finally:
            self.active -= 1
        response = await self.inner(call)
        if response.flag == "-":
            response.flag = "DI"
        return response

    def _count(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.faults.inc((self.route, kind))


__all__ = ["ABORT_HEADER", "ABORT_PERCENT_HEADER", "DELAY_HEADER", "DELAY_PERCENT_HEADER", "FaultLayer",
           "FaultPlan"]
