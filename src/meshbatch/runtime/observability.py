"""How the running proxy turns its observability config into objects (access log, tracing, batch recorders) and
attaches them to the listeners, batchers and ingest routes of each snapshot.

Everything here is decided once per config, never per request: a listener's observer is its plain request
counters unless access logs are on; its requests get SERVER spans only when tracing is on; a batcher's
`tracing` and `recorder` are None unless configured. On reload a changed `access_log` or `tracing` block replaces
the old object (which is flushed and closed in the background); an unchanged one is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING

from meshbatch.config import plain
from meshbatch.telemetry.access_log import AccessLog, Observer
from meshbatch.telemetry.metrics import Registry
from meshbatch.telemetry.recorder import BatchRecorder

if TYPE_CHECKING:
    from meshbatch.batching.handler import BatchHandler
    from meshbatch.ingest.route import IngestRoute
    from meshbatch.telemetry.spans import BatchSpans, RequestSpans
    from meshbatch.telemetry.tracing import Tracing

log = logging.getLogger("meshbatch.telemetry")


def _tracing(config: plain.Tracing | None) -> tuple[Tracing | None, BatchSpans | None]:
    if config is None:
        return None, None
    from meshbatch.telemetry.spans import BatchSpans
    from meshbatch.telemetry.tracing import Tracing

    tracing = Tracing(config)
    return tracing, BatchSpans(tracing)


class Observability:
    def __init__(self, config: plain.Config, metrics: Registry) -> None:
        self.metrics = metrics
        self.access: AccessLog | None = AccessLog(config.access_log, metrics) if config.access_log else None
        self.tracing, self.spans = _tracing(config.tracing)
        self.recorder_items = config.recorder.max_items
        self._started = False
        self._closing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the timers (in the running loop)."""
        self._started = True
        if self.access is not None:
            self.access.start()

    # -- what listeners and batchers get --------------------------------------------------------------------

    def request_spans(self) -> RequestSpans | None:
        """What opens and closes a SERVER span per request (None: tracing is off)."""
        if self.tracing is None:
            return None
        from meshbatch.telemetry.spans import RequestSpans

        return RequestSpans(self.tracing)

    def observer(self, listener: str, stats: Observer) -> Observer:
        return stats if self.access is None else self.access.observer(listener, stats)

    def attach(self, batchers: Iterable[BatchHandler], ingest: Iterable[IngestRoute]) -> None:
        """Give a snapshot's batchers the current tracing and a recorder (a kept batcher keeps its record), and
        its ingest routes' flushers the tracing."""
        for route in ingest:  # ingest deliveries get spans linked to their requests' spans
            route.flusher.tracing = self.spans
        for batcher in batchers:
            dispatcher = batcher.dispatcher
            dispatcher.tracing = self.spans
            if self.recorder_items <= 0:
                dispatcher.recorder = None
            elif dispatcher.recorder is None or dispatcher.recorder.max_items != self.recorder_items:
                dispatcher.recorder = BatchRecorder(self.recorder_items)

    # -- reload and shutdown --------------------------------------------------------------------------------

    def update(self, config: plain.Config) -> None:
        """Adopt a reloaded config: replace what changed now; close the replaced objects in the background."""
        self.recorder_items = config.recorder.max_items
        old_access = self.access
        if (old_access.config if old_access is not None else None) != config.access_log:
            self.access = AccessLog(config.access_log, self.metrics) if config.access_log else None
            if self.access is not None and self._started:
                self.access.start()
            if old_access is not None:
                self._background(old_access.close())
        old_tracing = self.tracing
        if (old_tracing.config if old_tracing is not None else None) != config.tracing:
            try:
                self.tracing, self.spans = _tracing(config.tracing)
            except Exception:
                log.exception("tracing could not be set up; tracing is off until the next reload")
                self.tracing, self.spans = None, None
            if old_tracing is not None:
                self._background(asyncio.to_thread(old_tracing.shutdown))

    def _background(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("closing a replaced access log or tracer failed")

        task = asyncio.get_running_loop().create_task(run())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Write the buffered access-log lines and export the queued spans."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self.access is not None:
            await self.access.close()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)


__all__ = ["Observability"]
