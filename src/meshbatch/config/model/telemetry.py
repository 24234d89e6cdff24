"""Observability (meshbatch.telemetry): access logs, tracing, the batch recorder behind `meshbatch tune`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from meshbatch.config.model.base import Millis, Model, WritePath, secret

Fraction = Annotated[float, Field(ge=0, le=1)]


class AccessLog(Model):
    """One JSON line per answered request, buffered and written on a timer (off the request path)."""

    path: Annotated[WritePath, Field(min_length=1)] = "-"  # "-" is stdout; anything else a file, appended to
    sample: Fraction = 1.0  # the share of requests logged
    always_errors: bool = True  # log every 4xx/5xx answer and every flagged one, whatever `sample` says
    flush_ms: Millis = 1_000
    max_buffer: Annotated[int, Field(ge=16, le=10_000_000)] = 65_536  # lines waiting; beyond: dropped, counted


class Tracing(Model):
    """OpenTelemetry spans: one per caller request, one per upstream batch call linked to its members."""

    exporter: Literal["otlp", "console", "file"] = "otlp"
    endpoint: Annotated[str, secret("url")] = "http://127.0.0.1:4318/v1/traces"  # otlp (OTLP/HTTP protobuf)
    headers: Annotated[dict[str, str], secret("values")] = {}  # otlp
    path: WritePath | None = None  # file: one JSON span per line
    sample: Fraction = 1.0  # share of new traces recorded; a caller's sampled traceparent is always followed
    service_name: Annotated[str, Field(min_length=1)] = "meshbatch"
    timeout_ms: Millis = 10_000  # one export
    export_interval_ms: Millis = 1_000
    max_queue: Annotated[int, Field(ge=16, le=1_000_000)] = 8_192  # spans waiting for export; beyond: dropped
    max_links: Annotated[int, Field(ge=1, le=100_000)] = 1_024  # links per batch span (one per member)

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("an OTLP/HTTP endpoint is http(s)://HOST:PORT/v1/traces")
        return value


class Recorder(Model):
    """A bounded record of recent batches per batching route (arrivals, sizes, upstream times) for `tune`."""

    max_items: Annotated[int, Field(ge=0, le=10_000_000)] = 65_536  # arrivals kept per route; 0 turns it off
