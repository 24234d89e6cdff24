"""What the flusher asks of the tracing passed in to it (runtime/observability.py attaches it): a span per
delivery of events to the sink, linked to the requests that brought them. telemetry/spans.py provides it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from meshbatch.ingest.record import Record

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class DeliveryTracing(Protocol):
    def start_delivery(self, route: str, records: Sequence[Record]) -> Span: ...
    def finish_delivery(self, span: Span, stored: int, failed: int, error: str) -> None: ...


__all__ = ["DeliveryTracing"]
