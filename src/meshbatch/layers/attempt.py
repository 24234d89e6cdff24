"""One upstream attempt through a target's guard, and the state a request's attempts share.

`exchange` is the endpoint stage of a guarded request: pick an endpoint (a due probe, else the balancer's
choice, avoiding endpoints this request already failed on), pass the cluster's thresholds, send, and report
the outcome to the endpoint's breaker. Its `Attempt` travels in `request.context["attempt"]` for plain
requests and in the `ATTEMPT` context variable for batches (set by the batcher's retry loop around the
route's sender, whose signature wrappers such as `compress` keep as it is).
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

from meshbatch.errors import CircuitOpen, ProxyError, Unavailable
from meshbatch.http.message import Headers, Response
from meshbatch.layers.guard import BREAKER_OPEN
from meshbatch.layers.split import Target
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.outcome import error_status


class Attempt:
    """The attempts of one request (or one batch): how many were made, where, and to which target."""

    __slots__ = ("number", "target", "tried", "units")

    def __init__(self, units: int = 1) -> None:
        self.number = 0  # 0: the first attempt; n: the n-th retry
        self.target: Target | None = None  # chosen once (a split), kept for the retries
        self.tried: list[Endpoint] = []
        self.units = units  # what the first attempt deposits in the retry budget (items of a batch)

    def __repr__(self) -> str:
        return f"<Attempt {self.number} tried={[e.address for e in self.tried]}>"


ATTEMPT: ContextVar[Attempt | None] = ContextVar("meshbatch_attempt", default=None)


async def exchange(target: Target, method: bytes, path: bytes, headers: Headers, body: bytes, deadline: float,
                   key: bytes | None, attempt: Attempt | None, loop: asyncio.AbstractEventLoop,
                   stream_limit: int = 0) -> Response:
    """One attempt with one endpoint of `target`; raises ProxyError on failure (the breaker is told). With a
    `stream_limit`, a larger answer comes with its body as a stream; the verdict is on its head."""
    cluster, guard = target.cluster, target.guard
    now = loop.time()
    endpoint = target.pick(key, attempt.tried if attempt is not None else (), now)
    if endpoint is None:
        if any(e.down == BREAKER_OPEN for e in target.members()):
            raise CircuitOpen("circuit_open", f"{target.label}: every available endpoint's breaker is open")
        raise Unavailable("no_healthy_upstream", f"{target.label} has no healthy endpoint")
    try:
        guard.admit(endpoint, cluster.hosts.all)
    except CircuitOpen:
        guard.record(endpoint, 0, now)  # no verdict: a probe picked for this request is given back
        raise
    if attempt is not None:
        attempt.tried.append(endpoint)
    guard.active += 1
    try:
        response = await cluster.send(method, path, headers, body, deadline, key, endpoint, stream_limit)
    except ProxyError as error:
        guard.record(endpoint, error_status(error), loop.time())
        raise
    except BaseException:  # cancelled: the caller went away; no verdict on the endpoint
        guard.record(endpoint, 0, loop.time())
        raise
    finally:
        guard.active -= 1
    guard.record(endpoint, response.status, loop.time())
    return response


__all__ = ["ATTEMPT", "Attempt", "exchange"]
