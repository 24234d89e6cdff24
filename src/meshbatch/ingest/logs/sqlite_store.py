"""The SQLite side of the embedded log: schema and the statements, run on the log's one writer thread.

Why SQLite in WAL mode rather than segment files of our own: a commit in WAL mode is an append to the WAL and,
with `synchronous=FULL`, one fsync, which is what a segment file would cost too; but SQLite also gives the
checksummed WAL frames and the crash recovery (a torn last commit is discarded on open), deletion of delivered
events in the middle of the log without compaction code, an index by sequence number for reading back, a
separate dead-letter table, and a file any operator can inspect with the `sqlite3` shell. A group commit
(everything appended, acknowledged, retried and parked since the last commit) is one transaction: one fsync.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any

from meshbatch.ingest.logs.sqlite_units import UNIT_COLUMNS, Unit, expand, gone_size, packable, unit_row
from meshbatch.ingest.record import Record

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body BLOB NOT NULL, "
    "received REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, trace BLOB)",
    "CREATE TABLE IF NOT EXISTS dead_letters (n INTEGER PRIMARY KEY, id TEXT NOT NULL, body BLOB NOT NULL, "
    "received REAL NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL, failed_at REAL NOT NULL, stage TEXT)",
    "CREATE INDEX IF NOT EXISTS dead_letters_id ON dead_letters (id)",
)


CHUNK = 500  # rows per statement (6 parameters a row: far below SQLite's variable limit)
UNIT_CHUNK = 100  # unit rows per statement (9 parameters a row)
ROW = attrgetter("seq", "id", "body", "received", "attempts", "trace")  # an event's row, in _insert's order


def chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


@lru_cache(maxsize=CHUNK)
def _insert(rows: int) -> str:
    return "INSERT INTO events (seq, id, body, received, attempts, trace) VALUES " + ",".join(["(?,?,?,?,?,?)"] * rows)


@lru_cache(maxsize=UNIT_CHUNK)
def _insert_units(rows: int) -> str:
    return ("INSERT INTO events (seq, id, body, received, attempts, trace, n, lens, times) VALUES "
            + ",".join(["(?,?,?,?,?,?,?,?,?)"] * rows))


@lru_cache(maxsize=CHUNK)
def _delete(rows: int) -> str:
    return f"DELETE FROM events WHERE seq IN ({','.join('?' * rows)})"


@dataclass
class Ops:
    """One group commit's worth of changes."""

    appends: list[Record] = field(default_factory=list)  # every event appended, in sequence order
    singles: list[Record] = field(default_factory=list)  # ... of them, those with a row each
    units: list[tuple[Unit, list[Record]]] = field(default_factory=list)  # ... the others, a row a unit
    acks: list[int] = field(default_factory=list)  # rows to delete: events', and units' all settled
    touched: dict[int, Unit] = field(default_factory=dict)  # units some of whose events were acknowledged
    retries: list[tuple[int, int]] = field(default_factory=list)  # (attempts, seq)
    unit_tries: list[tuple[str, int]] = field(default_factory=list)  # (tries, a unit's seq)
    # (record, reason, stage); seq 0: never was in the events table
    deads: list[tuple[Record, str, str]] = field(default_factory=list)
    # (gone, a unit's seq): written with `deads` (parked) and with the lazy acks (`touched`)
    gone: list[tuple[str, int]] = field(default_factory=list)
    drops: list[int] = field(default_factory=list)  # units whose last event is parked with `deads`
    ack_count: int = 0  # the acknowledged events (for the log's accounting)
    ack_bytes: int = 0  # their size

    def __bool__(self) -> bool:
        return bool(self.appends or self.acks or self.ack_count or self.retries or self.unit_tries or self.deads
                    or self.drops or self.gone)

    def pack(self, next_seq: int) -> int:
        """The requests of one event among the appends share a row (`sqlite_units`). Unless their numbers follow
        each other, they are numbered again after every other event of this commit (from `next_seq`, which is
        returned moved past them; the numbers they had are left unused)."""
        group = [r for r in self.singles if packable(r)]
        if len(group) < 2:
            return next_seq
        first = group[0].seq
        contiguous = group[-1].seq - first == len(group) - 1  # the usual: no append of several between them
        unit = Unit(first if contiguous else next_seq, len(group), len(group))
        for record in group:
            if not contiguous:
                record.seq = next_seq
                next_seq += 1
            record.ref = unit
        self.units.append((unit, group))
        self.singles = [r for r in self.singles if r.ref is None]
        if not contiguous:
            self.appends = [r for r in self.appends if r.ref is not unit] + group
        return next_seq

    def give_back(self, lazy: Ops, urgent: Ops) -> None:
        """A failed commit's settling handed back for the next: acknowledgements and attempts to `lazy`,
        letters to `urgent` (its appends were refused to their callers)."""
        lazy.acks += self.acks
        lazy.touched.update(self.touched)
        lazy.ack_count += self.ack_count
        lazy.ack_bytes += self.ack_bytes
        lazy.retries += self.retries
        lazy.unit_tries += self.unit_tries
        urgent.deads += self.deads
        urgent.gone += self.gone
        urgent.drops += self.drops


