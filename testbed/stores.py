"""The stores the ingest tests and the chaos suite read back: where PostgreSQL and NATS are, the event ids a
SQLite or PostgreSQL sink holds (by the caller's idempotency key), one SQL statement run to completion."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from meshbatch.ingest.record import key_of

PG_URL = os.environ.get("MESHBATCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("MESHBATCH_NATS_URL", "nats://127.0.0.1:4222")


def named(ids: Iterable[str]) -> list[str]:
    """Stored event ids, each keyed one as its caller's idempotency key (`k.<scope>.k-7` -> `k-7`)."""
    return [key_of(i) or i for i in ids]


def sqlite_rows(path: Path, table: str = "events") -> list[str]:
    """The events in a SQLite sink, by `named` id."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return []
    try:
        return named(row[0] for row in db.execute(f"SELECT event_id FROM {table}"))
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


async def sql(url: str, statement: str) -> Any:
    """Run one statement on a fresh PostgreSQL connection; its rows."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(statement)
    finally:
        await conn.close()
