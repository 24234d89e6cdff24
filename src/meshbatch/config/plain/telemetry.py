"""Observability in its run-time form: access logs, tracing, the batch recorder (meshbatch.config.model.telemetry)."""

from __future__ import annotations

from typing import ClassVar, Literal

from meshbatch.config.plain.base import Plain


class AccessLog(Plain, frozen=True, kw_only=True):
    """One JSON line per answered request, buffered and written on a timer (off the request path)."""

    path: str = "-"
    sample: float = 1.0
    always_errors: bool = True
    flush_ms: int = 1000
    max_buffer: int = 65536


class Tracing(Plain, frozen=True, kw_only=True):
    """OpenTelemetry spans: one per caller request, one per upstream batch call linked to its members."""

    SECRETS: ClassVar[dict[str, str]] = {"endpoint": "url", "headers": "values"}  # redacted (config/redact.py)
    exporter: Literal["otlp", "console", "file"] = "otlp"
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    headers: dict[str, str] = {}
    path: str | None = None
    sample: float = 1.0
    service_name: str = "meshbatch"
    timeout_ms: int = 10000
    export_interval_ms: int = 1000
    max_queue: int = 8192
    max_links: int = 1024


class Recorder(Plain, frozen=True, kw_only=True):
    """A bounded record of recent batches per batching route (arrivals, sizes, upstream times) for `tune`."""

    max_items: int = 65536
