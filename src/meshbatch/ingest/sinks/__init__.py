"""Ingest sinks as named extensions; importing this package registers them."""

from meshbatch.ingest.sinks import cluster as _cluster  # noqa: F401  (registers "cluster")
from meshbatch.ingest.sinks import postgres as _postgres  # noqa: F401  (registers "postgres")
from meshbatch.ingest.sinks import sqlite as _sqlite  # noqa: F401  (registers "sqlite")
from meshbatch.ingest.sinks.base import (
    SINKS,
    BatchRejected,
    EventSink,
    Outcome,
    SinkContext,
    SinkUnavailable,
    sink_type,
)

__all__ = ["SINKS", "BatchRejected", "EventSink", "Outcome", "SinkContext", "SinkUnavailable", "sink_type"]
