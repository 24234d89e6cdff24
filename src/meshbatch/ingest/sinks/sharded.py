"""A sharded database sink: `sink: {type: postgres|sqlite, shards: [...], shard_by: FIELD}`.

Each event goes to the shard its `shard_by` value hashes to (rendezvous hashing: sinks/hashing.py), so one key
always lands on one shard, in every process and replica. Per batch, the events of each shard go to that shard in
one transaction (the shard is an ordinary `postgres` or `sqlite` sink: idempotent by event id), the shards in
parallel; the outcome of each event is its shard's.

One shard down (it cannot be reached, or its transaction fails for something not in the data): its events are
`Held` until the shard's next probe time (the delivery backoff, per shard), and go back to the log with no attempt
counted, never to dead letters; the other shards keep delivering. While a shard is down nothing is sent to it:
events of its keys that come later are held until the same time, so when it is back they come out of the log in
the order they were accepted (the log takes events due at one time in sequence order), and one batch at a time
goes to each shard (a lock per shard), its events sorted by their place in the log: a key's events are stored in
the order they were accepted. The shard's probe time alone does not decide that: a batch taken before it and
delivered after it (it waited for the shard's lock, or lingered) would reach the shard ahead of held events still
in the log. So each shard remembers its held events until they come back; a part's events after the first one
still out are held too (due with it or in a moment), and the ones before it go. (An event that fails alone, for
its data, is retried later and may land after later events of its key, as with any sink; a JetStream log
redelivers in the stream's own order.)

A shard that hangs rather than refuses (a network partition that drops packets) holds up the batches that reach it
while a try is under way, up to `delivery.timeout_ms`, once per try (between tries its events are held at once):
keep that timeout short where a shard can be cut off that way. (Not holding them during a try would let a later
event of a key reach the shard before an earlier one that the try holds.)

A shard that refuses its part for something in the data (a constraint, a type) has that part split in halves
until the event at fault is alone (batching/bisection.py), without touching the other shards' parts.

An event with no key (the field missing, null, an object or an array) goes to `default_shard` when the config
names one, else straight to dead letters with the reason (`Undeliverable`): retrying it could not give it a key.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from meshbatch.batching.bisection import ALONE, Bisection
from meshbatch.config.redact import redact_url
from meshbatch.core.backoff import Backoff
from meshbatch.ingest.record import Record
from meshbatch.ingest.sinks.base import (
    BatchRejected,
    EventSink,
    Held,
    Outcome,
    SinkContext,
    SinkUnavailable,
    Undeliverable,
)
from meshbatch.ingest.sinks.hashing import Rendezvous, field_value, key_text

log = logging.getLogger("meshbatch.ingest")


def seq_of(record: Record) -> int:
    return record.seq


LOST_AFTER = 60  # seconds past its time after which a held event that did not come back is given up on
AGAIN_AFTER = 0.05  # seconds at least before a held event is due again (no busy loop while others are out)


@dataclass(slots=True)
class ShardState:
    name: str
    target: str  # its url (redacted) or path, for people
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    until: float = 0.0  # down until then (the flusher's clock); 0: up
    failures: int = 0  # consecutive failed attempts to reach it
    reason: str = ""
    held: int = 0
    outages: int = 0
    out: dict[int, float] = field(default_factory=dict)  # held events not back yet: log seq -> their `until`
    out_until: float = 0.0  # the latest `until` in `out`


class ShardedSink:
    """Events spread over `shards` (one sink each, in config order) by the rendezvous hash of their key."""

    def __init__(self, context: SinkContext, kind: str, shards: Sequence[EventSink], targets: Sequence[str]) -> None:
        config = context.route.ingest.sink
        delivery = context.route.ingest.delivery
        assert config.shard_by is not None and len(shards) == len(config.shards) >= 1
        self.name = kind
        self.shards = list(shards)
        names = config.shard_names()
        self.ring = Rendezvous(names)
        self.shard_by = config.shard_by
        self.path = tuple(config.shard_by.split("."))
        self.default = names.index(config.default_shard) if config.default_shard is not None else None
        self.clock = context.clock
        self.backoff = Backoff(delivery.backoff_initial_ms / 1000, delivery.backoff_max_ms / 1000)
        self.states = [ShardState(n, redact_url(t)) for n, t in zip(names, targets, strict=True)]
        self.refused = 0

    # -- placing ----------------------------------------------------------------------------------------------

    def place(self, record: Record) -> int | Undeliverable:
        """The index of the record's shard, or why it has none."""
        try:
            event = orjson.loads(record.body)
        except orjson.JSONDecodeError as exc:
            return Undeliverable(f"the event is not JSON ({exc.msg}): no shard key")
        key = key_text(field_value(event, self.path))
        if key is not None:
            return self.ring.place(key)
        if self.default is not None:
            return self.default
        return Undeliverable(f"no shard key: the event's {self.shard_by!r} field is missing, null, an object or "
                             "an array")

    # -- delivering -------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open every shard; a shard that cannot be reached now is marked down (its events wait), unless none can."""
        errors: list[str] = []
        for index, shard in enumerate(self.shards):
            try:
                await shard.open()
            except SinkUnavailable as exc:
                self._down(index, str(exc))
                errors.append(str(exc))
        if len(errors) == len(self.shards):
            raise SinkUnavailable(f"no shard can be reached: {errors[0]}")

    async def deliver(self, records: Sequence[Record]) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(records)
        groups: dict[int, list[int]] = {}
        for i, record in enumerate(records):
            place = self.place(record)
            if isinstance(place, Undeliverable):
                outcomes[i] = place
                self.refused += 1
            else:
                groups.setdefault(place, []).append(i)
        parts = [(shard, sorted(indexes, key=lambda i: records[i].seq)) for shard, indexes in groups.items()]
        results = await asyncio.gather(*(self._to_shard(shard, [records[i] for i in indexes])
                                         for shard, indexes in parts))
        for (_, indexes), result in zip(parts, results, strict=True):
            for i, outcome in zip(indexes, result, strict=True):
                outcomes[i] = outcome
        return outcomes

    async def _to_shard(self, index: int, records: list[Record]) -> list[Outcome]:
        state = self.states[index]
        async with state.lock:  # one batch at a time per shard: a key's events in the order they were taken
            if state.out:
                self._returned(state, records)
            if state.until > self.clock.now():
                return self._held(index, records)
            if state.out and (first := min(state.out)) < records[-1].seq:
                # the events after the first held one still out wait for it; the ones before it go now
                cut = bisect_left(records, first, key=seq_of)
                waiting = self._held(index, records[cut:], "events held before are not back from the log yet")
                return (await self._send(index, records[:cut]) if cut else []) + waiting
            return await self._send(index, records)

    async def _send(self, index: int, records: list[Record]) -> list[Outcome]:
        """One part to an up shard: stored, split when refused, or held when it turns out to be down."""
        try:
            outcomes = await self._attempt(index, records)
        except SinkUnavailable as exc:
            self._down(index, str(exc))
            return self._held(index, records)
        except BatchRejected as exc:
            return await self._isolate(index, records, str(exc))
        self._up(index)
        return outcomes

    async def _attempt(self, index: int, records: list[Record]) -> list[Outcome]:
        """One delivery to one shard; raises SinkUnavailable (anything unexpected counts as that) or BatchRejected."""
        try:
            outcomes = await self.shards[index].deliver(records)
        except (SinkUnavailable, BatchRejected):
            raise
        except Exception as exc:
            log.exception("ingest: shard %s failed unexpectedly", self.states[index].name)
            raise SinkUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if len(outcomes) != len(records):
            raise SinkUnavailable(f"the shard gave {len(outcomes)} outcomes for {len(records)} events")
        return outcomes

    async def _isolate(self, index: int, records: list[Record], refusal: str) -> list[Outcome]:
        """Split a refused part in halves until the events at fault are alone (they fail; the rest is stored)."""
        outcomes: list[Outcome | None] = [None] * len(records)
        pending = set(range(len(records)))
        bisection = Bisection(None)
        if bisection.refused(list(range(len(records)))) == ALONE:
            return [refusal]
        while (group := bisection.next()) is not None:
            try:
                result = await self._attempt(index, [records[i] for i in group])
            except BatchRejected as exc:
                if bisection.refused(group) == ALONE:
                    outcomes[group[0]] = str(exc)
                    pending.discard(group[0])
                continue
            except SinkUnavailable as exc:
                self._down(index, str(exc))
                held = self._held(index, [records[i] for i in sorted(pending)])
                return [held[0] if i in pending else outcomes[i] for i in range(len(records))]
            for i, outcome in zip(group, result, strict=True):
                outcomes[i] = outcome
                pending.discard(i)
        self._up(index)
        return outcomes

    def _held(self, index: int, records: Sequence[Record], reason: str = "") -> list[Outcome]:
        """Back to the log, all until one time: the shard's probe time, or the time events held before are due
        if that is later (the log gives events due at one time in sequence order), or in a moment."""
        state = self.states[index]
        until = max(state.until, state.out_until)
        if until <= (now := self.clock.now()):
            until = now + AGAIN_AFTER
        state.out_until = until
        out = state.out
        for record in records:
            out[record.seq] = until
        state.held += len(records)
        return [Held(f"shard {state.name}: {reason or state.reason}", until)] * len(records)

    def _returned(self, state: ShardState, records: Sequence[Record]) -> None:
        """These events are back from the log. One held long past its time (the log no longer has it) stops
        holding the shard's later events back."""
        out = state.out
        for record in records:
            out.pop(record.seq, None)
        if out and state.until <= (now := self.clock.now()):
            lost = [seq for seq, until in out.items() if until + LOST_AFTER < now]
            if lost:
                log.warning("ingest: shard %s: %d held events did not come back from the log within %ds of their "
                            "time; later events are no longer held for them", state.name, len(lost), LOST_AFTER)
                for seq in lost:
                    del out[seq]
        if not out:
            state.out_until = 0.0

    def _down(self, index: int, reason: str) -> None:
        state = self.states[index]
        if state.failures == 0:
            state.outages += 1
        state.failures += 1
        delay = self.backoff.delay(state.failures - 1)
        state.until = max(state.until, self.clock.now() + delay)
        if state.reason != reason:
            log.warning("ingest: shard %s (%s) unavailable, its events wait in the log; next try in %.2fs: %s",
                        state.name, state.target, delay, reason)
        state.reason = reason

    def _up(self, index: int) -> None:
        state = self.states[index]
        if state.failures:
            log.warning("ingest: shard %s (%s) is back", state.name, state.target)
        state.failures = 0
        state.until = 0.0
        state.reason = ""

    async def close(self) -> None:
        for shard in self.shards:
            await shard.close()

    def summary(self) -> dict[str, Any]:
        now = self.clock.now()
        shards = []
        for state, shard in zip(self.states, self.shards, strict=True):
            inner = shard.summary()
            entry: dict[str, Any] = {"name": state.name, "target": state.target, "up": state.failures == 0,
                                     "next_try_s": round(max(0.0, state.until - now), 3),
                                     "outages": state.outages, "held": state.held, "last_error": state.reason}
            entry.update({k: inner[k] for k in ("batches", "stored", "duplicates_ignored") if k in inner})
            shards.append(entry)
        return {"type": self.name, "shard_by": self.shard_by, "hash": "rendezvous (blake2b-64)",
                "table": getattr(self.shards[0], "table", None), "no_key": self.refused, "shards": shards}


__all__ = ["ShardState", "ShardedSink"]
