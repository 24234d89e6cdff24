"""Crash safety of the embedded log: `kill -9` of `meshbatch run` mid-flush, restart, and every event it
acknowledged (202) is in the sink exactly once; producers that saw no answer retry with their idempotency key."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
from test_ingest_services import Producer, ingest_config, wait_until

from testbed.stores import sqlite_rows

N = 3000


def test_kill_9_mid_flush_then_restart_loses_and_duplicates_nothing(mesh: Any, tmp_path: Path) -> None:
    sink = tmp_path / "sink.db"
    config = ingest_config(ack="fsync", log={"path": str(tmp_path / "log.db")},
                           sink={"type": "sqlite", "path": str(sink)}, delivery={"max_items": 64})
    proxy = mesh.start(config, "ingest.yaml")
    producer = Producer(proxy.url("main", "/events"))
    sending = threading.Thread(target=producer.send, args=(range(N),))
    sending.start()
    wait_until(lambda: len(producer.acked) >= N // 3, 30, "a third of the events to be acknowledged")
    stored_before = len(sqlite_rows(sink))
    proxy.kill()  # SIGKILL while producers send and the flusher delivers
    sending.join(60)
    acked = set(producer.acked)
    assert 0 < stored_before < N and len(acked) < N

    again = mesh.start(config, "ingest.yaml")  # the same log file: what was acknowledged is recovered
    recovered = wait_until(lambda: acked <= set(sqlite_rows(sink)) and sqlite_rows(sink), 30,
                           "every acknowledged event to reach the sink after the restart")
    assert len(recovered) == len(set(recovered))
    retry = Producer(again.url("main", "/events"))  # the producers retry what got no answer, same keys
    retry.send(sorted(producer.failed), threads=8)
    assert len(retry.acked) == len(producer.failed)
    rows = wait_until(lambda: (r := sqlite_rows(sink)) and len(r) >= N and r, 30, "all events in the sink")
    assert sorted(rows) == sorted(f"k-{i}" for i in range(N))  # every one, each exactly once
    summary = httpx.get(again.url("admin", "/ingest"), timeout=5).json()["ingest"]["events"]
    assert summary["log"]["dead_letters"] == 0
    wait_until(lambda: httpx.get(again.url("admin", "/ingest"), timeout=5).json()["ingest"]["events"]["log"][
        "backlog"] == 0, 10, "the log to empty")
