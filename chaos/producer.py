"""The multi-host scenario's producer: it runs on host A (a thread moved into A's network namespace, so its
sockets are A's) and posts orders to A's sidecar at a steady rate, each with its own id, round robin over the
routes' paths. Every request is recorded with the phase it was sent in, its send and answer times and its status
(0: no answer): the figures per fault come from these records."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from testbed.netns import enter

from .common import percentile


@dataclass
class Order:
    id: str
    path: str
    phase: str
    sent: float
    done: float = 0.0
    status: int = 0
    host: str = ""  # the consumer host that answered
    detail: str = ""  # a failure's body (its reason)


@dataclass
class Producer:
    ns: str
    base: str  # A's sidecar, as seen inside A: http://127.0.0.1:PORT
    paths: list[str]
    rate: float = 100.0
    concurrency: int = 64
    timeout: float = 10.0
    phase: str = "warm-up"
    records: list[Order] = field(default_factory=list)
    error: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Producer:
        self._thread = threading.Thread(target=self._run, daemon=True, name="producer-on-a")
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            enter(self.ns)
            asyncio.run(self._main())
        except Exception as exc:  # reported by the scenario
            self.error = f"{type(exc).__name__}: {exc}"

    async def _main(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(base_url=self.base, timeout=self.timeout, limits=limits) as client:
            started = time.monotonic()
            n = 0
            while not self._stop.is_set():
                delay = started + n / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                order = Order(f"o-{n}", self.paths[n % len(self.paths)], self.phase, time.monotonic())
                self.records.append(order)
                task = asyncio.create_task(self._one(client, order, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            if tasks:
                await asyncio.wait(tasks)

    async def _one(self, client: object, order: Order, slots: asyncio.Semaphore) -> None:
        import httpx

        assert isinstance(client, httpx.AsyncClient)
        try:
            answer = await client.post(order.path, json={"id": order.id}, headers={"x-request-id": order.id})
            order.status = answer.status_code
            if answer.status_code == 200:
                order.host = str(answer.json().get("host", ""))
            else:
                order.detail = answer.text[:200]
        except (httpx.HTTPError, ValueError) as exc:
            order.status = 0
            order.detail = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            order.done = time.monotonic()
            slots.release()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def answered(self) -> int:
        return sum(1 for r in self.records if r.done)

    def ok_on_every_path(self, n: int) -> bool:
        """At least `n` orders answered 200 on each path."""
        return all(sum(1 for r in self.records if r.path == p and r.status == 200) >= n for p in self.paths)

    def phase_figures(self, phase: str) -> dict[str, object]:
        """Requests sent in `phase` (and finished): how many, answered (any status), answered 200, failed (by
        status, with up to 3 reasons), p50/p99/max of the 200s (ms), and which consumer hosts answered."""
        window = [r for r in self.records if r.phase == phase and r.done]
        ok = [1000 * (r.done - r.sent) for r in window if r.status == 200]
        failed: dict[str, int] = {}
        reasons = sorted({r.detail for r in window if r.status != 200})[:3]
        hosts: dict[str, int] = {}
        for r in window:
            if r.status != 200:
                failed[str(r.status)] = failed.get(str(r.status), 0) + 1
            elif r.host:
                hosts[r.host] = hosts.get(r.host, 0) + 1
        return {"sent": len(window), "answered": sum(1 for r in window if r.status), "ok": len(ok), "failed": failed,
                "p50_ms": round(percentile(ok, 0.5), 1), "p99_ms": round(percentile(ok, 0.99), 1),
                "max_ms": round(max(ok, default=0.0), 1),
                "answered_by": dict(sorted(hosts.items())), **({"reasons": reasons} if reasons else {})}


__all__ = ["Order", "Producer"]
