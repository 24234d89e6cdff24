"""Durable log backends as named extensions, each imported when a route names it (meshbatch.registry)."""

from meshbatch.ingest.logs.base import LOGS, EventLog, LogError, LogFull

LOGS.lazy("jetstream", "meshbatch.ingest.logs.jetstream", extra="nats")
LOGS.lazy("sqlite", "meshbatch.ingest.logs.sqlite")

__all__ = ["LOGS", "EventLog", "LogError", "LogFull"]
