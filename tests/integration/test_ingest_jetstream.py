"""The JetStream log end to end (a real NATS JetStream server): events accepted into a stream, delivered to the
sink, recovered after `kill -9` from the stream itself; dead letters parked in the dead-letter stream and
replayed from there."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from test_ingest_services import Producer, ingest_config, require, wait_until

from testbed.stores import NATS_URL, named, sqlite_rows

TOKEN = "jetstream-admin-token-1"


@pytest.fixture
def stream() -> Iterator[str]:
    require(NATS_URL, "NATS JetStream")
    name = f"MBTEST_{secrets.token_hex(4).upper()}"
    yield name

    async def drop() -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        for s in (name, f"{name}_DEAD"):
            try:
                await js.delete_stream(s)
            except Exception:
                pass
        await nc.close()

    asyncio.run(drop())


def config(tmp_path: Path, stream: str, **sink: Any) -> dict[str, Any]:
    return ingest_config(
        admin={"token": TOKEN},
        log={"backend": "jetstream", "url": NATS_URL, "stream": stream, "subject": f"test.{stream.lower()}",
             "ack_wait_ms": 2000},
        sink={"type": "sqlite", "path": str(tmp_path / "sink.db"), **sink},
        delivery={"max_items": 100, "max_attempts": 2, "backoff_initial_ms": 20, "backoff_max_ms": 50})


def test_jetstream_log_survives_kill_9(mesh: Any, tmp_path: Path, stream: str) -> None:
    n = 1500
    cfg = config(tmp_path, stream)
    proxy = mesh.start(cfg, "js.yaml")
    producer = Producer(proxy.url("main", "/events"))
    sending = threading.Thread(target=producer.send, args=(range(n),))
    sending.start()
    wait_until(lambda: len(producer.acked) >= n // 3, 30, "a third of the events to be acknowledged")
    proxy.kill()
    sending.join(60)
    acked = set(producer.acked)
    again = mesh.start(cfg, "js.yaml")
    sink = tmp_path / "sink.db"
    wait_until(lambda: acked <= set(sqlite_rows(sink)), 30, "every acknowledged event after the restart")
    rows = sqlite_rows(sink)
    assert len(rows) == len(set(rows))
    summary = wait_until(lambda: (s := httpx.get(again.url("admin", "/ingest"), timeout=5).json()["ingest"][
        "events"]) and s["log"]["backlog"] == 0 and s, 15, "the stream to empty")
    assert summary["log"]["backend"] == "jetstream" and summary["log"]["connected"] is True


def test_jetstream_dead_letters_and_replay(mesh: Any, tmp_path: Path, stream: str) -> None:
    proxy = mesh.start(config(tmp_path, stream, columns={"n": {"field": "n", "type": "bigint"}}), "jsd.yaml")
    events = proxy.url("main", "/events")
    assert httpx.post(events, json={"n": 1}, headers={"idempotency-key": "ok"}).status_code == 202
    assert httpx.post(events, json={"n": "x"}, headers={"idempotency-key": "bad"}).status_code == 202
    admin = proxy.url("admin", "/ingest")
    wait_until(lambda: httpx.get(admin, timeout=5).json()["ingest"]["events"]["log"]["dead_letters"] == 1, 15,
               "the poison event in the dead-letter stream")
    assert sqlite_rows(tmp_path / "sink.db") == ["ok"]
    letters = httpx.get(proxy.url("admin", "/ingest/dead_letters"), headers={"authorization": f"Bearer {TOKEN}"},
                        timeout=5).json()["dead_letters"]
    assert named(d["id"] for d in letters) == ["bad"] and "column n" in letters[0]["reason"]
    replayed = httpx.post(proxy.url("admin", "/ingest/replay"), json={"route": "events"},
                          headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert replayed.json()["replayed"] == 1  # still poison: it is parked again after its attempts
    wait_until(lambda: httpx.get(admin, timeout=5).json()["ingest"]["events"]["log"]["dead_letters"] == 1, 15,
               "the replayed event to be parked again")


def test_jetstream_log_keeps_an_events_traceparent(stream: str) -> None:
    from meshbatch.clock import LoopClock
    from meshbatch.config.model import IngestLog
    from meshbatch.ingest.logs.jetstream import JetStreamLog
    from meshbatch.ingest.record import Record

    trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    async def round_trip() -> list[tuple[str, bytes | None]]:
        log = JetStreamLog(IngestLog(backend="jetstream", url=NATS_URL, stream=stream,
                                     subject=f"test.{stream.lower()}"), "traced", LoopClock())
        await log.open()
        try:
            await log.append([Record("t1", b'{"a": 1}', 1.0, trace=trace), Record("t2", b'{"a": 2}', 1.0)])
            taken = await log.take(10, 1 << 20)
            await log.ack(taken)
            return [(r.id, r.trace) for r in taken]
        finally:
            await log.close()

    assert asyncio.run(round_trip()) == [("t1", trace), ("t2", None)]


def test_jetstream_letters_keep_their_stage_and_replay_with_new_bodies(stream: str) -> None:
    """The log's side of a replay through the pipeline: a letter's stage travels in its headers; a replay with
    `bodies` moves the letters named with the body given and removes those given None."""
    from meshbatch.clock import FakeClock
    from meshbatch.config.model import IngestLog
    from meshbatch.ingest.logs.jetstream import JetStreamLog
    from meshbatch.ingest.record import Record

    async def run() -> None:
        log = JetStreamLog(IngestLog(backend="jetstream", url=NATS_URL, stream=stream,
                                     subject=f"test.{stream.lower()}"), "events", FakeClock())
        await log.open()
        try:
            await log.dead([Record("a", b'{"t": "x"}', 1.0)], "schema_violation: $.t", "pipeline[2].validate")
            await log.dead([Record("b", b'{"t": "y"}', 2.0)], "schema_violation: $.t", "pipeline[2].validate")
            await log.dead([Record("c", b'{"t": 3}', 3.0)], "column t: does not fit")
            letters = await log.dead_letters(10)
            assert [(d["id"], d["stage"]) for d in letters] == [
                ("a", "pipeline[2].validate"), ("b", "pipeline[2].validate"), ("c", "delivery")]
            assert [d["id"] for d in await log.dead_letters(10, ["c", "a"])] == ["a", "c"]
            assert await log.replay(None, 10, {"a": b'{"t":1}', "b": None}) == 1
            assert [d["id"] for d in await log.dead_letters(10)] == ["c"]
            taken: list[Record] = []
            for _ in range(20):
                taken += await log.take(10, 1 << 20)
                if taken:
                    break
            assert [(r.id, r.body) for r in taken] == [("a", b'{"t":1}')]
            await log.ack(taken)
        finally:
            await log.close()

    asyncio.run(run())
