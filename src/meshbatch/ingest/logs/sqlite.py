"""`sqlite`: the embedded durable log (one SQLite file in WAL mode per route; see `sqlite_store` for why).

Group commit: appends, acks, retries and dead letters accumulate on the event loop while a commit runs on the
log's thread; the next commit takes all of them at once, so many concurrent producers share one fsync.
Committed events go straight to an in-memory ready queue for the flusher up to `memory_events`; beyond that,
and after a restart, they are read back from the file in order. An append's events share a row (`sqlite_units`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import os
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Awaitable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate, islice
from operator import attrgetter
from typing import Any

from meshbatch.clock import Clock
from meshbatch.config.plain import IngestLog
from meshbatch.ingest.gil import shorten_switch_interval
from meshbatch.ingest.logs.base import DELIVERY, LOGS, LogError, LogFull
from meshbatch.ingest.logs.sqlite_store import Ops, ReadBack, Store
from meshbatch.ingest.logs.sqlite_units import Unit, acked, failed, joinable, parked, settled
from meshbatch.ingest.record import Record

READ_CHUNK = 4096
SEQ = attrgetter("seq")
BODY = attrgetter("body")
LAZY_INTERVAL = 0.05
LAZY_MAX = 20_000


class SQLiteLog:
    name = "sqlite"
    local = True

    def __init__(self, config: IngestLog, route: str, clock: Clock) -> None:
        self.path = config.path or os.path.join("meshbatch-data", f"ingest-{route}.db")
        self.max_events = config.max_events
        self.max_bytes = config.max_bytes
        self.memory_events = config.memory_events
        self.clock = clock
        self.store = Store(self.path, config.sync)
        self._pool: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None
        self.count = self.bytes = self.dead_count = 0
        self._next_seq = 1
        self._ops = Ops()
        self._group: asyncio.Future[None] | None = None
        self._lazy = Ops()
        self._lazy_group: asyncio.Future[None] | None = None
        self._lazy_due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._force = False
        self._committing = False
        self._ready: deque[Record] = deque()
        self._retrying: list[tuple[float, int, Record]] = []
        self._leased: dict[int, Record] = {}
        self._spilling = True  # until the file has been read through once
        self._spill_seq = 0
        self._spill_oldest: float | None = None
        self._changed = asyncio.Event()
        self._room = asyncio.Event()
        self.appended = self.committed_events = self.commits = self.append_commits = 0

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def _run(self, fn: Any, *args: Any) -> Any:
        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-log")
        shorten_switch_interval()  # see meshbatch.ingest.gil
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LogError(f"the ingest log {self.path} is in use by another process") from None
            self._lock_fd = fd
            opened = await self._run(self.store.open)
        except LogError:
            raise
        except Exception as exc:
            raise LogError(f"cannot open the ingest log {self.path}: {exc}") from exc
        self._next_seq = opened.max_seq + 1
        self.count, self.bytes, self.dead_count = opened.count, opened.bytes, opened.dead
        self._spill_oldest = opened.oldest
        self._spilling = opened.count > 0
        if self._spilling:
            self._changed.set()

    async def flush(self) -> None:
        """Commit everything pending now, the lazy acks and retry counts included."""
        self._force = True
        try:
            while self._ops or self._lazy or self._committing:
                await self._commit_now()
        finally:
            self._force = False

    async def close(self) -> None:
        await self.flush()
        if self._pool is not None:
            await self._run(self.store.close)
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- group commit ---------------------------------------------------------------------------------------
    # Appends (and dead letters) are urgent: a commit starts as soon as none is running. Acks and retry counts
    # are lazy: written with the next commit after LAZY_INTERVAL (losing them in a crash only redelivers), so
    # that most commits are one multi-row INSERT, one statement, one fsync.

    def _urgent(self) -> asyncio.Future[None]:
        if self._group is None:
            self._group = asyncio.get_running_loop().create_future()
            if not self._committing:
                asyncio.get_running_loop().call_soon(self._kick)
        return self._group

    def _later(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if self._lazy_group is None:
            self._lazy_group = loop.create_future()
            self._lazy_due = loop.time() + LAZY_INTERVAL
            if not self._committing and self._timer is None:
                self._timer = loop.call_at(self._lazy_due, self._kick)
        return self._lazy_group

    def _kick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._committing or self._pool is None:
            return
        loop = asyncio.get_running_loop()
        lazy = self._lazy
        due = bool(lazy) and (self._force or lazy.ack_count >= LAZY_MAX or loop.time() >= self._lazy_due)
        if not self._ops and not due:
            if lazy:
                self._timer = loop.call_at(self._lazy_due, self._kick)
            return
        ops, groups = self._ops, [self._group]
        self._ops, self._group = Ops(), None
        self._next_seq = ops.pack(self._next_seq)  # a commit's requests of one event: one row
        if due:
            ops.acks, ops.ack_count, ops.ack_bytes = lazy.acks, lazy.ack_count, lazy.ack_bytes
            ops.retries, ops.unit_tries, ops.touched = lazy.retries, lazy.unit_tries, lazy.touched
            ops.gone += settled(lazy.touched)  # after the letters' own: the latest, a superset of theirs
            groups.append(self._lazy_group)
            self._lazy, self._lazy_group = Ops(), None
        self._committing = True
        future = loop.run_in_executor(self._pool, self.store.commit, ops)
        future.add_done_callback(lambda f: self._committed(ops, groups, f))

    def _committed(self, ops: Ops, groups: list[asyncio.Future[None] | None], future: asyncio.Future[None]) -> None:
        self._committing = False
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if error is not None:
            for record in ops.appends:  # not durable: the callers are told so, the room is freed
                self.count -= 1
                self.bytes -= len(record.body)
            ops.give_back(self._lazy, self._ops)
            for group in groups:
                if group is not None and not group.done():
                    group.set_exception(LogError(f"the ingest log commit failed: {error}"))
                    group.exception()  # retrieved: an append nobody awaits (ack: memory) must not warn
        else:
            self.commits += 1
            if ops.appends:
                self.append_commits += 1
                self.committed_events += len(ops.appends)
            self._push(ops.appends)
            freed = ops.ack_count + sum(1 for r, _, _ in ops.deads if r.seq)
            if freed:
                self.count -= freed
                self.bytes -= ops.ack_bytes + sum(len(r.body) for r, _, _ in ops.deads if r.seq)
                self._room.set()
            self.dead_count += len(ops.deads)
            for group in groups:
                if group is not None and not group.done():
                    group.set_result(None)
        if self._ops and self._group is None:
            self._group = asyncio.get_running_loop().create_future()
        if self._lazy and self._lazy_group is None:
            self._lazy_group = asyncio.get_running_loop().create_future()
        if self._ops or self._lazy:
            self._kick()

    async def _commit_now(self) -> None:
        if self._ops or self._lazy:
            waits = [g for g in (self._group, self._lazy_group) if g is not None]
            self._kick()
            if waits:
                await asyncio.wait(waits)
            else:
                await asyncio.sleep(0.001)
        elif self._committing:
            await asyncio.sleep(0.001)

    def _push(self, records: Sequence[Record]) -> None:
        if not records:
            return
        if not self._spilling and len(self._ready) + len(records) > self.memory_events:
            self._spilling = True
            self._spill_seq = records[0].seq
            self._spill_oldest = records[0].received
        if not self._spilling:
            self._ready.extend(records)
        self._changed.set()

    # -- producers ------------------------------------------------------------------------------------------

    def has_room(self, count: int, size: int) -> bool:
        return self.count + count <= self.max_events and self.bytes + size <= self.max_bytes

    async def wait_room(self, count: int, size: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()  # the one clock (clock.py): the loop's
        deadline = loop.time() + timeout
        while not self.has_room(count, size):
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._room.wait()
        return True

    def append(self, records: Sequence[Record], deadline: float | None = None) -> Awaitable[None]:
        size = sum(len(r.body) for r in records)
        if not self.has_room(len(records), size):
            raise LogFull("ingest_log_full", f"the log holds {self.count} events, {self.bytes} bytes "
                          f"(limits {self.max_events} and {self.max_bytes})", retry_after=1.0)
        seq = self._next_seq
        for record in records:
            record.seq = seq
            seq += 1
        self._next_seq = seq
        self.count += len(records)
        self.bytes += size
        self.appended += len(records)
        ops = self._ops
        ops.appends.extend(records)
        if joinable(records):
            unit = Unit(records[0].seq, len(records), len(records))
            for record in records:
                record.ref = unit
            ops.units.append((unit, list(records)))
        else:
            ops.singles.extend(records)
        return self._urgent()

    # -- the flusher ----------------------------------------------------------------------------------------

    async def take(self, max_items: int, max_bytes: int) -> list[Record]:
        self._changed.clear()
        now = self.clock.now()
        batch: list[Record] = []
        size = 0
        retrying = self._retrying
        while retrying and retrying[0][0] <= now and len(batch) < max_items:
            record = retrying[0][2]
            if batch and size + len(record.body) > max_bytes:
                break
            heapq.heappop(retrying)
            batch.append(record)
            size += len(record.body)
        if len(batch) < max_items and not self._ready and self._spilling:
            await self._read_back()
        ready = self._ready
        want = min(max_items - len(batch), len(ready))
        if want > 0:  # the longest run of ready records within max_bytes (at least one), sized in C
            head = list(islice(ready, want))
            ends = list(accumulate(map(len, map(BODY, head)), initial=size))  # ends[i]: the size without head[i:]
            fits = bisect_right(ends, max_bytes, 1) - 1
            n = fits if fits or batch else 1
            if n == len(ready):
                ready.clear()
            else:
                for _ in range(n):
                    ready.popleft()
            batch += head[:n]
        self._leased.update(zip(map(SEQ, batch), batch, strict=True))
        return batch

    async def _read_back(self) -> None:
        limit = max(1, min(READ_CHUNK, self.memory_events))
        back: ReadBack = await self._run(self.store.read, self._spill_seq, limit)
        read = back.records
        self._spill_seq = back.next_seq
        if read:
            self._spill_oldest = read[-1].received
            self._ready.extend(r for r in read if r.seq not in self._leased)
        if back.settled:  # units whose every event was parked before a crash: their rows go
            self._lazy.acks += back.settled
            self._later()
        if back.done:
            self._spilling = False
            self._spill_oldest = None

    async def wait(self, timeout: float) -> None:
        if self._retrying:
            timeout = max(0.0, min(timeout, self._retrying[0][0] - self.clock.now()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    def ack(self, records: Sequence[Record]) -> Awaitable[None]:
        pop = self._leased.pop
        for record in records:
            pop(record.seq, None)
        acked(records, self._lazy.acks, self._lazy.touched)
        self._lazy.ack_count += len(records)
        self._lazy.ack_bytes += sum(map(len, map(BODY, records)))
        return self._later()

    def retry(self, records: Sequence[Record], delay: float, count_attempt: bool,
              at: float | None = None) -> Awaitable[None]:
        due = self.clock.now() + delay if at is None else at
        for record in records:
            self._leased.pop(record.seq, None)
            if count_attempt:
                record.attempts += 1
                if record.ref is None:
                    self._lazy.retries.append((record.attempts, record.seq))
                else:
                    self._lazy.unit_tries.append(failed(record))
            heapq.heappush(self._retrying, (due, record.seq, record))
        self._changed.set()
        if not self._lazy:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut
        return self._later()

    def dead(self, records: Sequence[Record], reason: str, stage: str = DELIVERY) -> Awaitable[None]:
        ops = self._ops
        for record in records:
            self._leased.pop(record.seq, None)
            if record.ref is not None:
                parked(record, ops.gone, ops.drops)
        ops.deads.extend((r, reason, stage) for r in records)
        return self._urgent()

    # -- operators ------------------------------------------------------------------------------------------

    async def dead_letters(self, limit: int, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return await self._run(self.store.dead_letters, limit, ids)  # type: ignore[no-any-return]

    async def replay(self, ids: Sequence[str] | None, limit: int,
                     bodies: Mapping[str, bytes | None] | None = None) -> int:
        first = self._next_seq
        self._next_seq += limit  # at most `limit` move; numbers left unused are harmless gaps
        records, removed = await self._run(self.store.replay, ids, limit, first, bodies)
        self.count += len(records)
        self.bytes += sum(len(r.body) for r in records)
        self.dead_count -= removed
        self._push(records)
        return len(records)

    def stats(self) -> dict[str, Any]:
        received = [r.received for r in self._leased.values()] + [e[2].received for e in self._retrying]
        if self._ready:
            received.append(self._ready[0].received)
        if self._spilling and self._spill_oldest is not None:
            received.append(self._spill_oldest)
        oldest = min(received) if received and self.count else None
        return {
            "backend": self.name, "path": self.path, "backlog": self.count, "bytes": self.bytes,
            "oldest_age_s": round(max(0.0, time.time() - oldest), 3) if oldest is not None else 0.0,
            "leased": len(self._leased), "retrying": len(self._retrying), "dead_letters": self.dead_count,
            "reading_back": self._spilling, "commits": self.commits,
            "events_per_append_commit": (round(self.committed_events / self.append_commits, 1)
                                         if self.append_commits else 0.0),
            "max_events": self.max_events, "max_bytes": self.max_bytes,
        }


@LOGS.register("sqlite")
def _factory(config: IngestLog, route: str, clock: Clock) -> SQLiteLog:
    return SQLiteLog(config, route, clock)


__all__ = ["SQLiteLog"]
