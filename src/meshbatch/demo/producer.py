"""The demo producer: single JSON events over keep-alive connections, closed loop, for a fixed time.

It speaks HTTP/1.1 with meshbatch's own upstream connection class, so the producer costs little CPU and
the figures show the path being measured, not the load generator.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from meshbatch.errors import ProxyError
from meshbatch.http.client import UpstreamConnection
from meshbatch.http.serialize import encode_request


@dataclass
class RunResult:
    name: str
    run: str = ""
    upstream_calls: int = 0
    seconds: float = 0.0
    sent: int = 0
    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


async def _connect(host: str, port: int) -> UpstreamConnection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: UpstreamConnection(loop, 1 << 20), host, port)
    return conn


async def produce(name: str, run: str, targets: Sequence[tuple[str, int]], path: str, host_header: str,
                  duration: float, concurrency: int, on_progress: Callable[[int], None] | None = None) -> RunResult:
    """Send events for `duration` seconds from `concurrency` connections spread over `targets`."""
    loop = asyncio.get_running_loop()
    result = RunResult(name, run)
    counter = itertools.count()
    prefix = os.urandom(4).hex()
    stop_at = loop.time() + duration
    target_cycle = itertools.cycle(targets)

    async def worker(target: tuple[str, int]) -> None:
        conn = await _connect(*target)
        try:
            while loop.time() < stop_at:
                seq = next(counter)
                event = {"id": f"{prefix}-{seq}", "run": run, "seq": seq, "sensor": seq % 97, "value": seq * 0.5}
                body = orjson.dumps(event)
                data = encode_request(b"POST", path.encode(), [(b"host", host_header.encode()),
                                                               (b"content-type", b"application/json")], body)
                if conn.closed or not conn.keep_alive:
                    conn = await _connect(*target)
                started = loop.time()
                result.sent += 1
                try:
                    response = await conn.send(data, head=False, deadline=started + 10)
                except ProxyError as error:
                    result.failed[error.reason] = result.failed.get(error.reason, 0) + 1
                    continue
                result.latencies.append(loop.time() - started)
                if 200 <= response.status < 300:
                    result.ok += 1
                    for name_, value in response.headers:
                        if name_ == b"x-meshbatch-batch-size":
                            result.batch_sizes.append(int(value))
                else:
                    key = f"http_{response.status}"
                    result.failed[key] = result.failed.get(key, 0) + 1
                if on_progress is not None:
                    on_progress(1)
        finally:
            conn.close()

    started = loop.time()
    await asyncio.gather(*(worker(next(target_cycle)) for _ in range(concurrency)))
    result.seconds = loop.time() - started
    return result


__all__ = ["RunResult", "produce"]
