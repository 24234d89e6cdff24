"""The sinks' tables: one made by meshbatch has its id column as its key and no second index on it (each row
insert maintains every index); one made elsewhere without a unique index on the id alone gets the one
`ON CONFLICT` needs, and one that has such an index gets no other."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
from ingest_support import PG_URL, require

from meshbatch.config.model import Route
from meshbatch.config.plain import of
from meshbatch.ingest.record import Record
from meshbatch.ingest.sinks import SINKS, SinkContext


def route(sink: dict[str, Any]) -> Route:
    return of(Route.model_validate({"name": "r", "match": {"path_prefix": "/"}, "ingest": {"sink": sink}}))


def sqlite_indexes(path: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(path)
    try:
        return [(row[1], row[2]) for row in db.execute("PRAGMA index_list(events)")]
    finally:
        db.close()


async def test_a_sqlite_table_made_here_is_keyed_by_the_id_with_no_second_index(tmp_path: Path) -> None:
    path = tmp_path / "sink.db"
    sink = SINKS.get("sqlite")(SinkContext(route({"type": "sqlite", "path": str(path)}), None, 5.0))
    assert await sink.deliver([Record("a", b"{}", 1.0), Record("b", b"{}", 1.0)]) == [None, None]
    assert await sink.deliver([Record("a", b"{}", 1.0)]) == [None]
    assert sqlite_indexes(path) == [("sqlite_autoindex_events_1", 1)]
    assert sink.summary()["duplicates_ignored"] == 1
    await sink.close()


async def test_a_sqlite_table_made_elsewhere_without_a_key_gets_the_unique_index(tmp_path: Path) -> None:
    path = tmp_path / "sink.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE events (event_id TEXT, received_at TEXT, payload TEXT)")
    db.execute("CREATE INDEX events_by_time ON events (received_at, event_id)")  # not unique: no help
    db.commit()
    db.close()
    sink = SINKS.get("sqlite")(SinkContext(route({"type": "sqlite", "path": str(path)}), None, 5.0))
    assert await sink.deliver([Record("a", b"{}", 1.0)]) == [None]
    assert await sink.deliver([Record("a", b"{}", 1.0)]) == [None]  # stored once
    assert sorted(sqlite_indexes(path)) == [("events_by_time", 0), ("events_event_id_key", 1)]
    assert sink.summary()["duplicates_ignored"] == 1
    await sink.close()


async def test_a_redundant_index_an_operator_dropped_is_not_made_again(tmp_path: Path) -> None:
    path = tmp_path / "sink.db"
    db = sqlite3.connect(path)  # a table with its key and the second index on it, as earlier versions made them
    db.execute("CREATE TABLE events (event_id TEXT PRIMARY KEY NOT NULL, received_at TEXT, payload TEXT)")
    db.execute("CREATE UNIQUE INDEX events_event_id_key ON events (event_id)")
    db.execute("DROP INDEX events_event_id_key")
    db.commit()
    db.close()
    sink = SINKS.get("sqlite")(SinkContext(route({"type": "sqlite", "path": str(path)}), None, 5.0))
    assert await sink.deliver([Record("a", b"{}", 1.0)]) == [None]
    assert sqlite_indexes(path) == [("sqlite_autoindex_events_1", 1)]
    await sink.close()


async def test_a_postgres_table_made_here_has_one_index_and_one_made_elsewhere_gets_it() -> None:
    url = require(PG_URL, "PostgreSQL")
    fresh, elsewhere = (f"mb_test_{secrets.token_hex(4)}" for _ in range(2))
    conn = await asyncpg.connect(url)
    sinks = []
    try:
        await conn.execute(f"CREATE TABLE {elsewhere} (event_id TEXT, received_at TIMESTAMPTZ, payload JSONB)")
        for table in (fresh, elsewhere):
            sink = SINKS.get("postgres")(SinkContext(route({"type": "postgres", "url": url, "table": table}), None,
                                                     5.0))
            sinks.append(sink)
            assert await sink.deliver([Record("a", b"{}", 1.0)]) == [None]
            assert await sink.deliver([Record("a", b"{}", 1.0)]) == [None]
            assert await conn.fetchval(f"SELECT COUNT(*) FROM {table}") == 1
        indexes = {table: sorted(r["indexname"] for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = $1", table)) for table in (fresh, elsewhere)}
        assert indexes == {fresh: [f"{fresh}_pkey"], elsewhere: [f"{elsewhere}_event_id_key"]}
    finally:
        for table in (fresh, elsewhere):
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()
        for sink in sinks:
            await sink.close()
