"""The SQLite log's units: one row for the events of one append, each event still settled on its own, and what a
crash or a restart leaves of them (ingest/logs/sqlite_units.py)."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from pathlib import Path

import pytest
from ingest_support import request, sqlite_log

from meshbatch.clock import FakeClock
from meshbatch.ingest.logs.sqlite import SQLiteLog
from meshbatch.ingest.logs.sqlite_units import joinable
from meshbatch.ingest.record import Record


def rows(path: Path) -> list[tuple[int, int | None, str | None]]:
    db = sqlite3.connect(path / "log.db")
    try:
        return db.execute("SELECT seq, n, gone FROM events ORDER BY seq").fetchall()
    finally:
        db.close()


def crash(log: SQLiteLog) -> None:
    """The process dies now: nothing more is written (settling not yet committed is lost), the file is let go."""
    assert log._pool is not None and log._lock_fd is not None
    log._pool.shutdown(wait=True)
    log._pool = None
    log.store.close()
    os.close(log._lock_fd)
    log._lock_fd = None


async def test_a_requests_events_are_one_row_and_keep_their_own_numbers(tmp_path: Path) -> None:
    log = sqlite_log(tmp_path)
    await log.open()
    await asyncio.gather(log.append(request(100)), log.append(request(1, 100)), log.append(request(3, 101)))
    assert rows(tmp_path) == [(1, 100, None), (101, None, None), (102, 3, None)]
    batch = await log.take(1000, 1 << 20)
    assert [r.seq for r in batch] == list(range(1, 105))
    assert [r.id for r in batch] == [f"e{i}" for i in range(104)]
    stats = log.stats()
    assert (stats["backlog"], stats["bytes"]) == (104, sum(len(r.body) for r in batch))
    log.ack(batch[:99])  # the unit's row stays until its last event is settled, saying which are
    await log.flush()
    assert rows(tmp_path) == [(1, 100, ",".join(map(str, range(99)))), (101, None, None), (102, 3, None)]
    log.ack(batch[99:])
    await log.flush()
    assert rows(tmp_path) == []
    assert log.stats()["backlog"] == log.stats()["bytes"] == 0
    await log.close()


async def test_a_restart_reads_a_unit_back_without_its_settled_events(tmp_path: Path) -> None:
    clock = FakeClock()
    log = sqlite_log(tmp_path, clock)
    await log.open()
    await log.append(request(5))
    a, b, c, *_ = await log.take(10, 1 << 20)
    log.ack([a])  # lazy: written with the next commit that takes the acknowledgements
    log.dead([b], "poison")  # parked: the row says so in the letter's own transaction
    log.retry([c], 1.0, count_attempt=True)
    await log.flush()
    assert rows(tmp_path) == [(1, 5, "0,1")]
    await log.close()

    reopened = sqlite_log(tmp_path, clock)
    await reopened.open()
    stats = reopened.stats()
    assert (stats["backlog"], stats["bytes"], stats["dead_letters"]) == (3, 3 * len(a.body), 1)
    back = await reopened.take(10, 1 << 20)
    assert [(r.id, r.seq, r.attempts, r.body) for r in back] == [
        ("e2", 3, 1, b'{"n":2}'), ("e3", 4, 0, b'{"n":3}'), ("e4", 5, 0, b'{"n":4}')]
    assert [letter["id"] for letter in await reopened.dead_letters(10)] == ["e1"]
    await reopened.append(request(2, 10))  # numbers after the unit's last event
    assert [r.seq for r in await reopened.take(10, 1 << 20)] == [6, 7]
    reopened.ack(back)
    reopened.dead([], "nothing")
    await reopened.flush()
    assert [row[0] for row in rows(tmp_path)] == [6]
    await reopened.close()


async def test_the_last_event_parked_deletes_the_row_with_its_letter(tmp_path: Path) -> None:
    log = sqlite_log(tmp_path)
    await log.open()
    await log.append(request(3))
    a, b, c = await log.take(10, 1 << 20)
    log.ack([a, b])  # lazy
    await log.dead([c], "poison")  # urgent: the row goes in the letter's commit
    assert rows(tmp_path) == []
    await log.flush()
    assert log.stats()["backlog"] == 0
    await log.close()


async def test_a_crash_loses_only_acknowledgements_and_never_revives_a_letter(tmp_path: Path) -> None:
    log = sqlite_log(tmp_path)
    await log.open()
    await log.append(request(4))
    await log.append(request(3, 4))
    a, b, c, _, e, *_ = await log.take(10, 1 << 20)
    log.ack([a, b])  # lazy ...
    await log.dead([c], "poison")  # ... but written with the letter, which says where the unit stands
    log.ack([e])  # lazy: lost in the crash
    crash(log)
    again = sqlite_log(tmp_path)
    await again.open()
    assert [r.id for r in await again.take(10, 1 << 20)] == ["e3", "e4", "e5", "e6"]
    assert again.stats()["backlog"] == 4
    await again.close()


async def test_a_unit_every_event_of_which_was_parked_is_removed_when_read_back(tmp_path: Path) -> None:
    log = sqlite_log(tmp_path)
    await log.open()
    await log.append(request(2))
    await log.append(request(1, 2))
    await log.close()
    db = sqlite3.connect(tmp_path / "log.db")  # as a crash between the letters and the row's deletion would
    db.execute("UPDATE events SET gone = '0,1' WHERE seq = 1")
    db.commit()
    db.close()
    reopened = sqlite_log(tmp_path)
    await reopened.open()
    assert reopened.stats()["backlog"] == 1
    assert [r.id for r in await reopened.take(10, 1 << 20)] == ["e2"]
    await reopened.flush()
    assert [row[0] for row in rows(tmp_path)] == [3]
    await reopened.close()


async def test_a_commits_requests_of_one_event_share_a_row_with_their_own_receive_times(tmp_path: Path) -> None:
    log = sqlite_log(tmp_path)
    await log.open()
    singles = [request(1, i, received=1700000000.0 + i / 7) for i in range(3)]
    await asyncio.gather(*(log.append(r) for r in singles))
    assert rows(tmp_path) == [(1, 3, None)]
    await log.close()
    reopened = sqlite_log(tmp_path)
    await reopened.open()
    back = await reopened.take(10, 1 << 20)
    assert [(r.id, r.seq, r.received) for r in back] == [(f"e{i}", i + 1, 1700000000.0 + i / 7) for i in range(3)]
    await reopened.close()


async def test_single_events_between_a_requests_events_are_numbered_after_them(tmp_path: Path) -> None:
    log = sqlite_log(tmp_path)
    await log.open()
    first, several, last = request(1, 0, received=1.0), request(3, 1, received=2.0), request(1, 4, received=3.0)
    await asyncio.gather(log.append(first), log.append(several), log.append(last))
    assert rows(tmp_path) == [(2, 3, None), (6, 2, None)]  # numbers 1 and 5 left unused
    assert [(r.id, r.seq) for r in await log.take(10, 1 << 20)] == [
        ("e1", 2), ("e2", 3), ("e3", 4), ("e0", 6), ("e4", 7)]
    traced = request(1, 5)
    traced[0].trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await asyncio.gather(log.append(traced), log.append(request(1, 6)))  # a traced event keeps its own row
    assert rows(tmp_path)[2:] == [(8, None, None), (9, None, None)]
    await log.close()


def test_only_fresh_events_of_one_receive_time_and_trace_share_a_row() -> None:
    assert joinable(request(2))
    assert not joinable(request(1))
    mixed = request(2)
    mixed[1].received += 1
    assert not joinable(mixed)
    traced = request(2)
    traced[0].trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert not joinable(traced)
    tried = request(2)
    tried[1].attempts = 1
    assert not joinable(tried)
    comma = request(2)
    comma[0].id = "k.a,b"
    assert not joinable(comma)


@pytest.mark.parametrize("change", ["lens = '7,9000'", "lens = 'x,7'", "lens = '-1,15'", "gone = '5'",
                                    "tries = '1'", "tries = '1,a'", "times = X'00'", "id = 'e0'"])
async def test_a_malformed_unit_row_is_an_error_naming_it(tmp_path: Path, change: str) -> None:
    log = sqlite_log(tmp_path)
    await log.open()
    await log.append(request(2))
    await log.close()
    db = sqlite3.connect(tmp_path / "log.db")
    db.execute(f"UPDATE events SET {change} WHERE seq = 1")
    db.commit()
    db.close()
    reopened = sqlite_log(tmp_path)
    await reopened.open()
    with pytest.raises(ValueError, match="row 1 is not a well-formed unit of 2 events"):
        await reopened.take(10, 1 << 20)
    await reopened.close()


@pytest.mark.parametrize("seed", range(12))
async def test_random_settling_and_crashes_lose_nothing_and_revive_no_letter(tmp_path: Path, seed: int) -> None:
    """Appends of 1 to 6 events, takes, acks, retries, letters, flushes, crashes and clean restarts in random
    order: after each restart the log holds exactly the events neither parked nor durably acknowledged, and its
    counts match them."""
    rng = random.Random(seed)
    clock = FakeClock()
    log = sqlite_log(tmp_path, clock, memory_events=rng.choice([3, 1000]))
    await log.open()
    bodies: dict[str, bytes] = {}
    parked: set[str] = set()
    acked: set[str] = set()  # acknowledged since the last restart: durable after a flush, perhaps before
    gone: set[str] = set()  # acknowledged and durably so
    leased: list[Record] = []
    made = 0
    for _ in range(60):
        action = rng.random()
        if action < 0.3:  # 1 to 4 requests of 1 to 6 events at once: one group commit
            appends = []
            for _ in range(rng.randint(1, 4)):
                n = rng.choice([1, 1, rng.randint(2, 6)])
                records = request(n, made, received=1700000000.0 + made)
                made += n
                bodies.update((r.id, r.body) for r in records)
                appends.append(log.append(records))
            await asyncio.gather(*appends)
        elif action < 0.5:
            leased += await log.take(rng.randint(1, 8), 1 << 20)
        elif action < 0.75 and leased:
            rng.shuffle(leased)
            cut = rng.randint(1, len(leased))
            part, leased = leased[:cut], leased[cut:]
            how = rng.random()
            if how < 0.6:
                log.ack(part)
                acked.update(r.id for r in part)
            elif how < 0.8:
                await log.dead(part, "poison")
                parked.update(r.id for r in part)
            else:
                log.retry(part, 0.0, count_attempt=True)
        elif action < 0.85:
            await log.flush()
            gone |= acked
            acked = set()
        else:
            if rng.random() < 0.5:
                crash(log)
            else:
                await log.close()
                gone |= acked
                acked = set()
            leased = []
            log = sqlite_log(tmp_path, clock, memory_events=rng.choice([3, 1000]))
            await log.open()
            live = set(bodies) - parked - gone
            back: list[Record] = []
            while batch := await log.take(1000, 1 << 30):
                back += batch
            ids = [r.id for r in back]
            assert len(ids) == len(set(ids))  # each event once
            assert live - acked <= set(ids) <= live  # an acknowledgement lost in the crash delivers it again
            assert all(r.body == bodies[r.id] for r in back)
            assert [r.seq for r in back] == sorted(r.seq for r in back)
            stats = log.stats()
            assert (stats["backlog"], stats["bytes"]) == (len(ids), sum(len(bodies[i]) for i in ids))
            assert stats["dead_letters"] == len(parked)
            gone |= acked - set(ids)
            acked = set()
            log.retry(back, 0.0, count_attempt=False)
    await log.close()
