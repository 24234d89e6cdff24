"""Sinks: where the flusher delivers batches. Named extensions: `sqlite`, `postgres`, `cluster`.

`deliver` returns one outcome per record, in order: None when stored, or the reason it failed (that record
alone is retried, and parked in dead letters after `max_attempts`). It raises `SinkUnavailable` when the sink
cannot be reached (the batch is held and retried with backoff; no attempt is counted against its events) and
`BatchRejected` when the sink refused the batch as a whole for something in its data (the flusher splits it to
find the item at fault).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from meshbatch.config.model import IngestRoute as Route
from meshbatch.ingest.record import Record
from meshbatch.pipeline.stages.compress import Send
from meshbatch.registry import Extensions


class SinkUnavailable(Exception):
    """The sink cannot take anything now (down, unreachable, overloaded)."""


class BatchRejected(Exception):
    """The sink refused this batch because of (at least) one of its events."""


Outcome = str | None


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


SinkFactory = Callable[[SinkContext], EventSink]
SINKS: Extensions[SinkFactory] = Extensions("ingest sink")


def sink_type(route: Route) -> str:
    """The sink a route's ingest delivers to: as configured, else its cluster if it names one, else sqlite."""
    return route.ingest.sink.type or ("cluster" if route.cluster else "sqlite")


__all__ = [
    "SINKS",
    "BatchRejected",
    "EventSink",
    "Outcome",
    "SinkContext",
    "SinkFactory",
    "SinkUnavailable",
    "sink_type",
]
