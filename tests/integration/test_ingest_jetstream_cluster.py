"""Ingest on a 3-node JetStream cluster (started here: testbed/nats_cluster.py), with three meshbatch replicas sharing
one `replicas: 3` stream and one PostgreSQL table, under steady load: the stream's leader SIGKILLed, then a meshbatch
replica. Every 202 is stored exactly once, a producer is refused only when the stream had no leader for longer than
its deadline, the killed replica's leased events are redelivered, and every replica answers afterwards. The full
scenario, with more kills and figures: `meshbatch chaos nats-node-kill` (chaos/scenario_nats.py)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_ingest_services import require, wait_until

from testbed.fleet import free_port, wait_port_free
from testbed.ingest_load import ELECTION_SLACK_S, IngestLoad
from testbed.nats_cluster import NatsCluster, nats_server
from testbed.proxy import MeshbatchProcess, write_config
from testbed.stores import PG_URL, named, sql

REFUSAL_BOUND_S = 6.0  # the leader's loss to the last refused answer (docs/ingestion.md has the measured figure)
TIMEOUT_MS = 8000  # the route's: an append is retried through a failover until then


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    if nats_server() is None:
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    with NatsCluster(tmp_path / "nats") as started:
        yield started


@pytest.fixture
def table() -> Iterator[str]:
    require(PG_URL, "PostgreSQL")
    name = f"js_cluster_{secrets.token_hex(4)}"
    yield name
    asyncio.run(sql(PG_URL, f"DROP TABLE IF EXISTS {name}"))


def replica_config(port: int, nats_url: str, stream: str, table: str) -> dict[str, Any]:
    return {
        "admin": {"listen": "127.0.0.1:0"},
        "listeners": [{"name": "main", "listen": f"127.0.0.1:{port}", "routes": [
            {"name": "events", "match": {"path_prefix": "/events"}, "timeout_ms": TIMEOUT_MS, "ingest": {
                "ack": "fsync",
                "log": {"backend": "jetstream", "url": nats_url, "stream": stream, "replicas": 3,
                        "subject": f"test.{stream.lower()}", "ack_wait_ms": 2000},
                "sink": {"type": "postgres", "url": PG_URL, "table": table, "pool_size": 2},
                "delivery": {"max_items": 64, "backoff_initial_ms": 50, "backoff_max_ms": 300}}}]}],
        "drain_timeout_ms": 5000,
    }


def stored(table: str) -> list[str]:
    try:
        rows = asyncio.run(sql(PG_URL, f"SELECT event_id FROM {table}"))
    except Exception as exc:
        if "does not exist" in str(exc):
            return []
        raise
    return named(r["event_id"] for r in rows)


def test_leader_and_replica_killed_under_load(cluster: NatsCluster, table: str, tmp_path: Path) -> None:
    stream = f"MBCLUSTER_{secrets.token_hex(4).upper()}"
    ports = [free_port() for _ in range(3)]
    paths = [write_config(tmp_path / f"r{i}.yaml", replica_config(p, cluster.url, stream, table))
             for i, p in enumerate(ports)]
    replicas: list[MeshbatchProcess] = []
    load = IngestLoad([f"http://127.0.0.1:{p}/events" for p in ports], rate=90, threads=10)
    try:
        for path in paths:
            replicas.append(MeshbatchProcess(path))
        leader = cluster.node(cluster.wait_quorum(stream)["leader"])
        load.start()

        def progress(seconds: float) -> None:
            target = len(load.records) + int(load.rate * seconds)
            wait_until(lambda: load.answered >= target, 10 * seconds + 20, "the load to progress")

        progress(2)
        killed_at = cluster.kill(leader)
        elected_at = cluster.wait_new_leader(stream, leader.name)  # the load goes on meanwhile
        progress(4)
        cluster.start_node(leader)
        replica_at, replica_killed = len(load.records), time.monotonic()
        replicas[1].kill()  # SIGKILL: its leased, unacknowledged events come back after the ack wait
        wait_port_free(ports[1])
        replicas[1] = MeshbatchProcess(paths[1])
        progress(2)
        load.stop()
        failover = load.refusals(killed_at, replica_killed)  # the replica's own kill: connection refused
        acked = load.acked()
        wait_until(lambda: acked <= set(stored(table)), 45, "every acknowledged event in PostgreSQL")
        rows = stored(table)
        twice = [k for k, n in Counter(rows).items() if n > 1]
        assert not twice, f"stored twice: {twice[:5]}"
        assert set(rows) <= load.sent_keys()
        # a producer is refused only when the stream had no leader for longer than its deadline: on a loaded
        # machine an election can outlast the deadline, and the refusals are those of the calls it outlasted
        election_s = elected_at - killed_at
        early = load.unexplained(killed_at, replica_killed, elected_at, TIMEOUT_MS / 1000)
        assert not early, f"refused while the stream had a leader (election {election_s:.2f} s): {early[:5]}"
        bound = max(REFUSAL_BOUND_S, election_s + ELECTION_SLACK_S)
        assert failover["refusing_s"] <= bound, f"election {election_s:.2f} s: {failover}"
        print(f"\nleader {leader.name} SIGKILLed, a new one elected {election_s:.2f} s later: {failover}")
        assert len(acked) >= 0.9 * replica_at, load.statuses()  # refusals, if any, were brief
        for replica in replicas:  # none hangs: each answers a fresh event at once
            answer = httpx.post(f"http://{replica.addresses['main']}/events", json={"last": True}, timeout=5)
            assert answer.status_code == 202
    finally:
        load.stop()
        for replica in replicas:
            try:
                replica.terminate(timeout=10)
            except Exception:
                replica.kill()
