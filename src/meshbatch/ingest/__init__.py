"""Ingestion mode: accept events durably (202), deliver them in batches to a cluster or a database, exactly once
in effect.

    handler (accept, pipeline, idempotency) -> log (sqlite | jetstream: group commit) -> flusher (batches,
    retries with backoff, splitting, dead letters) -> sink (sqlite | postgres | cluster)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshbatch.core.lazy import lazy_names

if TYPE_CHECKING:
    from meshbatch.ingest.flusher import Flusher, FlushPolicy
    from meshbatch.ingest.handler import IngestHandler
    from meshbatch.ingest.logs import LOGS, EventLog, LogError, LogFull
    from meshbatch.ingest.record import EventIds, Record
    from meshbatch.ingest.route import IngestRoute, flush_policy
    from meshbatch.ingest.sinks import SINKS, BatchRejected, EventSink, SinkUnavailable, sink_type

# Each name is imported when first read, so that a module of the package (its config checks, say)
# imports nothing else of it: a config without such a route never loads the rest.
_MODULES = {
    "BatchRejected": "meshbatch.ingest.sinks",
    "EventIds": "meshbatch.ingest.record",
    "EventLog": "meshbatch.ingest.logs",
    "EventSink": "meshbatch.ingest.sinks",
    "FlushPolicy": "meshbatch.ingest.flusher",
    "Flusher": "meshbatch.ingest.flusher",
    "IngestHandler": "meshbatch.ingest.handler",
    "IngestRoute": "meshbatch.ingest.route",
    "LOGS": "meshbatch.ingest.logs",
    "LogError": "meshbatch.ingest.logs",
    "LogFull": "meshbatch.ingest.logs",
    "Record": "meshbatch.ingest.record",
    "SINKS": "meshbatch.ingest.sinks",
    "SinkUnavailable": "meshbatch.ingest.sinks",
    "flush_policy": "meshbatch.ingest.route",
    "sink_type": "meshbatch.ingest.sinks",
}


__getattr__ = lazy_names(__name__, _MODULES)


__all__ = [
    "LOGS",
    "SINKS",
    "BatchRejected",
    "EventIds",
    "EventLog",
    "EventSink",
    "FlushPolicy",
    "Flusher",
    "IngestHandler",
    "IngestRoute",
    "LogError",
    "LogFull",
    "Record",
    "SinkUnavailable",
    "flush_policy",
    "sink_type",
]
