"""The embedded SQLite log: group commit, delivery order, settling, recovery after a restart, limits."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from ingest_support import records, request, sqlite_log

from meshbatch.clock import FakeClock
from meshbatch.ingest.logs.base import LogError, LogFull
from meshbatch.ingest.record import Record


async def test_concurrent_appends_share_one_commit(tmp_path: Path) -> None:
    log = sqlite_log(tmp_path)
    await log.open()
    waits = [log.append(records(1, i)) for i in range(64)]
    await asyncio.gather(*waits)
    assert log.commits == 1  # one fsync for 64 producers
    assert log.stats()["events_per_append_commit"] == 64
    batch = await log.take(1000, 1 << 20)
    assert [r.id for r in batch] == [f"e{i}" for i in range(64)]
    assert [r.seq for r in batch] == list(range(1, 65))
    await log.close()


async def test_take_respects_items_and_bytes(tmp_path: Path) -> None:
    log = sqlite_log(tmp_path)
    await log.open()
    await log.append(records(10))
    assert len(await log.take(3, 1 << 20)) == 3
    assert len(await log.take(100, 20)) == 2  # 8-byte bodies: the byte cap stops the batch
    assert len(await log.take(100, 1)) == 1  # always at least one
    assert log.stats()["leased"] == 6
    await log.close()


async def test_ack_retry_dead_and_recovery(tmp_path: Path) -> None:
    clock = FakeClock()
    log = sqlite_log(tmp_path, clock)
    await log.open()
    await log.append(records(5))
    a, b, c, d, e = await log.take(10, 1 << 20)
    log.ack([a, b])
    log.retry([c], 5.0, count_attempt=True)
    log.retry([d], 1.0, count_attempt=False)
    log.dead([e], "poison")
    await log.flush()
    assert await log.take(10, 1 << 20) == []
    clock.advance(1.0)
    assert [r.id for r in await log.take(10, 1 << 20)] == ["e3"]
    clock.advance(4.0)
    again = await log.take(10, 1 << 20)
    assert [(r.id, r.attempts) for r in again] == [("e2", 1)]
    stats = log.stats()
    assert (stats["backlog"], stats["dead_letters"]) == (2, 1)
    assert stats["bytes"] == 16
    await log.close()

    reopened = sqlite_log(tmp_path, clock)  # a restart: the unacknowledged events come back, attempts kept
    await reopened.open()
    back = await reopened.take(10, 1 << 20)
    assert sorted((r.id, r.attempts) for r in back) == [("e2", 1), ("e3", 0)]
    letters = await reopened.dead_letters(10)
    assert [(d["id"], d["reason"], d["body"]) for d in letters] == [("e4", "poison", '{"n": 4}')]
    assert await reopened.replay(None, 10) == 1
    replayed = await reopened.take(10, 1 << 20)
    assert [(r.id, r.attempts) for r in replayed] == [("e4", 0)]
    assert reopened.stats()["dead_letters"] == 0
    await reopened.close()


async def test_a_crash_loses_only_acks_never_appends(tmp_path: Path) -> None:
    log = sqlite_log(tmp_path)
    await log.open()
    await log.append(records(3))
    taken = await log.take(10, 1 << 20)
    log.ack(taken[:1])  # lazy: not written yet when the process dies
    db = sqlite3.connect(tmp_path / "log.db")  # what a crash right now would leave on disk: the commit's 3 events,
    assert db.execute("SELECT id, n, gone FROM events").fetchall() == [("e0,e1,e2", 3, None)]  # one row
    db.close()
    await log.flush()
    db = sqlite3.connect(tmp_path / "log.db")
    assert db.execute("SELECT id, n, gone FROM events").fetchall() == [("e0,e1,e2", 3, "0")]
    db.close()
    await log.close()


@pytest.mark.parametrize("make", [records, request], ids=["a-row-each", "one-row-a-request"])
async def test_memory_bound_reads_back_in_order(tmp_path: Path, make: Callable[[int, int], list[Record]]) -> None:
    log = sqlite_log(tmp_path, memory_events=4)
    await log.open()
    for i in range(5):
        await log.append(make(3, i * 3))
    seen: list[str] = []
    while batch := await log.take(2, 1 << 20):
        seen += [r.id for r in batch]
        log.ack(batch)
    assert seen == [f"e{i}" for i in range(15)]
    assert log.stats()["reading_back"] is False
    await log.close()


async def test_limits_refuse_with_429(tmp_path: Path) -> None:
    log = sqlite_log(tmp_path, max_events=3)
    await log.open()
    await log.append(records(3))
    assert not log.has_room(1, 1)
    with pytest.raises(LogFull) as info:
        log.append(records(1, 3))
    assert info.value.status == 429
    assert not await log.wait_room(1, 1, 0.0)
    batch = await log.take(10, 1 << 20)
    log.ack(batch)
    waiter = asyncio.ensure_future(log.wait_room(1, 1, 5.0))
    await log.flush()
    assert await waiter
    await log.close()
    sized = sqlite_log(tmp_path / "b", max_bytes=20)
    await sized.open()
    with pytest.raises(LogFull):
        sized.append(records(3))
    await sized.close()


async def test_one_process_per_log_file(tmp_path: Path) -> None:
    first = sqlite_log(tmp_path)
    await first.open()
    second = sqlite_log(tmp_path)
    with pytest.raises(LogError, match="in use by another process"):
        await second.open()
    await first.close()
    await second.open()
    await second.close()


async def test_an_events_traceparent_survives_a_restart_and_old_logs_gain_the_column(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "log.db")  # a log written before events kept their traceparent
    old.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body BLOB NOT NULL, "
                "received REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)")
    old.execute("INSERT INTO events VALUES (1, 'old', X'7B7D', 1.0, 0)")
    old.commit()
    old.close()
    log = sqlite_log(tmp_path)
    await log.open()
    traced = records(2, 1)
    traced[0].trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await log.append(traced)
    await log.close()
    reopened = sqlite_log(tmp_path)
    await reopened.open()
    back = await reopened.take(10, 1 << 20)
    assert [(r.id, r.trace) for r in back] == [
        ("old", None), ("e1", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ("e2", None)]
    await reopened.close()
