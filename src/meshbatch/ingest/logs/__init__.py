"""Durable log backends as named extensions; importing this package registers them."""

from meshbatch.ingest.logs import jetstream as _jetstream  # noqa: F401  (registers "jetstream")
from meshbatch.ingest.logs import sqlite as _sqlite  # noqa: F401  (registers "sqlite")
from meshbatch.ingest.logs.base import LOGS, EventLog, LogError, LogFull

__all__ = ["LOGS", "EventLog", "LogError", "LogFull"]
