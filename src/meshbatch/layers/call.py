"""The innermost stage of a guarded route: one upstream attempt, for a plain request or for a batch.

`UpstreamCall` is the handler under a plain route's layers (instead of the Forwarder): the same headers both
ways, the attempt made through the target's guard (thresholds, endpoint breakers, probes), within the
route's deadline and the per-try timeout. `GuardedSender` is the same for the batches of a batching route:
it takes the batcher's sender call, picks the target (a weighted split picks per batch, and a batch's
retries stay on its target), and sends a copy to the shadow cluster on a batch's first attempt.
"""

from __future__ import annotations

import asyncio

from meshbatch.http.message import Headers, Request, Response
from meshbatch.layers.attempt import ATTEMPT, Attempt, exchange
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.layers.mirror import Mirror
from meshbatch.layers.split import Split, Target
from meshbatch.layers.timeout import route_deadline, try_deadline
from meshbatch.proxy.forward import VIA, downstream_headers, upstream_headers


class UpstreamCall:
    """An answer larger than `buffer_limit` (the listener's `limits.max_buffer_bytes`) comes back with its
    body as a stream (http/stream.py): layers above decide on its head only."""

    __slots__ = ("buffer_limit", "default", "loop", "per_try", "timeout", "via")

    def __init__(self, default: Target, timeout: float, per_try: float | None, via: bool,
                 loop: asyncio.AbstractEventLoop, buffer_limit: int = 0) -> None:
        self.default = default
        self.timeout = timeout
        self.per_try = per_try
        self.via = via
        self.loop = loop
        self.buffer_limit = buffer_limit

    async def __call__(self, request: Request) -> Response:
        context = request.context
        target: Target = context.get("target") or self.default
        attempt: Attempt | None = context.get("attempt")
        now = self.loop.time()
        deadline = try_deadline(route_deadline(request, self.timeout, now), self.per_try, now)
        headers: Headers | None = context.get("upstream_headers")
        if headers is None:
            headers = context["upstream_headers"] = upstream_headers(request, self.via, target.cluster.name)
        if attempt is None or attempt.number == 0:
            target.guard.deposit(now, 1)
        hash_header = target.cluster.hash_header
        key = request.header(hash_header) if hash_header is not None else None
        response = await exchange(target, request.method, request.target, headers, request.body, deadline, key,
                                  attempt, self.loop, self.buffer_limit)
        response.headers = downstream_headers(response, self.via)
        return response


class GuardedSender:
    """A batching route's sender (the batcher's `Sender` signature) through the guards of its targets."""

    __slots__ = ("loop", "metrics", "mirror", "per_try", "route", "split", "via")

    def __init__(self, route: str, split: Split, per_try: float | None, via: bool, loop: asyncio.AbstractEventLoop,
                 mirror: Mirror | None = None, metrics: LayerMetrics | None = None) -> None:
        self.route = route
        self.split = split
        self.per_try = per_try
        self.via = via
        self.loop = loop
        self.mirror = mirror
        self.metrics = metrics

    async def __call__(self, method: bytes, path: bytes, headers: Headers, body: bytes, timeout: float,
                       key: tuple[bytes, ...]) -> Response:
        attempt = ATTEMPT.get()
        hash_key = b"\x00".join(key) if key else None
        target = attempt.target if attempt is not None else None
        if target is None:
            target = self.split.choose(hash_key if self.split.header is not None else None)
            if attempt is not None:
                attempt.target = target
            if len(self.split.targets) > 1 and self.metrics is not None:
                self.metrics.splits.inc((self.route, target.label))
        now = self.loop.time()
        out: Headers = [(b"host", target.cluster.name.encode()), *headers]
        if self.via:
            out.append((b"via", VIA))
        if attempt is None or attempt.number == 0:
            target.guard.deposit(now, attempt.units if attempt is not None else 1)
            if self.mirror is not None and self.mirror.wanted():
                self.mirror.copy(method, path, out, body, key=hash_key)
        if self.per_try is not None and self.per_try < timeout:
            timeout = self.per_try
        return await exchange(target, method, path, out, body, now + timeout, hash_key, attempt, self.loop)


__all__ = ["GuardedSender", "UpstreamCall"]
