"""A route's `ingest:` block in its run-time form: the log, delivery and sink (meshbatch.config.model.ingest)."""

from __future__ import annotations

from typing import ClassVar, Literal

from meshbatch.config.plain.base import Plain

COLUMN_TYPES = ("text", "bigint", "double", "boolean", "json", "timestamp")


class IngestLog(Plain, frozen=True, kw_only=True):
    SECRETS: ClassVar[dict[str, str]] = {"url": "url"}  # redacted in every display (config/redact.py)
    backend: str = "sqlite"
    path: str | None = None
    sync: Literal["full", "normal"] = "full"
    max_events: int = 1000000
    max_bytes: int = 1073741824
    on_full: Literal["reject", "block"] = "reject"
    block_timeout_ms: int = 5000
    memory_events: int = 100000
    url: str = "nats://127.0.0.1:4222"
    stream: str | None = None
    subject: str | None = None
    replicas: int = 1
    ack_wait_ms: int = 30000


class Delivery(Plain, frozen=True, kw_only=True):
    """How the flusher delivers an ingest route's events (its own defaults; an older config's `batch:` block on
    the route still sets the three sizes: meshbatch.config.model.routes.IngestBatch)."""

    max_items: int = 1000
    max_bytes: int = 4194304
    max_in_flight: int | None = None
    linger_ms: float | None = None
    timeout_ms: int = 10000
    max_attempts: int = 8
    backoff_initial_ms: float = 100.0
    backoff_max_ms: float = 30000.0


class Column(Plain, frozen=True, kw_only=True):
    field: str
    type: Literal["text", "bigint", "double", "boolean", "json", "timestamp"] = "text"


class Shard(Plain, frozen=True, kw_only=True):
    """One shard of a sharded database sink (`sink.shards`); a bare string in the list is its url (postgres) or
    path (sqlite)."""

    SECRETS: ClassVar[dict[str, str]] = {"url": "url"}  # redacted in every display (config/redact.py)
    name: str | None = None
    url: str | None = None
    path: str | None = None


class Sink(Plain, frozen=True, kw_only=True):
    SECRETS: ClassVar[dict[str, str]] = {"url": "url"}  # redacted in every display (config/redact.py)
    type: str | None = None
    path: str | None = None
    url: str | None = None
    table: str = "events"
    id_column: str = "event_id"
    columns: dict[str, str | Column] = {}
    payload_column: str | None = None
    received_column: str | None = "received_at"
    create_table: bool = True
    pool_size: int = 4
    codec: str = "json-array"
    upstream_path: str = "/batch"
    upstream_method: Literal["POST", "PUT"] = "POST"
    shards: list[Shard] = []
    shard_by: str | None = None
    default_shard: str | None = None

    def shard_names(self) -> list[str]:
        """Each shard's name: its `name:`, else its place in the list ("0", "1", ...)."""
        return [s.name if s.name is not None else str(i) for i, s in enumerate(self.shards)]


class Ingest(Plain, frozen=True, kw_only=True):
    ack: Literal["memory", "fsync", "delivered"] = "fsync"
    log: IngestLog = IngestLog()
    delivery: Delivery = Delivery()
    sink: Sink = Sink()
    idempotency_scope: str = "principal"
