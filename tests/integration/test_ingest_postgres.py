"""PostgreSQL sink end to end: `kill -9` mid-flush then restart, and PostgreSQL unreachable for a while then back
(through a relay the test switches off and on): every acknowledged event stored exactly once."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from test_ingest_services import Producer, ingest_config, require, wait_until

from testbed.relay import Relay
from testbed.stores import PG_URL, named, sql


@pytest.fixture
def table() -> Iterator[str]:
    require(PG_URL, "PostgreSQL")
    name = f"mb_ingest_{secrets.token_hex(4)}"
    yield name
    asyncio.run(sql(PG_URL, f"DROP TABLE IF EXISTS {name}"))


def pg_ids(table: str) -> list[str]:
    try:
        return named(r["event_id"] for r in asyncio.run(sql(PG_URL, f"SELECT event_id FROM {table}")))
    except asyncpg.exceptions.UndefinedTableError:
        return []


def pg_config(tmp_path: Path, table: str, url: str) -> dict[str, Any]:
    return ingest_config(
        ack="fsync", log={"path": str(tmp_path / "log.db")},
        sink={"type": "postgres", "url": url, "table": table,
              "columns": {"n": {"field": "n", "type": "bigint"}}, "payload_column": "doc"},
        delivery={"max_items": 100, "backoff_initial_ms": 50, "backoff_max_ms": 400, "timeout_ms": 2000})


def test_kill_9_mid_flush_with_postgres(mesh: Any, tmp_path: Path, table: str) -> None:
    n = 2000
    config = pg_config(tmp_path, table, PG_URL)
    proxy = mesh.start(config, "pg.yaml")
    producer = Producer(proxy.url("main", "/events"))
    sending = threading.Thread(target=producer.send, args=(range(n),))
    sending.start()
    wait_until(lambda: len(producer.acked) >= n // 3, 30, "a third of the events to be acknowledged")
    proxy.kill()
    sending.join(60)
    acked = set(producer.acked)
    mesh.start(config, "pg.yaml")
    wait_until(lambda: acked <= set(pg_ids(table)), 30, "every acknowledged event in PostgreSQL")
    ids = pg_ids(table)
    assert len(ids) == len(set(ids))
    rows = asyncio.run(sql(PG_URL, f"SELECT n, doc FROM {table} WHERE event_id LIKE 'k.%.k-7'"))
    if rows:
        assert rows[0]["n"] == 7


def test_postgres_down_for_a_while_then_back(mesh: Any, tmp_path: Path, table: str) -> None:
    target = urlsplit(PG_URL)
    relay = Relay((target.hostname or "127.0.0.1", target.port or 5432))
    relay.up()
    url = PG_URL.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{relay.port}")
    proxy = mesh.start(pg_config(tmp_path, table, url), "pg.yaml")
    first = Producer(proxy.url("main", "/events"))
    first.send(range(200), threads=4)
    wait_until(lambda: len(pg_ids(table)) == 200, 20, "the first events stored")

    relay.down()  # PostgreSQL unreachable: events are still accepted, and wait in the log
    second = Producer(proxy.url("main", "/events"))
    second.send(range(200, 700), threads=8)
    assert len(second.acked) == 500
    status = wait_until(lambda: (s := httpx.get(proxy.url("admin", "/ingest"), timeout=5).json()["ingest"]["events"])
                        and s["delivery"]["consecutive_outages"] >= 2 and s, 20, "the sink outage to be seen")
    assert status["log"]["backlog"] >= 1 and status["log"]["dead_letters"] == 0
    assert len(pg_ids(table)) == 200

    relay.up()  # back: the backlog drains, nothing parked, nothing twice
    wait_until(lambda: len(pg_ids(table)) == 700, 30, "the backlog to drain into PostgreSQL")
    assert sorted(pg_ids(table)) == sorted(f"k-{i}" for i in range(700))
    final = wait_until(lambda: (s := httpx.get(proxy.url("admin", "/ingest"), timeout=5).json()["ingest"]["events"])
                       and s["log"]["backlog"] == 0 and s, 10, "an empty log")
    assert final["log"]["dead_letters"] == 0 and final["delivery"]["dead_lettered"] == 0
    relay.down()
