"""Crash safety of the embedded log: `kill -9` of `meshbatch run` mid-flush, restart, and every event it
acknowledged (202) is in the sink exactly once; producers that saw no answer retry with their idempotency key.
Requests of one event and of many (NDJSON: the log keeps a request's events as one row)."""

from __future__ import annotations

import concurrent.futures
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from test_ingest_services import Producer, ingest_config, wait_until

from meshbatch.ingest.record import key_of
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


class NdjsonProducer(Producer):
    """Threads sending requests of `EVENTS` NDJSON lines `{"n": i, "line": j}` with idempotency-key `k-i` (the
    events' ids are the key's with the line's place): the log keeps each request's events as one row."""

    def send(self, numbers: Iterable[int], threads: int = 16) -> None:
        def run(chunk: list[int]) -> None:
            with httpx.Client(timeout=10) as client:
                for i in chunk:
                    body = b"".join(b'{"n":%d,"line":%d}\n' % (i, j) for j in range(EVENTS))
                    try:
                        response = client.post(self.url, content=body, headers={
                            "idempotency-key": f"k-{i}", "content-type": "application/x-ndjson"})
                        ok = response.status_code == 202 and len(response.json()["ids"]) == EVENTS
                    except httpx.HTTPError:
                        ok = False
                    with self.lock:
                        (self.acked.add(f"k-{i}") if ok else self.failed.add(i))

        items = list(numbers)
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, [items[t::threads] for t in range(threads)]))


EVENTS = 25  # lines a request: more than a delivery batch holds, so a unit is settled in parts


def stored_lines(sink: Path) -> Counter[tuple[str, str]]:
    """(idempotency key, line) of each event in the sink, with how many times it is there."""
    db = sqlite3.connect(f"file:{sink}?mode=ro", uri=True, timeout=5)
    try:
        ids = [row[0] for row in db.execute("SELECT event_id FROM events")]
    except sqlite3.OperationalError:
        ids = []
    finally:
        db.close()
    return Counter((key_of(i) or i, i.rpartition(":")[2]) for i in ids)


def test_kill_9_mid_flush_with_many_event_requests_loses_and_duplicates_nothing(mesh: Any, tmp_path: Path) -> None:
    n = 400
    sink = tmp_path / "sink.db"
    config = ingest_config(ack="fsync", log={"path": str(tmp_path / "log.db")},  # small batches: a unit's
                           sink={"type": "sqlite", "path": str(sink)}, delivery={"max_items": 10})  # parts settle apart
    config["listeners"][0]["routes"][0]["pipeline"] = [{"decode": {"format": "ndjson"}}]
    proxy = mesh.start(config, "ingest.yaml")
    producer = NdjsonProducer(proxy.url("main", "/events"))
    sending = threading.Thread(target=producer.send, args=(range(n),))
    sending.start()
    wait_until(lambda: len(producer.acked) >= n // 3, 30, "a third of the requests to be acknowledged")
    proxy.kill()  # SIGKILL while producers send and the flusher delivers, units half delivered
    sending.join(60)
    acked = set(producer.acked)
    assert 0 < len(acked) < n

    again = mesh.start(config, "ingest.yaml")
    every_line = {(key, str(j)) for key in acked for j in range(EVENTS)}
    wait_until(lambda: every_line <= stored_lines(sink).keys(), 30,
               "every acknowledged request's events to reach the sink after the restart")
    retry = NdjsonProducer(again.url("main", "/events"))
    retry.send(sorted(producer.failed), threads=8)
    assert len(retry.acked) == len(producer.failed)
    lines = wait_until(lambda: (c := stored_lines(sink)) and len(c) >= n * EVENTS and c, 30, "all events")
    assert set(lines) == {(f"k-{i}", str(j)) for i in range(n) for j in range(EVENTS)}
    assert max(lines.values()) == 1
    wait_until(lambda: (s := httpx.get(again.url("admin", "/ingest"), timeout=5).json()["ingest"]["events"]["log"])[
        "backlog"] == 0 and s, 10, "the log to empty")
    assert httpx.get(again.url("admin", "/ingest"), timeout=5).json()["ingest"]["events"]["log"]["dead_letters"] == 0
