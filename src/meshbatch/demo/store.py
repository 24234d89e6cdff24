"""Where the demo consumer keeps events: SQLite (default, a local file) or PostgreSQL (asyncpg).

Each call to `store` is one transaction, whatever the number of events: one event per transaction when
called one request at a time, one batch per transaction behind the batching proxy.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import orjson

Event = dict[str, Any]


class DemoStore(Protocol):
    async def open(self) -> None: ...
    async def store(self, events: Sequence[Event]) -> None: ...
    async def count(self, run: str) -> tuple[int, int]:
        """(rows, distinct event ids) stored for a run."""
        ...
    async def close(self) -> None: ...


class SQLiteStore:
    """One connection on one thread: sqlite3 objects stay on the thread that made them."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _open(self) -> None:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        db.execute("CREATE TABLE IF NOT EXISTS events (id TEXT NOT NULL, run TEXT NOT NULL, "
                   "payload TEXT NOT NULL, stored_at REAL NOT NULL DEFAULT (julianday('now')))")
        db.execute("CREATE INDEX IF NOT EXISTS events_run ON events (run)")
        self._db = db

    async def open(self) -> None:
        await self._run(self._open)

    def _store(self, events: Sequence[Event]) -> None:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO events (id, run, payload) VALUES (?, ?, ?)",
                           [(str(e.get("id")), str(e.get("run", "")), orjson.dumps(e).decode()) for e in events])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def store(self, events: Sequence[Event]) -> None:
        await self._run(self._store, events)

    def _count(self, run: str) -> tuple[int, int]:
        assert self._db is not None
        row = self._db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM events WHERE run = ?", (run,)).fetchone()
        return int(row[0]), int(row[1])

    async def count(self, run: str) -> tuple[int, int]:
        result: tuple[int, int] = await self._run(self._count, run)
        return result

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
        self._pool.shutdown(wait=True)


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: Any = None

    async def open(self) -> None:
        from meshbatch import extras

        asyncpg = extras.import_module("asyncpg", "postgres", "the demo's PostgreSQL store")
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=8)
        async with self._pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS meshbatch_demo_events (id TEXT NOT NULL, "
                               "run TEXT NOT NULL, payload JSONB NOT NULL, stored_at TIMESTAMPTZ DEFAULT now())")
            await conn.execute("CREATE INDEX IF NOT EXISTS meshbatch_demo_events_run ON meshbatch_demo_events (run)")

    async def store(self, events: Sequence[Event]) -> None:
        rows = [(str(e.get("id")), str(e.get("run", "")), orjson.dumps(e).decode()) for e in events]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO meshbatch_demo_events (id, run, payload) VALUES ($1, $2, $3::jsonb)", rows)

    async def count(self, run: str) -> tuple[int, int]:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT COUNT(*), COUNT(DISTINCT id) FROM meshbatch_demo_events "
                                      "WHERE run = $1", run)
        return int(row[0]), int(row[1])

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def open_store(url: str) -> DemoStore:
    """`sqlite:///path/to/file.db`, a plain file path, or `postgresql://...`."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    return SQLiteStore(path)


__all__ = ["DemoStore", "Event", "PostgresStore", "SQLiteStore", "open_store"]
