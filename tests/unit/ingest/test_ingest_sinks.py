"""Sinks: SQLite and PostgreSQL store each event id once (a batch delivered twice), map fields to typed columns,
refuse a bad row alone; the cluster sink speaks the batch codecs and tells outages from refusals."""

from __future__ import annotations

import secrets
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_support import PG_URL, require

from meshbatch.config.model import Route
from meshbatch.config.plain import of
from meshbatch.http.message import Headers, Response
from meshbatch.ingest.record import Record
from meshbatch.ingest.sinks import SINKS, BatchRejected, SinkContext, SinkUnavailable
from meshbatch.ingest.sinks.cluster import ClusterSink
from meshbatch.ingest.sinks.mapping import CONVERT, RowError, columns_of, make_row, plain_rows, received_text

COLUMNS = {"temperature": {"field": "temperature", "type": "double"}, "site": "site",
           "count": {"field": "stats.count", "type": "bigint"}, "ok": {"field": "ok", "type": "boolean"},
           "at": {"field": "at", "type": "timestamp"}, "tags": {"field": "tags", "type": "json"}}


def route(sink: dict[str, Any], **extra: Any) -> Route:
    return of(Route.model_validate({"name": "r", "ingest": {"sink": sink}, **extra}))


def event(i: int, **fields: Any) -> Record:
    body = {"temperature": 20.5 + i, "site": "eu", "stats": {"count": i}, "ok": True, "at": "2026-01-02T03:04:05Z",
            "tags": ["a"], **fields}
    return Record(f"id-{i}", orjson.dumps(body), 1700000000.0)


async def test_sqlite_sink_maps_columns_and_stores_each_id_once(tmp_path: Path) -> None:
    path = tmp_path / "sink.db"
    sink = SINKS.get("sqlite")(SinkContext(route({"type": "sqlite", "path": str(path), "table": "readings",
                                                 "columns": COLUMNS, "payload_column": "doc"}), None, 5.0))
    batch = [event(i) for i in range(5)]
    assert await sink.deliver(batch) == [None] * 5
    assert await sink.deliver([*batch[2:], event(5)]) == [None] * 4  # delivered again after a crash
    bad = event(6, stats={"count": "many"})
    outcomes = await sink.deliver([event(7), bad])
    assert outcomes[0] is None and outcomes[1] is not None and "column count" in outcomes[1]
    db = sqlite3.connect(path)
    rows = db.execute("SELECT event_id, temperature, site, count, ok, at, tags, doc FROM readings ORDER BY event_id")
    got = rows.fetchall()
    assert [r[0] for r in got] == [f"id-{i}" for i in (0, 1, 2, 3, 4, 5, 7)]
    assert got[0][1:7] == (20.5, "eu", 0, 1, "2026-01-02T03:04:05+00:00", '["a"]')
    assert orjson.loads(got[0][7])["site"] == "eu"
    assert sink.summary()["duplicates_ignored"] == 3
    outcomes = await sink.deliver([event(8, at=1e20), event(9), event(10, at=-1e30)])
    assert outcomes[1] is None and all("column at" in (o or "") for o in (outcomes[0], outcomes[2])), outcomes
    await sink.close()


async def test_sqlite_sink_payload_only_and_errors(tmp_path: Path) -> None:
    sink = SINKS.get("sqlite")(SinkContext(route({"type": "sqlite", "path": str(tmp_path / "s.db")}), None, 5.0))
    assert await sink.deliver([Record("x", b'{"a": 1}', 1.0)]) == [None]
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT event_id, payload FROM events").fetchall() == [("x", '{"a": 1}')]
    db.execute("DROP TABLE events")
    db.execute("CREATE TABLE events (event_id TEXT PRIMARY KEY, received_at TEXT, payload TEXT NOT NULL "
               "CHECK (length(payload) < 20))")
    db.commit()
    with pytest.raises(BatchRejected):
        await sink.deliver([Record("y", b'{"long": "xxxxxxxxxxxxxxxxxxxx"}', 1.0)])
    db.execute("DROP TABLE events")
    db.commit()
    with pytest.raises(SinkUnavailable, match="no such table"):
        await sink.deliver([Record("z", b"{}", 1.0)])
    await sink.close()


async def test_postgres_sink_is_idempotent_with_typed_columns() -> None:
    url = require(PG_URL, "PostgreSQL")
    table = f"mb_test_{secrets.token_hex(4)}"
    sink = SINKS.get("postgres")(SinkContext(route({"type": "postgres", "url": url, "table": table,
                                                   "columns": COLUMNS, "payload_column": "doc"}), None, 5.0))
    try:
        batch = [event(i) for i in range(100)]
        assert await sink.deliver(batch) == [None] * 100
        assert await sink.deliver(batch[50:]) == [None] * 50
        outcomes = await sink.deliver([event(200), event(201, temperature="hot")])
        assert outcomes[0] is None and "column temperature" in str(outcomes[1])
        with pytest.raises(BatchRejected):  # JSONB refuses a NUL character: the database itself refuses the batch
            await sink.deliver([Record("nul", b'{"s": "\\u0000"}', 1.0)])
        conn = await asyncpg.connect(url)
        try:
            count = await conn.fetchval(f"SELECT COUNT(*) FROM {table}")
            row = await conn.fetchrow(f"SELECT * FROM {table} WHERE event_id = 'id-3'")
        finally:
            await conn.close()
        assert count == 101
        assert (row["temperature"], row["site"], row["count"], row["ok"], row["tags"]) == (23.5, "eu", 3, True, '["a"]')
        assert row["at"].isoformat() == "2026-01-02T03:04:05+00:00"
        assert orjson.loads(row["doc"])["stats"] == {"count": 3}
        assert sink.summary()["duplicates_ignored"] == 50
    finally:
        conn = await asyncpg.connect(url)
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()
        await sink.close()


