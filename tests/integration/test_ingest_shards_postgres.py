"""A sharded PostgreSQL sink over three real servers the test starts itself (testbed/postgres.py), through a
real `meshbatch run` ingest route: one shard killed (`pg_ctl stop -m immediate`) mid-load and restarted. Every
202 is stored exactly once, on the shard its key hashes to; the live shards keep delivering during the outage;
the dead shard's events wait in the log (none dead-lettered) and arrive when it is back, each key's events in
the order they were accepted."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from test_ingest_services import ingest_config, wait_until

from meshbatch.ingest.sinks.hashing import Rendezvous
from testbed.postgres import LocalPostgres, local_postgres_servers, postgres_bin
from testbed.stores import named, sql

THREADS = 8
DEVICES = 40  # a multiple of THREADS: each device's events come from one thread, one after another
TABLE = "readings"
RING = Rendezvous(["0", "1", "2"])


@pytest.fixture(scope="module")
def servers() -> Iterator[list[LocalPostgres]]:
    if postgres_bin() is None:
        reason = "PostgreSQL binaries (initdb, pg_ctl under /usr/lib/postgresql/*/bin) are not installed"
        if os.environ.get("MESHBATCH_REQUIRE_SERVICES"):
            pytest.fail(reason + " and MESHBATCH_REQUIRE_SERVICES is set")
        pytest.skip(reason)
    with local_postgres_servers(3) as started:
        yield started


def device(n: int) -> str:
    return f"d{n % DEVICES}"


def shard_of(n: int) -> int:
    return RING.place(device(n).encode())


class Sender:
    """THREADS threads posting `{"n": i, "device": ...}` with idempotency key `k-i`, each thread its own devices,
    each event after the previous one's answer; remembers which got a 202."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked: set[int] = set()
        self.lock = threading.Lock()

    def send(self, numbers: range) -> None:
        def run(t: int) -> None:
            with httpx.Client(timeout=10) as client:
                for n in numbers:
                    if n % THREADS != t:
                        continue
                    try:
                        ok = client.post(self.url, json={"n": n, "device": device(n)},
                                         headers={"idempotency-key": f"k-{n}"}).status_code == 202
                    except httpx.HTTPError:
                        ok = False
                    if ok:
                        with self.lock:
                            self.acked.add(n)

        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(run, range(THREADS)))


def stored(server: LocalPostgres) -> list[tuple[int, str]]:
    """(n, event key) of each row, in the order the rows were inserted."""
    try:
        rows = asyncio.run(sql(server.url, f"SELECT n, event_id FROM {TABLE} ORDER BY seq"))
    except OSError:
        return []
    return [(r["n"], named([r["event_id"]])[0]) for r in rows]


def test_a_shard_killed_and_restarted_mid_load(mesh: Any, tmp_path: Path, servers: list[LocalPostgres]) -> None:
    for server in servers:  # an insertion counter beside the sink's columns, to read the order rows arrived in
        asyncio.run(sql(server.url, f"DROP TABLE IF EXISTS {TABLE}"))
        asyncio.run(sql(server.url, f"CREATE TABLE {TABLE} (seq bigserial, event_id text PRIMARY KEY, "
                                    "received_at timestamptz, n bigint, device text, doc jsonb)"))
    config = ingest_config(
        ack="fsync", log={"path": str(tmp_path / "log.db")},
        sink={"type": "postgres", "shards": [s.url for s in servers], "shard_by": "device", "table": TABLE,
              "columns": {"n": {"field": "n", "type": "bigint"}, "device": "device"}, "payload_column": "doc"},
        delivery={"max_items": 100, "backoff_initial_ms": 50, "backoff_max_ms": 300, "timeout_ms": 2000})
    proxy = mesh.start(config, "shards.yaml")
    sender = Sender(proxy.url("main", "/events"))
    total = 1500
    sending = threading.Thread(target=sender.send, args=(range(total),))
    sending.start()
    wait_until(lambda: len(sender.acked) >= total // 5, 30, "a fifth of the events acknowledged")
    servers[1].kill()
    killed_at = max(sender.acked)
    wait_until(lambda: len(sender.acked) >= total // 2, 30, "half of the events acknowledged")

    # the live shards keep delivering events accepted after the kill while shard 1 is down
    def live_after_kill() -> bool:
        return all(any(n > killed_at + THREADS for n, _ in stored(servers[i])) for i in (0, 2))

    wait_until(live_after_kill, 20, "shards 0 and 2 storing events accepted after shard 1 was killed")
    status = httpx.get(proxy.url("admin", "/ingest"), timeout=5).json()["ingest"]["events"]
    assert status["log"]["dead_letters"] == 0
    assert status["log"]["backlog"] >= 1  # shard 1's events wait in the log

    held = status["delivery"].get("held", 0)
    down_for = time.monotonic()
    servers[1].start()
    restarted = time.monotonic()
    sending.join(60)
    acked = set(sender.acked)
    assert len(acked) == total, f"{total - len(acked)} events were not acknowledged"

    def all_stored() -> bool:
        return sum(len(stored(s)) for s in servers) >= len(acked)

    wait_until(all_stored, 30, "every acknowledged event stored")
    drained = time.monotonic() - restarted
    everything: list[int] = []
    for index, server in enumerate(servers):
        rows = stored(server)
        assert all(shard_of(n) == index for n, _ in rows), f"shard {index} holds another shard's keys"
        assert all(key == f"k-{n}" for n, key in rows)
        everything += [n for n, _ in rows]
        by_device: dict[str, list[int]] = {}
        for n, _ in rows:
            by_device.setdefault(device(n), []).append(n)
        for name, numbers in by_device.items():
            assert numbers == sorted(numbers), f"device {name}'s events stored out of order on shard {index}"
    assert sorted(everything) == sorted(acked)  # each once, none lost
    assert any(shard_of(n) == 1 and n > killed_at for n in everything)  # shard 1's held events arrived
    final = wait_until(lambda: (s := httpx.get(proxy.url("admin", "/ingest"), timeout=5).json()["ingest"]["events"])
                       and s["log"]["backlog"] == 0 and s, 10, "an empty log")
    assert final["log"]["dead_letters"] == 0 and final["delivery"]["dead_lettered"] == 0
    shards = final["sink"]["shards"]
    # `meshbatch shards plan` reads the keys back from the three servers: none misplaced, new keys go only to "3"
    plan = subprocess.run([sys.executable, "-m", "meshbatch", "shards", "plan", str(mesh.config_path("shards.yaml")),
                           "--route", "events", "--add", "postgresql://app:pw@127.0.0.1:1/x", "--from-sinks",
                           "--json"], capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    figures = orjson.loads(plan.stdout)
    assert figures["keys"] == DEVICES and figures["misplaced"] == 0
    assert {f["to"] for f in figures["flows"]} == {"3"}
    print(f"\nsharded sink, shard 1 killed mid-load: {len(acked)} acknowledged, {len(everything)} stored, "
          f"{len(everything) - len(set(everything))} twice; shard sizes {[len(stored(s)) for s in servers]}; "
          f"restart took {restarted - down_for:.1f}s; everything stored {drained:.1f}s after the restart; "
          f"events held in all {sum(s['held'] for s in shards)} (flusher count at the check: {held})")
    assert [s["name"] for s in shards] == ["0", "1", "2"] and shards[1]["outages"] >= 1 and all(s["up"] for s in shards)
