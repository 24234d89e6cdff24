"""The sharded sink: SQLite shards with each key on its own shard, stored once per shard; events without a key;
one shard down (held, not dead-lettered, the others delivering) and back, with a key's events in order; a bad
event isolated within its shard; all on a fake clock through the flusher and the durable log."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from ingest_support import ScriptedSink, sqlite_log

from meshbatch.clock import FakeClock
from meshbatch.config.model import IngestRoute, Route
from meshbatch.core.backoff import Backoff
from meshbatch.ingest.flusher import Flusher, FlushPolicy
from meshbatch.ingest.record import Record
from meshbatch.ingest.sinks import SINKS, Held, SinkContext, Undeliverable
from meshbatch.ingest.sinks.hashing import Rendezvous
from meshbatch.ingest.sinks.sharded import ShardedSink


def route(sink: dict[str, Any]) -> IngestRoute:
    built = Route.model_validate({"name": "r", "ingest": {"sink": sink, "delivery": {
        "backoff_initial_ms": 1000, "backoff_max_ms": 8000}}})
    assert isinstance(built, IngestRoute)
    return built


def event(i: int, device: Any = None, seq: int = 0) -> Record:
    body: dict[str, Any] = {"n": i} if device is None else {"n": i, "device": device}
    return Record(f"id-{i}", orjson.dumps(body), 1700000000.0 + i, seq=seq or i + 1)


def rows(path: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(path)
    try:
        return [(r[0], orjson.loads(r[1])["n"]) for r in db.execute("SELECT event_id, payload FROM events "
                                                                      "ORDER BY rowid")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def sqlite_shards(tmp_path: Path, **extra: Any) -> tuple[Any, list[Path]]:
    paths = [tmp_path / f"shard-{i}.db" for i in range(3)]
    config = {"type": "sqlite", "shards": [str(p) for p in paths], "shard_by": "device", **extra}
    return SINKS.get("sqlite")(SinkContext(route(config), None, 5.0, FakeClock())), paths


async def test_each_key_lands_on_its_shard_once(tmp_path: Path) -> None:
    sink, paths = sqlite_shards(tmp_path)
    assert isinstance(sink, ShardedSink)
    await sink.open()
    batch = [event(i, f"d{i % 7}") for i in range(60)]
    assert await sink.deliver(batch) == [None] * 60
    assert await sink.deliver(batch[30:]) == [None] * 30  # delivered again: each id stored once
    ring = Rendezvous(["0", "1", "2"])
    total = 0
    for index, path in enumerate(paths):
        stored = rows(path)
        total += len(stored)
        assert len({i for i, _ in stored}) == len(stored)
        assert all(ring.place(f"d{n % 7}".encode()) == index for _, n in stored)
    assert total == 60
    summary = sink.summary()
    assert [s["batches"] for s in summary["shards"]] == [2, 2, 2]  # one transaction per shard per batch
    assert sum(s["duplicates_ignored"] for s in summary["shards"]) == 30
    await sink.close()


async def test_numbers_and_their_text_are_one_key(tmp_path: Path) -> None:
    sink, paths = sqlite_shards(tmp_path)
    await sink.deliver([event(1, 42), event(2, "42")])
    assert sorted(len(rows(p)) for p in paths) == [0, 0, 2]
    await sink.close()


async def test_an_event_without_a_key_is_undeliverable_or_goes_to_the_default_shard(tmp_path: Path) -> None:
    sink, _ = sqlite_shards(tmp_path / "a")
    outcomes = await sink.deliver([event(1), event(2, None), event(3, {"x": 1}), event(4, "d")])
    assert [type(o) for o in outcomes] == [Undeliverable, Undeliverable, Undeliverable, type(None)]
    assert isinstance(outcomes[0], Undeliverable) and "'device' field is missing" in outcomes[0].reason
    assert sink.summary()["no_key"] == 3
    garbled = await sink.deliver([Record("bad", b"\xff{not json", 1.0)])
    assert isinstance(garbled[0], Undeliverable) and "not JSON" in garbled[0].reason
    await sink.close()
    fallback, _ = sqlite_shards(tmp_path / "b", shards=[{"name": "x", "path": str(tmp_path / "x.db")},
                                                            {"name": "y", "path": str(tmp_path / "y.db")}],
                                    default_shard="y")
    assert await fallback.deliver([event(1), event(2, [1])]) == [None, None]
    assert len(rows(tmp_path / "y.db")) == 2 and rows(tmp_path / "x.db") == []
    await fallback.close()


def scripted(names: Sequence[str] = ("0", "1", "2")) -> tuple[ShardedSink, list[ScriptedSink], FakeClock]:
    clock = FakeClock()
    shards = [ScriptedSink() for _ in names]
    config = route({"type": "sqlite", "shards": [{"name": n, "path": f"/nowhere/{n}.db"} for n in names],
                    "shard_by": "device"})
    sink = ShardedSink(SinkContext(config, None, 5.0, clock), "sqlite", shards, [f"/nowhere/{n}.db" for n in names])
    sink.backoff = Backoff(1.0, 8.0, random.Random(7).random)
    return sink, shards, clock


RING = Rendezvous(["0", "1", "2"])


def device_on(shard: int, ring: Rendezvous = RING) -> list[str]:
    return [f"d{i}" for i in range(200) if ring.place(f"d{i}".encode()) == shard]


async def test_a_down_shard_holds_its_events_and_is_not_called_until_its_probe_time() -> None:
    sink, shards, clock = scripted()
    shards[1].down = True
    down, up = device_on(1)[0], device_on(0)[0]
    outcomes = await sink.deliver([event(1, up), event(2, down), event(3, down)])
    assert outcomes[0] is None
    held = outcomes[1]
    assert isinstance(held, Held) and "down for maintenance" in held.reason and held.until > clock.now()
    assert outcomes[2] == held  # one outage, one time: they come back in log order
    shard = sink.summary()["shards"][1]
    assert not shard["up"] and shard["next_try_s"] > 0 and "down for maintenance" in shard["last_error"]
    calls = len(shards[1].calls)
    later = await sink.deliver([event(4, down), event(5, up)])
    assert later == [held, None] and len(shards[1].calls) == calls  # not called while down
    clock.advance(held.until - clock.now())
    assert not sink.summary()["shards"][1]["up"]  # down until a try succeeds
    shards[1].down = False
    assert await sink.deliver([event(2, down), event(3, down), event(4, down)]) == [None] * 3
    assert shards[1].stored == ["id-2", "id-3", "id-4"]
    assert sink.summary()["shards"][1]["up"] and sink.summary()["shards"][1]["outages"] == 1


async def test_a_batch_delivered_after_the_probe_time_waits_for_the_events_held_before_it() -> None:
    """A batch taken while the shard was down but delivered after its probe time (it waited for the shard's lock,
    or lingered) must not reach the shard before the events held earlier, which are still in the log."""
    sink, shards, clock = scripted()
    key = device_on(1)[0]
    shards[1].down = True
    first = await sink.deliver([event(1, key), event(2, key)])
    assert isinstance(first[0], Held)
    clock.advance(first[0].until - clock.now() + 1.0)
    shards[1].down = False
    later = await sink.deliver([event(5, key)])  # events 1 and 2 are due but not back yet
    assert isinstance(later[0], Held) and later[0].until >= first[0].until and shards[1].stored == []
    assert "not back from the log yet" in later[0].reason
    assert await sink.deliver([event(1, key), event(2, key)]) == [None, None]
    assert await sink.deliver([event(5, key)]) == [None]
    assert shards[1].stored == ["id-1", "id-2", "id-5"]
    shards[1].down = True
    held = await sink.deliver([event(8, key)])
    clock.advance(held[0].until - clock.now())
    shards[1].down = False
    outcomes = await sink.deliver([event(6, key), event(7, key), event(9, key)])  # before and after the one out
    assert outcomes[:2] == [None, None] and isinstance(outcomes[2], Held)
    assert await sink.deliver([event(8, key), event(9, key)]) == [None, None]
    assert shards[1].stored == ["id-1", "id-2", "id-5", "id-6", "id-7", "id-8", "id-9"]


async def test_a_held_event_the_log_never_gives_back_stops_holding_others_after_a_while() -> None:
    sink, shards, clock = scripted()
    key = device_on(1)[0]
    shards[1].down = True
    await sink.deliver([event(1, key)])
    shards[1].down = False
    clock.advance(30.0)
    assert isinstance((await sink.deliver([event(2, key)]))[0], Held)  # event 1 may still come back
    clock.advance(120.0)
    assert await sink.deliver([event(2, key)]) == [None]  # it was lost: the shard no longer waits for it
    assert shards[1].stored == ["id-2"]


async def test_a_refused_part_is_split_within_its_shard_only() -> None:
    sink, shards, _ = scripted()
    key = device_on(2)[0]
    other = device_on(0)[0]
    shards[2].poison = {"id-3"}
    batch = [event(i, key if i < 6 else other) for i in range(8)]
    outcomes = await sink.deliver(batch)
    assert outcomes[3] == "a value does not fit" and all(o is None for i, o in enumerate(outcomes) if i != 3)
    assert shards[0].calls == [["id-6", "id-7"]]  # the other shard's part went once


async def test_through_the_flusher_a_shard_outage_dead_letters_nothing_and_keeps_order(tmp_path: Path) -> None:
    sink, shards, clock = scripted()
    log = sqlite_log(tmp_path, clock)
    await log.open()
    flusher = Flusher("r", log, sink, FlushPolicy(max_items=50, max_attempts=2), clock,
                      backoff=Backoff(1.0, 8.0, random.Random(3).random))
    keys = [device_on(0)[0], device_on(1)[0], device_on(1)[1], device_on(2)[0]]
    shards[1].down = True
    n = 0
    for _round in range(12):  # events keep coming while shard 1 is down, through many backoffs
        await log.append([event(n + j, keys[(n + j) % 4], seq=0) for j in range(20)])
        n += 20
        while await flusher.step():
            pass
        clock.advance(1.5)
    assert shards[1].stored == []
    assert len(shards[0].stored) + len(shards[2].stored) == n // 2  # the live shards kept delivering
    await log.flush()
    assert log.stats()["dead_letters"] == 0 and log.stats()["backlog"] == n // 2
    assert flusher.summary()["dead_lettered"] == 0
    shards[1].down = False
    clock.advance(10.0)
    while await flusher.step():
        pass
    assert len(shards[1].stored) == n // 2
    for key in keys:  # every key's events stored in the order they were accepted
        numbers = [int(i.split("-")[1]) for s in shards for i in s.stored if keys[int(i.split("-")[1]) % 4] == key]
        assert numbers == sorted(numbers)
    await log.flush()
    assert log.stats()["backlog"] == 0
    await log.close()
