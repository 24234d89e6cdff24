"""Request mirroring: a copy of each request (plain route) or batch (batching route) to a shadow cluster.

Fire and forget: the copy is a task of its own that the caller never waits for; its answer is read and
dropped, its failure counted and swallowed. At most `max_in_flight` copies are under way per route (beyond
it copies are dropped and counted), so a slow shadow never holds memory or delays anyone. As Envoy does, the
copy's Host gets `-shadow` appended, so the shadow can tell copies from real traffic. A shadow's answer is
read with a small buffer and dropped as it arrives (never held whole, never sent anywhere), within the
mirror's timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from meshbatch.errors import ProxyError
from meshbatch.http.message import Headers, Response
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.service import Call, Service
from meshbatch.upstream import exchange
from meshbatch.upstream.cluster import Cluster
from meshbatch.upstream.headers import request_headers
from meshbatch.upstream.target import Target

log = logging.getLogger("meshbatch.layers")
SHADOW_BUFFER = 65_536  # a shadow's answer larger than this is read and dropped piece by piece
# One copy's exchange: (method, target, headers, body, deadline, hash key) -> the shadow's answer.
Send = Callable[[bytes, bytes, Headers, bytes, float, "bytes | None"], Awaitable[Response]]


class Mirror:
    __slots__ = ("_random", "_send_copy", "_tasks", "cluster", "loop", "max_in_flight", "metrics", "percent",
                 "route", "timeout")

    def __init__(self, route: str, cluster: Cluster, percent: float, max_in_flight: int, timeout: float,
                 loop: asyncio.AbstractEventLoop, metrics: LayerMetrics | None = None,
                 rng: Callable[[], float] | None = None, send: Send | None = None) -> None:
        self.route = route
        self.cluster = cluster
        self._send_copy = send or self._exchange
        self.percent = percent
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.loop = loop
        self.metrics = metrics
        self._random = rng or random.random
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def wanted(self) -> bool:
        """Whether this request gets a copy: sampled by `percent`, and room among the copies under way."""
        if self.percent < 100 and self._random() * 100 >= self.percent:
            return False
        if len(self._tasks) >= self.max_in_flight:
            self._count("dropped")
            return False
        return True

    def copy(self, method: bytes, target: bytes, headers: Headers, body: bytes, key: bytes | None = None) -> None:
        """Start a copy (call when `wanted()` said so)."""
        shadow = [(name, value + b"-shadow") if name == b"host" else (name, value) for name, value in headers]
        task = self.loop.create_task(self._send(method, target, shadow, body, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, method: bytes, target: bytes, headers: Headers, body: bytes, key: bytes | None) -> None:
        try:
            await self._send_copy(method, target, headers, body, self.loop.time() + self.timeout, key)
        except ProxyError:
            self._count("failed")
        except Exception:
            log.exception("mirroring to cluster %s failed", self.cluster.name)
            self._count("failed")
        else:
            self._count("ok")

    async def _exchange(self, method: bytes, path: bytes, headers: Headers, body: bytes, deadline: float,
                        key: bytes | None) -> Response:
        """The copy's exchange with the shadow cluster (no guard: a shadow's failures are its own business); its
        answer is read in small pieces and dropped."""
        response = await exchange.send(Target(self.cluster), method, path, headers, body, deadline, key, self.loop,
                                       stream_limit=SHADOW_BUFFER)
        if response.stream is not None:
            response.stream.discard()
        return response

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.mirrors.inc((self.route, self.cluster.name, outcome))

    def __repr__(self) -> str:
        return f"<Mirror {self.route} -> {self.cluster.name} {self.percent:g}% in_flight={len(self._tasks)}>"


class MirrorLayer:
    """A plain route's mirroring: the copy starts before the request goes on, and is never waited for."""

    __slots__ = ("inner", "mirror", "via")

    def __init__(self, inner: Service, mirror: Mirror, via: bool) -> None:
        self.inner = inner
        self.mirror = mirror
        self.via = via

    async def __call__(self, call: Call) -> Response:
        mirror = self.mirror
        if mirror.wanted():
            request = call.request
            hash_header = mirror.cluster.hash_header
            mirror.copy(request.method, request.target, request_headers(request, self.via, mirror.cluster.name),
                        request.body, request.header(hash_header) if hash_header is not None else None)
        return await self.inner(call)


__all__ = ["Mirror", "MirrorLayer"]