@dataclass
class ReadBack:
    records: list[Record]
    next_seq: int  # where the next read starts
    done: bool  # the end of the log was reached
    settled: list[int]  # units read whose every event is settled: rows to delete


@dataclass
class Opened:
    max_seq: int
    count: int
    bytes: int
    oldest: float | None
    dead: int


class Store:
    """Owned by one thread: the connection is made, used and closed there."""

    def __init__(self, path: str, sync: str) -> None:
        self.path = path
        self.sync = sync
        self.db: sqlite3.Connection | None = None
        self.commits = 0

    def open(self) -> Opened:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10,
                             cached_statements=2 * CHUNK + 16)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.sync == 'full' else 'NORMAL'}")
        for statement in SCHEMA:
            db.execute(statement)
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if "trace" not in columns:  # a log written before events kept their traceparent
            db.execute("ALTER TABLE events ADD COLUMN trace BLOB")
        for column, kind in UNIT_COLUMNS:  # a log written before units (sqlite_units.py)
            if column not in columns:
                db.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")
        columns = {row[1] for row in db.execute("PRAGMA table_info(dead_letters)")}
        if "stage" not in columns:  # a log written before dead letters kept the stage that refused them
            db.execute("ALTER TABLE dead_letters ADD COLUMN stage TEXT")
        self.db = db
        seq, count, size, oldest = db.execute(
            "SELECT COALESCE(MAX(seq + COALESCE(n, 1) - 1), 0), COALESCE(SUM(COALESCE(n, 1)), 0), "
            "COALESCE(SUM(LENGTH(body)), 0), MIN(received) FROM events").fetchone()
        for n, lens, gone in db.execute("SELECT n, lens, gone FROM events WHERE n IS NOT NULL AND gone IS NOT NULL"):
            settled, settled_bytes = gone_size(n, lens, gone)
            count -= settled
            size -= settled_bytes
        dead = db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        return Opened(int(seq), int(count), int(size), oldest, int(dead))

    def commit(self, ops: Ops) -> None:
        """One transaction of few statements. Each statement gives up the GIL and takes it back, which costs up to
        a switch interval while the event loop is busy: rows go in multi-row statements, and a commit of one
        statement (the usual: appends only) runs in autocommit, its own transaction, with no BEGIN/COMMIT."""
        db = self.db
        assert db is not None
        statements: list[tuple[str, list[Any]]] = []
        for chunk in chunks(ops.singles):  # the rows' values in one flat list, built in C (no bytecode a row)
            statements.append((_insert(len(chunk)), list(chain.from_iterable(map(ROW, chunk)))))
        for at in range(0, len(ops.units), UNIT_CHUNK):
            part = ops.units[at:at + UNIT_CHUNK]
            values: list[Any] = []
            for unit, records in part:
                values += unit_row(unit, records)
            statements.append((_insert_units(len(part)), values))
        if ops.deads:
            now = time.time()
            for r, reason, stage in ops.deads:
                statements.append(("INSERT INTO dead_letters (id, body, received, attempts, reason, failed_at, stage) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   [r.id, r.body, r.received, r.attempts, reason, now, stage]))
        for attempts, seq in ops.retries:
            statements.append(("UPDATE events SET attempts = ? WHERE seq = ?", [attempts, seq]))
        for tries, seq in ops.unit_tries:
            statements.append(("UPDATE events SET tries = ? WHERE seq = ?", [tries, seq]))
        for gone, seq in ops.gone:  # in the transaction that parks them: never parked and in the log
            statements.append(("UPDATE events SET gone = ? WHERE seq = ?", [gone, seq]))
        rows = ops.acks + [r.seq for r, _, _ in ops.deads if r.seq and r.ref is None] + ops.drops
        for part in chunks(rows):
            statements.append((_delete(len(part)), part))
        if len(statements) == 1:
            db.execute(*statements[0])
        elif statements:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement, params in statements:
                    db.execute(statement, params)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        self.commits += 1

    def read(self, from_seq: int, limit: int) -> ReadBack:
        """The events from `from_seq` on, in order: rows until `limit` events (a unit is read whole)."""
        assert self.db is not None
        records: list[Record] = []
        settled: list[int] = []
        next_seq = from_seq
        cursor = self.db.execute("SELECT seq, id, body, received, attempts, trace, n, lens, gone, tries, times "
                                 "FROM events WHERE seq >= ? ORDER BY seq", (from_seq,))
        try:
            for seq, id, body, received, attempts, trace, n, lens, gone, tries, times in cursor:
                if len(records) >= limit:
                    return ReadBack(records, next_seq, False, settled)
                trace = None if trace is None else bytes(trace)
                if n is None:
                    records.append(Record(id, bytes(body), received, attempts, seq, trace=trace))
                    next_seq = seq + 1
                    continue
                unit, events = expand(seq, id, bytes(body), received, trace, n, lens, gone, tries,
                                      None if times is None else bytes(times))
                if not unit.left:
                    settled.append(seq)
                records += events
                next_seq = seq + n
        finally:
            cursor.close()
        return ReadBack(records, next_seq, True, settled)

    def _letters(self, columns: str, ids: Sequence[str] | None, limit: int) -> list[Any]:
        """Rows of the oldest `limit` dead letters (of these ids), oldest first; `n` is the first column."""
        db = self.db
        assert db is not None
        if ids is None:
            return db.execute(f"SELECT n, {columns} FROM dead_letters ORDER BY n LIMIT ?", (limit,)).fetchall()
        rows: list[Any] = []
        for chunk in range(0, len(ids), 500):
            part = list(ids[chunk:chunk + 500])
            marks = ",".join("?" * len(part))
            rows += db.execute(f"SELECT n, {columns} FROM dead_letters WHERE id IN ({marks})", part).fetchall()
        rows.sort()
        return rows[:limit]

    def dead_letters(self, limit: int, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        rows = self._letters("id, body, received, attempts, reason, failed_at, stage", ids, limit)
        return [{"id": id, "body": bytes(body).decode("utf-8", errors="replace"), "received": received,
                 "attempts": attempts, "reason": reason, "stage": stage, "failed_at": failed_at}
                for _, id, body, received, attempts, reason, failed_at, stage in rows]

    def replay(self, ids: Sequence[str] | None, limit: int, first_seq: int,
               bodies: Mapping[str, bytes | None] | None = None) -> tuple[list[Record], int]:
        """Dead letters back into `events` with fresh sequence numbers from `first_seq` (at most `limit` of them),
        attempts reset; with `bodies`, only those it names, each with its body there (None: removed, not moved).
        The records moved, and how many letters left the table."""
        db = self.db
        assert db is not None
        rows = self._letters("id, body, received", ids if bodies is None else list(bodies), limit)
        moving = rows if bodies is None else [row for row in rows if bodies[row[1]] is not None]
        records = [Record(id, bytes(body) if bodies is None else bodies[id] or b"", received, 0, first_seq + i)
                   for i, (_, id, body, received) in enumerate(moving)]
        if not rows:
            return [], 0
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO events (seq, id, body, received, attempts) VALUES (?, ?, ?, ?, 0)",
                           [(r.seq, r.id, r.body, r.received) for r in records])
            db.executemany("DELETE FROM dead_letters WHERE n = ?", [(row[0],) for row in rows])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return records, len(rows)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


__all__ = ["SCHEMA", "Opened", "Ops", "ReadBack", "Store"]
