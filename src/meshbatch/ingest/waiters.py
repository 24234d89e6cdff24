"""Callers waiting for their events to be delivered (`ack: delivered`), by event id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from meshbatch.ingest.record import Record
from meshbatch.ingest.refusals import DeliveryFailed


class Waiters:
    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[str, list[asyncio.Future[None]]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, ids: Iterable[str]) -> list[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        futures = []
        for event_id in ids:
            future: asyncio.Future[None] = loop.create_future()
            self._by_id.setdefault(event_id, []).append(future)
            futures.append(future)
        return futures

    def discard(self, ids: Iterable[str], futures: Iterable[asyncio.Future[None]]) -> None:
        gone = set(futures)
        for event_id in ids:
            left = [f for f in self._by_id.get(event_id, ()) if f not in gone]
            if left:
                self._by_id[event_id] = left
            else:
                self._by_id.pop(event_id, None)

    def delivered(self, records: Iterable[Record]) -> None:
        if not self._by_id:
            return
        for record in records:
            for future in self._by_id.pop(record.id, ()):
                if not future.done():
                    future.set_result(None)

    def failed(self, records: Iterable[Record], reason: str) -> None:
        if not self._by_id:
            return
        for record in records:
            for future in self._by_id.pop(record.id, ()):
                if not future.done():
                    future.set_exception(DeliveryFailed(detail=f"event {record.id}: {reason}"))


__all__ = ["Waiters"]
