"""Open-loop HTTP/1.1 load at a fixed rate, free of coordinated omission.

Send times are fixed before the run (start + i / rate); each request's latency is measured from its scheduled
time, so a request that waits for a free connection, or is sent late because the proxy is slow, is charged the
wait. Requests go over keep-alive connections from a pool that grows on demand (no pipelining). The loop is
asyncio's own over `select()` (microsecond timeouts; epoll rounds to milliseconds), and it wakes a little
early and polls until each send time, so send lag stays in microseconds; it is reported beside the latencies.

Run as a script (the harness starts it pinned to the load core); it prints one JSON object on stdout:
    python loadgen.py --port 8080 --rate 200 --duration 10
Traffic goes to 127.0.0.1 only. Standard library plus httptools.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import json
import math
import selectors
import sys
import time
from typing import Any

import httptools

HOST = "127.0.0.1"
CDF_POINTS = 100


class Pool:
    """Keep-alive connections, a queue of due requests, and the latencies of the answered ones."""

    def __init__(self, loop: asyncio.AbstractEventLoop, port: int, path: str, max_conns: int):
        self.loop = loop
        self.port = port
        self.request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
        self.max_conns = max_conns
        self.idle: list[Conn] = []
        self.opening = 0
        self.total = 0
        self.waiting: collections.deque[float] = collections.deque()  # scheduled times, oldest first
        self.latencies: list[float] = []
        self.send_lag: list[float] = []
        self.recording = True
        self.errors: collections.Counter[str] = collections.Counter()
        self.in_flight = 0

    def submit(self, scheduled: float) -> None:
        self.waiting.append(scheduled)
        self.pump()

    def pump(self) -> None:
        while self.waiting and self.idle:
            self.idle.pop().send(self.waiting.popleft())
        shortfall = len(self.waiting) - self.opening
        while shortfall > 0 and self.total + self.opening < self.max_conns:
            self.opening += 1
            shortfall -= 1
            self.loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            await self.loop.create_connection(lambda: Conn(self), HOST, self.port)
        except OSError as exc:
            self.errors[f"connect: {exc.strerror or exc}"] += 1
            if self.waiting:  # the request that wanted this connection fails rather than waiting forever
                self.waiting.popleft()
        finally:
            self.opening -= 1
        self.pump()

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()

    def done(self, scheduled: float, sent: float, ok: bool, reason: str = "") -> None:
        self.in_flight -= 1
        if not self.recording:
            return
        if ok:
            self.latencies.append(time.perf_counter() - scheduled)
            self.send_lag.append(sent - scheduled)
        else:
            self.errors[reason] += 1


class Conn(asyncio.Protocol):
    def __init__(self, pool: Pool):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.current: tuple[float, float] | None = None  # (scheduled, sent)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pool.total += 1
        self.pool.idle.append(self)

    def send(self, scheduled: float) -> None:
        assert self.transport is not None
        self.pool.in_flight += 1
        self.current = (scheduled, time.perf_counter())
        self.transport.write(self.pool.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"bad response: {exc}")
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        if self.current is None:
            return
        scheduled, sent = self.current
        self.current = None
        status = self.parser.get_status_code()
        self.pool.done(scheduled, sent, 200 <= status < 400, f"status {status}")
        if self.parser.should_keep_alive() and self.transport is not None and not self.transport.is_closing():
            self.pool.idle.append(self)
            self.pool.pump()
        elif self.transport is not None:
            self.transport.close()

    def _fail(self, reason: str) -> None:
        if self.current is not None:
            scheduled, sent = self.current
            self.current = None
            self.pool.done(scheduled, sent, False, reason)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("connection lost")
        self.pool.total -= 1
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        self.pool.pump()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def cdf(sorted_values: list[float], points: int = CDF_POINTS) -> list[list[float]]:
    """[latency_ms, fraction] pairs thinned to about `points`, for plotting."""
    n = len(sorted_values)
    if n == 0:
        return []
    step = max(1, n // points)
    picks = [*range(step - 1, n, step), n - 1]
    return [[round(sorted_values[i] * 1000, 4), round((i + 1) / n, 5)] for i in sorted(set(picks))]


async def run(
    port: int, path: str, rate: float, duration: float, max_conns: int, warmup: float, spin: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pool = Pool(loop, port, path, max_conns)
    # Warm-up at the same rate, not recorded: connections open and the peer's caches fill.
    pool.recording = False
    await _drive(pool, rate, warmup, spin)
    await _settle(pool, 2.0)
    pool.recording = True
    pool.latencies.clear()
    pool.send_lag.clear()
    pool.errors.clear()
    started = time.perf_counter()
    scheduled_count = await _drive(pool, rate, duration, spin)
    # Give the last answers time to come back; whatever is still out is counted as timed out.
    await _settle(pool, 5.0)
    pool.close()
    lost = pool.in_flight + len(pool.waiting)
    if lost:
        pool.errors["timeout"] += lost
    elapsed = time.perf_counter() - started
    lat = sorted(pool.latencies)
    lag = sorted(pool.send_lag)
    return {
        "rate": rate,
        "duration_s": duration,
        "scheduled": scheduled_count,
        "ok": len(lat),
        "errors": sum(pool.errors.values()),
        "error_reasons": dict(pool.errors),
        "achieved_rps": len(lat) / elapsed if elapsed > 0 else 0.0,
        "connections": pool.total,
        "latency_ms": {
            name: round(percentile(lat, q) * 1000, 4)
            for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9), ("max", 100))
        },
        "send_lag_ms": {
            name: round(percentile(lag, q) * 1000, 4) for name, q in (("p50", 50), ("p99", 99), ("max", 100))
        },
        "cdf_ms": cdf(lat),
    }


async def _settle(pool: Pool, timeout: float) -> None:
    """Wait (bounded) until no request is queued or in flight."""
    deadline = time.perf_counter() + timeout
    while (pool.in_flight or pool.waiting) and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)


async def _drive(pool: Pool, rate: float, duration: float, spin: float) -> int:
    """Submit requests at start + i / rate for `duration` seconds; returns how many were scheduled."""
    count = max(0, round(rate * duration))
    if count == 0:
        return 0
    interval = 1.0 / rate
    start = time.perf_counter() + 0.01
    for i in range(count):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter() - min(spin, interval / 4)
        if delay > 0:
            await asyncio.sleep(delay)
        # Timer wake-ups on a VM are late by a few hundred microseconds: wake early, then poll the loop
        # (answers keep being read, so their timestamps stay exact) until the send time. A quarter of the
        # interval at most, so that at high rates the generator does not look CPU-bound to the scheduler.
        while time.perf_counter() < scheduled:
            await asyncio.sleep(0)
        # Everything already due goes out now, each keeping its own scheduled time.
        pool.submit(scheduled)
    return count


def _fine_timer_slack() -> None:
    """Ask Linux for 1 ns of timer slack instead of 50 us (prctl PR_SET_TIMERSLACK); harmless where absent."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, 1, 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds first")
    parser.add_argument("--max-conns", type=int, default=256)
    parser.add_argument("--spin-us", type=float, default=300.0, help="wake this early and poll until send time")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be > 0")
    _fine_timer_slack()
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        result = loop.run_until_complete(
            asyncio.wait_for(
                run(
                    args.port,
                    args.path,
                    args.rate,
                    args.duration,
                    args.max_conns,
                    args.warmup,
                    args.spin_us / 1e6,
                ),
                timeout=args.warmup + args.duration + 30,
            )
        )
    finally:
        loop.close()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