async def test_postgres_sink_unreachable_is_an_outage() -> None:
    sink = SINKS.get("postgres")(SinkContext(route({"type": "postgres", "url": "postgresql://postgres@127.0.0.1:1/x"}),
                                             None, 2.0))
    with pytest.raises(SinkUnavailable, match="cannot connect"):
        await sink.deliver([Record("a", b"{}", 1.0)])


class Upstream:
    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.seen: list[tuple[bytes, Headers, bytes]] = []

    async def __call__(self, method: bytes, path: bytes, headers: Headers, body: bytes, timeout: float,
                       key: tuple[bytes, ...]) -> Response:
        self.seen.append((path, headers, body))
        status, answer = self.answers.pop(0)
        return Response(status, [(b"content-type", b"application/json")], answer)


async def test_cluster_sink_per_item_results_and_failure_kinds() -> None:
    up = Upstream((200, b"[1, 2]"), (200, b'{"responses": [{"id": "b", "status": 500}, {"id": "a", "status": 201}]}'),
                  (503, b""), (400, b"no"), (200, b"[1]"))
    r = route({"upstream_path": "/store"}, cluster="c")
    sink = ClusterSink(SinkContext(r, up, 5.0))
    recs = [Record("a", b'{"x": 1}', 1.0), Record("b", b'{"x": 2}', 1.0)]
    assert await sink.deliver(recs) == [None, None]
    path, headers, body = up.seen[0]
    assert path == b"/store" and body == b'[{"x": 1},{"x": 2}]'
    assert (b"x-meshbatch-event-ids", b"a,b") in headers
    envelope = ClusterSink(SinkContext(route({"codec": "envelope"}, cluster="c"), up, 5.0))
    outcomes = await envelope.deliver(recs)
    assert outcomes[0] is None and outcomes[1] is not None
    sent = orjson.loads(up.seen[1][2])["requests"]
    assert sent[0]["id"] == "a" and sent[0]["headers"]["idempotency-key"] == "a"
    with pytest.raises(SinkUnavailable):
        await sink.deliver(recs)
    with pytest.raises(BatchRejected):
        await sink.deliver(recs)
    with pytest.raises(SinkUnavailable, match="upstream_result_count"):
        await sink.deliver(recs)


@settings(max_examples=300, deadline=None)
@given(stamp=st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_received_text_matches_isoformat(stamp: float) -> None:
    assert received_text(stamp) == datetime.fromtimestamp(stamp, UTC).isoformat(timespec="microseconds")


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(st.text(min_size=1, max_size=20), st.binary(max_size=30).map(lambda b: b.hex()),
                               st.sampled_from([1.7e9, 1.7e9 + 0.5, 2.5, 1767225599.9999996])), max_size=8),
       received=st.none() | st.just("received_at"))
def test_plain_rows_are_make_row_a_column_at_a_time(rows: list[tuple[str, str, float]], received: str | None) -> None:
    """A table without mapped fields: the rows of a batch made at once, the same values make_row makes (the
    receive time's text cached between records of one stamp)."""
    config = route({"type": "sqlite", "received_column": received}).ingest
    assert config is not None
    columns = columns_of(config.sink)
    records = [Record(i, orjson.dumps({"v": v}), stamp) for i, v, stamp in rows]
    for as_text in (True, False):
        plain = plain_rows(columns, timestamps_as_text=as_text)
        assert plain is not None
        assert plain(records) == [make_row(columns, r, timestamps_as_text=as_text) for r in records]


def test_a_table_with_mapped_fields_makes_its_rows_one_by_one() -> None:
    config = route({"type": "sqlite", "columns": {"t": {"field": "t", "type": "double"}}}).ingest
    assert config is not None
    assert plain_rows(columns_of(config.sink)) is None


# What orjson.loads can give: integers within [-2**63, 2**64 - 1] (a longer one is read as a float), finite floats.
ODD_TEXTS = ["1e999", "-1e999", "nan", "9" * 5000, "10000-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
             "2026-13-40T25:61:61Z"]
JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
                    | st.sampled_from(ODD_TEXTS),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)
EXTREMES = [1e20, -1e20, 1e300, -1e300, 1e30, 2**63, 2**64 - 1, -(2**63), 253402300800, 1e11, -1e11]


@pytest.mark.parametrize("kind", sorted(CONVERT))
@given(value=st.one_of(JSON, st.sampled_from(EXTREMES)))
@settings(max_examples=150, deadline=None)
def test_a_field_of_any_json_value_converts_or_is_refused_alone(kind: str, value: Any) -> None:
    """A value a producer sends either converts or raises RowError, which refuses its event alone; anything else
    failed the whole batch as a sink fault, an outage: one event with `"at": 1e20` once held its route's every
    later event back, retried without end."""
    try:
        CONVERT[kind](value)
    except RowError:
        pass
