"""A batch and its lifecycle, as a transition table: open -> sealed -> in_flight -> done | failed.

Members are added and removed only while the batch is open; sealing fixes them and the flush reason. Any other
move raises `IllegalTransition` naming the batch, its state and the refused event.
"""

from __future__ import annotations

from meshbatch.batching.item import BATCHED, REMOVED, Item, Key
from meshbatch.http.message import Headers

OPEN, SEALED, IN_FLIGHT, DONE, FAILED = "open", "sealed", "in_flight", "done", "failed"

# (state, event) -> next state. Everything absent is illegal.
TRANSITIONS: dict[tuple[str, str], str] = {
    (OPEN, "add"): OPEN,
    (OPEN, "remove"): OPEN,
    (OPEN, "seal"): SEALED,
    (SEALED, "send"): IN_FLIGHT,
    (SEALED, "fail"): FAILED,
    (IN_FLIGHT, "finish"): DONE,
    (IN_FLIGHT, "fail"): FAILED,
}

FLUSH_REASONS = ("items", "bytes", "wait", "deadline", "drain")


class IllegalTransition(RuntimeError):
    def __init__(self, batch_id: str, state: str, event: str) -> None:
        allowed = sorted(e for (s, e) in TRANSITIONS if s == state)
        hint = f"; allowed: {', '.join(allowed)}" if allowed else "; the batch is finished"
        super().__init__(f"batch {batch_id}: cannot {event} a batch that is {state}{hint}")
        self.batch_id = batch_id
        self.state = state
        self.event = event


class Batch:
    __slots__ = ("bytes", "created_at", "done_at", "id", "items", "key", "reason", "reply_headers", "sealed_at",
                 "sent_at", "state", "upstream")

    def __init__(self, batch_id: str, key: Key, created_at: float) -> None:
        self.id = batch_id
        self.key = key
        self.created_at = created_at
        self.items: list[Item] = []
        self.bytes = 0
        self.state = OPEN
        self.reason = ""
        self.sealed_at = self.sent_at = self.done_at = 0.0
        self.upstream = ""
        self.reply_headers: Headers = []

    def _go(self, event: str) -> None:
        state = TRANSITIONS.get((self.state, event))
        if state is None:
            raise IllegalTransition(self.id, self.state, event)
        self.state = state

    def add(self, item: Item) -> None:
        self._go("add")
        if item.key != self.key:
            raise ValueError(f"batch {self.id}: item key {item.key!r} differs from the batch key {self.key!r}")
        self.items.append(item)
        self.bytes += item.size
        item.state = BATCHED
        item.batch = self

    def fill(self, items: list[Item]) -> None:
        """Add several items at once (one transition check: the accumulator's hot path)."""
        self._go("add")
        key = self.key
        size = 0
        for item in items:
            if item.key != key:
                raise ValueError(f"batch {self.id}: item key {item.key!r} differs from the batch key {key!r}")
            item.state = BATCHED
            item.batch = self
            size += item.size
        self.items.extend(items)
        self.bytes += size

    def remove(self, item: Item) -> None:
        self._go("remove")
        self.items.remove(item)
        self.bytes -= item.size
        item.state = REMOVED
        item.batch = None

    def seal(self, reason: str, now: float) -> None:
        if reason not in FLUSH_REASONS:
            raise ValueError(f"unknown flush reason {reason!r}; expected one of {', '.join(FLUSH_REASONS)}")
        self._go("seal")
        self.reason = reason
        self.sealed_at = now
        self.reply_headers = [
            (b"x-meshbatch-batch-id", self.id.encode()),
            (b"x-meshbatch-batch-size", str(len(self.items)).encode()),
            (b"x-meshbatch-flush", reason.encode()),
        ]

    def send(self, now: float) -> None:
        self._go("send")
        self.sent_at = now

    def finish(self, now: float) -> None:
        self._go("finish")
        self.done_at = now

    def fail(self, now: float) -> None:
        self._go("fail")
        self.done_at = now

    @property
    def size(self) -> int:
        return len(self.items)

    def callers(self) -> int:
        return sum(len(item.waiters) for item in self.items)

    def __repr__(self) -> str:
        return f"<Batch {self.id} {self.state} key={self.key!r} size={len(self.items)} reason={self.reason or '-'}>"


__all__ = ["DONE", "FAILED", "FLUSH_REASONS", "IN_FLIGHT", "OPEN", "SEALED", "TRANSITIONS", "Batch",
           "IllegalTransition"]
