"""Ingest sinks as named extensions, each imported when a route names it (meshbatch.registry)."""

from meshbatch.ingest.sinks.base import (
    SINKS,
    BatchRejected,
    EventSink,
    Held,
    Outcome,
    SinkContext,
    SinkUnavailable,
    Undeliverable,
    sink_type,
)

SINKS.lazy("cluster", "meshbatch.ingest.sinks.cluster")
SINKS.lazy("postgres", "meshbatch.ingest.sinks.postgres", extra="postgres")
SINKS.lazy("sqlite", "meshbatch.ingest.sinks.sqlite")

__all__ = [
    "SINKS",
    "BatchRejected",
    "EventSink",
    "Held",
    "Outcome",
    "SinkContext",
    "SinkUnavailable",
    "Undeliverable",
    "sink_type",
]
