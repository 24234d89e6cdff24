"""The route's deadline, fixed once per request before anything else runs.

The deadline is `timeout_ms` after the request was received, or sooner when the caller says so with
`x-meshbatch-deadline-ms` (its remaining budget) or, on HTTP/2, gRPC's `grpc-timeout` (grpc/timeout.py): the
smallest wins.
A gRPC caller's budget is passed on: each attempt sends `grpc-timeout` upstream as the time left to it
(`upstream_timeout`), so the upstream stops working when the proxy stops waiting (Envoy does the same with
`max_grpc_timeout`). A caller whose budget is already spent is answered 504
`deadline_exceeded` before anything is sent. Every later stage works within it: fault delays, backoff before
a retry, each attempt (whose own deadline is at most `per_try_timeout_ms` after it starts).
"""

from __future__ import annotations

import asyncio
import math
from typing import Final

from meshbatch.errors import BadRequest, DeadlineExceeded
from meshbatch.grpc import timeout as grpc_timeout
from meshbatch.http.message import Headers, Response
from meshbatch.service import Call, Service

DEADLINE_HEADER: Final = b"x-meshbatch-deadline-ms"  # as the batcher reads it (batching/admission.py)
GRPC_TIMEOUT: Final = grpc_timeout.HEADER


def caller_budget(value: bytes) -> float:
    """Seconds from `x-meshbatch-deadline-ms` (a decimal number of milliseconds); 400 when it is not one."""
    try:
        ms = float(value)
    except ValueError:
        ms = math.nan
    if not math.isfinite(ms):
        raise BadRequest("bad_deadline", f"{DEADLINE_HEADER.decode()} must be a number of milliseconds")
    return ms / 1000.0


def grpc_budget(value: bytes) -> float:
    """Seconds from `grpc-timeout`; 400 `bad_grpc_timeout` (INTERNAL to a gRPC caller) when malformed."""
    try:
        return grpc_timeout.parse(value)
    except ValueError as exc:
        raise BadRequest("bad_grpc_timeout", str(exc)) from None


def route_deadline(call: Call, timeout: float, now: float) -> float:
    """The call's deadline (loop time), fixed on first use."""
    deadline = call.deadline
    if deadline is None:
        request = call.request
        start = request.received_at or now
        deadline = start + timeout
        value = request.header(DEADLINE_HEADER)
        if value is not None:
            deadline = min(deadline, start + caller_budget(value))
        if request.version == b"2":  # gRPC runs on HTTP/2 only: an HTTP/1.1 request pays one comparison
            value = request.header(GRPC_TIMEOUT)
            if value is not None:
                deadline = min(deadline, start + grpc_budget(value))
                call.grpc_timeout = True
        call.deadline = deadline
    return deadline


def upstream_timeout(headers: Headers, deadline: float, now: float) -> Headers:
    """The headers of one attempt of a call that came with `grpc-timeout`: the time left to it, rounded up."""
    return [*headers, (GRPC_TIMEOUT, grpc_timeout.format(deadline - now))]


def try_deadline(deadline: float, per_try: float | None, now: float) -> float:
    """The deadline of one attempt starting `now`."""
    return deadline if per_try is None else min(deadline, now + per_try)


class DeadlineLayer:
    __slots__ = ("inner", "loop", "timeout")

    def __init__(self, inner: Service, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.timeout = timeout
        self.loop = loop

    async def __call__(self, call: Call) -> Response:
        now = self.loop.time()
        if route_deadline(call, self.timeout, now) <= now:
            raise DeadlineExceeded("deadline_exceeded", "the caller's budget is already spent")
        return await self.inner(call)


__all__ = ["DeadlineLayer", "caller_budget", "grpc_budget", "route_deadline", "try_deadline", "upstream_timeout"]
