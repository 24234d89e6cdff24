"""Sinks: where the flusher delivers batches. Named extensions: `sqlite`, `postgres`, `cluster`.

`deliver` returns one outcome per record, in order: None when stored, or the reason it failed (that record
alone is retried, and parked in dead letters after `max_attempts`), or `Held` (its part of the sink, a shard, is
unavailable: it goes back to the log until a given time, no attempt counted, never dead-lettered for it), or
`Undeliverable` (it can never be stored as it is: parked in dead letters at once). It raises `SinkUnavailable`
when the sink cannot be reached (the batch is held and retried with backoff; no attempt is counted against its
events) and `BatchRejected` when the sink refused the batch as a whole for something in its data (the flusher
splits it to find the item at fault).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from meshbatch.clock import Clock, LoopClock
from meshbatch.config.plain import IngestRoute as Route
from meshbatch.ingest.record import Record
from meshbatch.pipeline.stages.compress import Send
from meshbatch.registry import Extensions

if TYPE_CHECKING:
    from meshbatch.config.model import IngestRoute as RouteModel


class SinkUnavailable(Exception):
    """The sink cannot take anything now (down, unreachable, overloaded)."""


class BatchRejected(Exception):
    """The sink refused this batch because of (at least) one of its events."""


@dataclass(frozen=True, slots=True)
class Held:
    """This event's part of the sink is unavailable: back to the log until `until` (the flusher's clock), with no
    attempt counted. Every event held for one outage gets the same `until`, so they come back in log order."""

    reason: str
    until: float


@dataclass(frozen=True, slots=True)
class Undeliverable:
    """This event can never be stored as it is (e.g. it has no shard key): parked in dead letters at once."""

    reason: str


Outcome = str | Held | Undeliverable | None


class EventSink(Protocol):
    name: str

    async def open(self) -> None:
        """Connect and create the table if absent; raises SinkUnavailable when the sink cannot be reached."""
        ...

    async def deliver(self, records: Sequence[Record]) -> list[Outcome]: ...

    async def close(self) -> None: ...

    def summary(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class SinkContext:
    route: Route
    send: Send | None  # to the route's cluster (None for database sinks)
    timeout: float  # seconds per delivery
    clock: Clock = field(default_factory=LoopClock)  # the flusher's clock (a sharded sink's outages are timed on it)


SinkFactory = Callable[[SinkContext], EventSink]
SINKS: Extensions[SinkFactory] = Extensions("ingest sink")


def sink_type(route: Route | RouteModel) -> str:
    """The sink a route's ingest delivers to: as configured, else its cluster if it names one, else sqlite."""
    return route.ingest.sink.type or ("cluster" if route.cluster else "sqlite")


__all__ = [
    "SINKS",
    "BatchRejected",
    "EventSink",
    "Held",
    "Outcome",
    "SinkContext",
    "SinkFactory",
    "SinkUnavailable",
    "Undeliverable",
    "sink_type",
]
