"""`sqlite` sink: one transaction per batch, `INSERT ... ON CONFLICT (id) DO NOTHING` (each event id once)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from pathlib import Path
from typing import Any

from meshbatch.ingest.gil import shorten_switch_interval
from meshbatch.ingest.record import Record
from meshbatch.ingest.sinks.base import SINKS, BatchRejected, EventSink, Outcome, SinkContext, SinkUnavailable
from meshbatch.ingest.sinks.mapping import MappedColumn, batch_rows, columns_of, id_index, quote
from meshbatch.ingest.sinks.sharded import ShardedSink

SQLITE_TYPES = {"id": "TEXT PRIMARY KEY NOT NULL", "received": "TEXT", "payload": "TEXT", "text": "TEXT",
                "bigint": "INTEGER", "double": "REAL", "boolean": "INTEGER", "json": "TEXT", "timestamp": "TEXT"}


def create_statement(table: str, columns: list[MappedColumn]) -> str:
    """The table, its id column the primary key."""
    body = ", ".join(f"{quote(c.name)} {SQLITE_TYPES[c.type]}" for c in columns)
    return f"CREATE TABLE IF NOT EXISTS {quote(table)} ({body})"


def unique_id(db: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether a unique index (the primary key's included) holds the id column alone."""
    schema, _, name = table.rpartition(".")
    prefix = f"{quote(schema)}." if schema else ""
    for _, index, unique, *_ in db.execute(f"PRAGMA {prefix}index_list({quote(name)})").fetchall():
        named = '"' + index.replace('"', '""') + '"'
        if unique and [row[2] for row in db.execute(f"PRAGMA {prefix}index_info({named})")] == [column]:
            return True
    return False


class SQLiteSink:
    name = "sqlite"

    def __init__(self, context: SinkContext, path: str | None = None) -> None:
        ingest = context.route.ingest
        assert ingest is not None
        config = ingest.sink
        # `path`: one shard's (sinks/sharded.py)
        self.path = path or config.path or os.path.join("meshbatch-data", "sink.db")
        self.table = config.table
        self.id_column = config.id_column
        self.columns = columns_of(config)
        self.rows = batch_rows(self.columns, timestamps_as_text=True)
        self.create = config.create_table
        self.schema = create_statement(config.table, self.columns)
        self.index = id_index(config.table, config.id_column)
        names = ", ".join(quote(c.name) for c in self.columns)
        self.row_marks = "(" + ",".join("?" * len(self.columns)) + ")"
        self.insert_head = f"INSERT INTO {quote(config.table)} ({names}) VALUES "
        self.insert_tail = f" ON CONFLICT ({quote(config.id_column)}) DO NOTHING"
        self.chunk = max(1, min(500, 30_000 // len(self.columns)))  # rows per statement, under SQLite's limit
        self._statements: dict[int, str] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-sqlite-sink")
        self._db: sqlite3.Connection | None = None
        self.batches = self.stored = self.duplicates = 0

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _open(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5,
                             cached_statements=2 * self.chunk + 16)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            if self.create:
                db.execute(self.schema)
                if not unique_id(db, self.table, self.id_column):
                    db.execute(self.index)
        except BaseException:
            db.close()
            raise
        self._db = db

    async def open(self) -> None:
        if self._db is not None:
            return
        shorten_switch_interval()  # see meshbatch.ingest.gil
        try:
            await self._run(self._open)
        except sqlite3.Error as exc:
            raise SinkUnavailable(f"sqlite {self.path}: {exc}") from exc

    def _store(self, rows: list[tuple[Any, ...]]) -> int:
        """The rows in one transaction: a batch of one statement runs in autocommit, its own transaction (each
        statement hands the GIL back and forth with the event loop: no BEGIN and COMMIT of their own)."""
        db = self._db
        assert db is not None
        if len(rows) <= self.chunk:
            before = db.total_changes
            db.execute(self._statement(len(rows)), list(chain.from_iterable(rows)))
            return db.total_changes - before
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            for start in range(0, len(rows), self.chunk):  # multi-row statements: few GIL hand-offs per batch
                part = rows[start:start + self.chunk]
                db.execute(self._statement(len(part)), list(chain.from_iterable(part)))
            stored = db.total_changes - before
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return stored

    def _statement(self, rows: int) -> str:
        statement = self._statements.get(rows)
        if statement is None:
            statement = self._statements[rows] = (self.insert_head + ",".join([self.row_marks] * rows)
                                                  + self.insert_tail)
        return statement

    async def deliver(self, records: Sequence[Record]) -> list[Outcome]:
        await self.open()
        rows, made = self.rows(records)
        outcomes: list[Outcome] = list(made)
        if not rows:
            return outcomes
        try:
            stored = await self._run(self._store, rows)
        except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, sqlite3.ProgrammingError) as exc:
            raise BatchRejected(f"sqlite: {exc}") from exc
        except sqlite3.Error as failure:  # a name of its own: the clause above types `exc` (compiled build)
            raise SinkUnavailable(f"sqlite {self.path}: {failure}") from failure
        self.batches += 1
        self.stored += stored
        self.duplicates += len(rows) - stored
        return outcomes

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    def summary(self) -> dict[str, Any]:
        return {"type": self.name, "path": self.path, "table": self.table, "batches": self.batches,
                "stored": self.stored, "duplicates_ignored": self.duplicates}


@SINKS.register("sqlite")
def _factory(context: SinkContext) -> EventSink:
    shards = context.route.ingest.sink.shards
    if shards:
        paths = [shard.path or "" for shard in shards]
        return ShardedSink(context, "sqlite", [SQLiteSink(context, path) for path in paths], paths)
    return SQLiteSink(context)


__all__ = ["SQLITE_TYPES", "SQLiteSink", "create_statement", "unique_id"]
