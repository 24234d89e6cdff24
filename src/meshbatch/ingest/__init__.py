"""Ingestion mode: accept events durably (202), deliver them in batches to a cluster or a database, exactly once
in effect.

    handler (accept, pipeline, idempotency) -> log (sqlite | jetstream: group commit) -> flusher (batches,
    retries with backoff, splitting, dead letters) -> sink (sqlite | postgres | cluster)
"""

from meshbatch.ingest.flusher import Flusher, FlushPolicy
from meshbatch.ingest.handler import IngestHandler
from meshbatch.ingest.logs import LOGS, EventLog, LogError, LogFull
from meshbatch.ingest.record import EventIds, Record
from meshbatch.ingest.route import IngestRoute, flush_policy
from meshbatch.ingest.sinks import SINKS, BatchRejected, EventSink, SinkUnavailable, sink_type

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
