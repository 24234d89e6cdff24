"""The durable log interface: named backends (`sqlite`, `jetstream`) behind one protocol.

The handler appends accepted events (durable once the returned awaitable completes: one group commit for
everything appended meanwhile). The flusher takes batches of ready events, and settles each event after
delivery: `ack` (delivered: remove), `retry` (deliver again after a delay), `dead` (park in dead letters).
Settling need not be durable at once: an event whose `ack` is lost in a crash is delivered again, and the
sinks store each event id once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from meshbatch.clock import Clock
from meshbatch.config.plain import IngestLog
from meshbatch.errors import Overloaded
from meshbatch.ingest.record import Record
from meshbatch.registry import Extensions

DELIVERY = "delivery"  # the stage of a letter the flusher parked


class LogFull(Overloaded):
    """429: the log has reached its size limit."""

    default_reason = "ingest_log_full"


class LogError(OSError):
    """The log cannot be opened or written (disk, permissions, server unreachable)."""


class EventLog(Protocol):
    name: str
    # True when every replica reading this log is this process (delivery confirmations can be awaited here).
    local: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def has_room(self, count: int, size: int) -> bool:
        """Whether `count` more events of `size` bytes in all fit under the limits (a hint; append decides)."""
        ...

    async def wait_room(self, count: int, size: int, timeout: float) -> bool: ...

    def append(self, records: Sequence[Record], deadline: float | None = None) -> Awaitable[None]:
        """Add records; the awaitable completes when they are durable (raises LogFull or LogError). A log whose
        writes can fail for a while (a server's failover) tries again until `deadline` (the loop's clock), the
        caller's own, before raising."""
        ...

    async def take(self, max_items: int, max_bytes: int) -> list[Record]:
        """The next ready records (now leased to the caller), oldest first; [] when none is ready."""
        ...

    async def wait(self, timeout: float) -> None:
        """Return when records may be ready, or after `timeout` seconds."""
        ...

    def ack(self, records: Sequence[Record]) -> Awaitable[None]: ...

    def retry(self, records: Sequence[Record], delay: float, count_attempt: bool,
              at: float | None = None) -> Awaitable[None]:
        """Deliver again after `delay` seconds; `at`, when given, is that time exactly on the log's clock (records
        retried with the same `at` are taken again in log order)."""
        ...

    def dead(self, records: Sequence[Record], reason: str, stage: str = DELIVERY) -> Awaitable[None]:
        """Park records in dead letters with `reason`; `stage` is where they were refused: `delivery` (the
        flusher, after `max_attempts`) or the pipeline stage's place (`pipeline[2].validate`)."""
        ...

    async def dead_letters(self, limit: int, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The oldest `limit` dead letters (of these ids): id, body (text), received, attempts, reason, stage
        (None for letters parked before letters kept theirs), failed_at."""
        ...

    async def replay(self, ids: Sequence[str] | None, limit: int,
                     bodies: Mapping[str, bytes | None] | None = None) -> int:
        """Move dead letters (these ids, or the oldest `limit`) back into the log, attempts reset; how many
        moved. With `bodies`, only the letters it names: each moves with the body given (as a replay through the
        pipeline left it), or, for None, is removed without moving (the pipeline dropped it)."""
        ...

    def stats(self) -> dict[str, Any]:
        """backlog, bytes, oldest_age_s, leased, retrying, dead_letters, and backend facts."""
        ...


LogFactory = Callable[[IngestLog, str, Clock], EventLog]
LOGS: Extensions[LogFactory] = Extensions("ingest log backend")

__all__ = ["DELIVERY", "LOGS", "EventLog", "LogError", "LogFactory", "LogFull"]
