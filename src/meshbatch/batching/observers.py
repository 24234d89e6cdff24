"""What the batching core asks of the observers passed in to it (runtime/observability.py attaches them): a
batch's spans and the recorder of batch timings. Named here as protocols, so the core depends on no telemetry
module; telemetry/spans.py and telemetry/recorder.py provide them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from meshbatch.errors import ProxyError
from meshbatch.http.message import Headers, Request

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from meshbatch.batching.batch import Batch


class BatchTracing(Protocol):
    """The trace context an item carries upstream, a CLIENT span per upstream batch call, one per part when a
    refused batch is split, and the links of the callers that share an item (dedup joiners)."""

    def item_headers(self, request: Request) -> Headers: ...
    def start(self, route: str, batch: Batch, headers: Headers) -> Span: ...
    def start_part(self, route: str, parent: Span, size: int, headers: Headers) -> tuple[Span, Headers]: ...
    def link_joiner(self, span: Span, trace: bytes | None, index: int) -> None: ...
    def finish(self, span: Span, batch: Batch, status: int, error: ProxyError | None) -> None: ...


class BatchRecording(Protocol):
    """Keeps the timings of the last batches, up to `max_items` items (`meshbatch tune` learns from them; the
    admin API exports them)."""

    max_items: int
    items: int  # items held now
    recorded: int  # batches recorded since start

    def add(self, batch: Batch, done: float, ok: bool) -> None: ...
    def export(self) -> list[dict[str, object]]: ...


__all__ = ["BatchRecording", "BatchTracing"]
