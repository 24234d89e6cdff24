"""A route's `ingest:` block (meshbatch.ingest): the log, delivery and sink."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from meshbatch.config.model.base import Millis, Model, PositiveInt, WritePath, secret
from meshbatch.config.model.batch import IdempotencyScope


class IngestLog(Model):
    backend: str = "sqlite"  # sqlite | jetstream
    path: WritePath | None = None  # sqlite: the log file (default meshbatch-data/ingest-ROUTE.db)
    sync: Literal["full", "normal"] = "full"  # sqlite: fsync each group commit, or only at checkpoints
    max_events: PositiveInt = 1_000_000
    max_bytes: PositiveInt = 1_073_741_824
    on_full: Literal["reject", "block"] = "reject"
    block_timeout_ms: Millis = 5_000
    memory_events: PositiveInt = 100_000  # committed events kept in memory for delivery; the rest read back
    url: Annotated[str, secret("url")] = "nats://127.0.0.1:4222"  # jetstream
    stream: str | None = None  # jetstream (default MESHBATCH_ROUTE)
    subject: str | None = None  # jetstream (default meshbatch.ingest.ROUTE)
    replicas: Annotated[int, Field(ge=1, le=5)] = 1
    ack_wait_ms: Millis = 30_000


class Delivery(Model):
    """How the flusher delivers an ingest route's events (its own defaults; an older config's `batch:` block on
    the route still sets the three sizes: meshbatch.config.model.routes.IngestBatch)."""

    max_items: Annotated[int, Field(ge=1, le=100_000)] = 1000
    max_bytes: PositiveInt = 4_194_304
    # None: 1 for the sqlite sink (it writes on one thread: a second batch would only queue there, while one at a
    # time lets the next batch grow), 2 for the others
    max_in_flight: Annotated[int, Field(ge=1, le=256)] | None = None
    # None: 0 with `ack: delivered` (its producers wait for the delivery), else DEFAULT_LINGER_MS
    # (meshbatch.ingest.route.flush_policy)
    linger_ms: Annotated[float, Field(ge=0, le=60_000)] | None = None
    timeout_ms: Millis = 10_000
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 8
    backoff_initial_ms: Annotated[float, Field(gt=0, le=3_600_000)] = 100
    backoff_max_ms: Annotated[float, Field(gt=0, le=3_600_000)] = 30_000


COLUMN_TYPES = ("text", "bigint", "double", "boolean", "json", "timestamp")


class Column(Model):
    field: Annotated[str, Field(min_length=1)]  # a dotted path into the event
    type: Literal["text", "bigint", "double", "boolean", "json", "timestamp"] = "text"


class Shard(Model):
    """One shard of a sharded database sink (`sink.shards`); a bare string in the list is its url (postgres) or
    path (sqlite)."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None  # what keys hash to (default: index)
    url: Annotated[str | None, secret("url")] = None  # postgres
    path: WritePath | None = None  # sqlite


class Sink(Model):
    type: str | None = None  # sqlite | postgres | cluster; default: cluster if the route names one, else sqlite
    path: WritePath | None = None  # sqlite: the database file (default meshbatch-data/sink.db)
    url: Annotated[str | None, secret("url")] = None  # postgres: postgresql://user@host:port/db (${ENV} expanded)
    table: str = "events"
    id_column: str = "event_id"
    columns: dict[str, str | Column] = {}  # column -> event field path (text), or {field, type}
    payload_column: str | None = None  # the whole event as JSON (JSONB); default `payload` when no columns
    received_column: str | None = "received_at"
    create_table: bool = True
    pool_size: Annotated[int, Field(ge=1, le=64)] = 4  # postgres connections
    codec: str = "json-array"  # cluster: the batch wire format
    upstream_path: str = "/batch"  # cluster: where batches go
    upstream_method: Literal["POST", "PUT"] = "POST"  # cluster
    # sharded database sinks (meshbatch.ingest.sinks.sharded): instead of url/path, at least two databases
    shards: Annotated[list[Shard], Field(max_length=256)] = []
    shard_by: str | None = None  # the event field (dotted path) whose value picks the shard
    default_shard: str | None = None  # the shard (name) of events without that field; None: dead letters

    @model_validator(mode="before")
    @classmethod
    def _bare_shards(cls, data: Any) -> Any:
        """`shards: [URL, ...]` (postgres) or `[PATH, ...]` (sqlite): each string becomes {url: ...} or {path: ...}."""
        if isinstance(data, dict) and isinstance(data.get("shards"), list):
            key = "url" if data.get("type") == "postgres" else "path"
            data = {**data, "shards": [{key: s} if isinstance(s, str) else s for s in data["shards"]]}
        return data

    def shard_names(self) -> list[str]:
        """Each shard's name: its `name:`, else its place in the list ("0", "1", ...)."""
        return [s.name if s.name is not None else str(i) for i, s in enumerate(self.shards)]


class Ingest(Model):
    ack: Literal["memory", "fsync", "delivered"] = "fsync"
    log: IngestLog = IngestLog()
    delivery: Delivery = Delivery()
    sink: Sink = Sink()
    idempotency_scope: IdempotencyScope = "principal"  # whose keys name the same event (security/scope.py)
