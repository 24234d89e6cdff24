"""Steady ingest load over several proxy replicas, every request recorded: what the cluster tests and the
`nats-node-kill` chaos scenario measure refusals and stalls with.

Threads post `{"n": i}` with idempotency-key `k-i` at a fixed total rate, round robin over the replicas' URLs,
and record each request's send and answer times (time.monotonic) and status (0: no answer). `refusals(since,
until)` tells, for the requests sent in a window (after a fault), how many were refused and for how long.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

# A refusal's deadline may pass this long after a stream's election ends: the append's retry waits (one attempt's
# 1 s and its backoff), the client reconnects, and the poll that saw the new leader came up to a poll late.
ELECTION_SLACK_S = 2.5


@dataclass
class Sent:
    key: str
    sent: float
    done: float = 0.0
    status: int = 0
    detail: str = ""  # a refusal's body


@dataclass
class IngestLoad:
    urls: list[str]
    rate: float = 150.0  # requests per second, over all threads
    threads: int = 12
    timeout: float = 15.0
    records: list[Sent] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)
    _next: int = 0

    def start(self) -> IngestLoad:
        self._started = time.monotonic()
        for t in range(self.threads):
            worker = threading.Thread(target=self._run, args=(t,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _take(self) -> int:
        with self._lock:
            n = self._next
            self._next += 1
            return n

    def _run(self, thread: int) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                n = self._take()
                due = self._started + n / self.rate
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                record = Sent(f"k-{n}", time.monotonic())
                with self._lock:
                    self.records.append(record)
                url = self.urls[n % len(self.urls)]
                try:
                    response = client.post(url, json={"n": n}, headers={"idempotency-key": record.key})
                    record.status = response.status_code
                    if record.status != 202:
                        record.detail = response.text[:300]
                except httpx.HTTPError:
                    record.status = 0
                record.done = time.monotonic()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout)

    @property
    def answered(self) -> int:
        with self._lock:
            return sum(1 for r in self.records if r.done)

    def acked(self) -> set[str]:
        with self._lock:
            return {r.key for r in self.records if r.status == 202}

    def sent_keys(self) -> set[str]:
        with self._lock:
            return {r.key for r in self.records}

    def statuses(self) -> dict[int, int]:
        out: dict[int, int] = {}
        with self._lock:
            for r in self.records:
                out[r.status] = out.get(r.status, 0) + 1
        return out

    def refusals(self, since: float, until: float | None = None) -> dict[str, Any]:
        """For the requests sent and answered in [since, until) (those still in flight at `until` belong to
        whatever happens then, such as the next fault): how many, how many refused (anything but 202), for how
        long (from `since` to the last refused answer), and how long accepted events waited."""
        with self._lock:
            window = [r for r in self.records
                      if since <= r.sent and r.done and (until is None or r.done < until)]
        refused = [r for r in window if r.status != 202]
        ok = sorted(r.done - r.sent for r in window if r.status == 202)
        return {"sent": len(window), "refused": len(refused),
                "refused_pct": round(100.0 * len(refused) / len(window), 2) if window else 0.0,
                "refusing_s": round(max((r.done for r in refused), default=since) - since, 3),
                "statuses": sorted({r.status for r in refused}),
                # the first refusals: (sent, answered) in seconds after `since`, and the status
                "first_refused": [(round(r.sent - since, 2), round(r.done - since, 2), r.status) for r in refused[:3]],
                "last_refused": [(round(r.sent - since, 2), round(r.done - since, 2), r.status) for r in refused[-3:]],
                "reasons": sorted({r.detail for r in refused if r.detail})[:3],
                "slowest_202_s": round(ok[-1] if ok else 0.0, 3),
                "p99_202_s": round(ok[int(0.99 * (len(ok) - 1))] if ok else 0.0, 3),
                "slow_202": sum(1 for d in ok if d > 1.0)}

    def unexplained(self, since: float, until: float | None, elected: float, deadline_s: float,
                    slack_s: float = ELECTION_SLACK_S) -> list[tuple[float, float, int, str]]:
        """The refusals in [since, until) that a leader's election ending at `elected` does not explain: anything
        but a 503, or a 503 whose deadline (sent + `deadline_s`, the route's timeout) came later than the
        election's end + `slack_s`. As (sent, answered) in seconds after `since`, the status, the reason."""
        with self._lock:
            window = [r for r in self.records
                      if since <= r.sent and r.done and (until is None or r.done < until) and r.status != 202]
        return [(round(r.sent - since, 2), round(r.done - since, 2), r.status, r.detail[:160]) for r in window
                if r.status != 503 or r.sent + deadline_s > elected + slack_s]


__all__ = ["ELECTION_SLACK_S", "IngestLoad", "Sent"]
