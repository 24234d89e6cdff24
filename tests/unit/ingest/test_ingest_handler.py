"""The accepting side in process: 202 with the event id, idempotency keys, ack levels, a full log, the pipeline."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from meshbatch.clock import FakeClock
from meshbatch.config.model import Route
from meshbatch.config.plain import of
from meshbatch.errors import BadRequest, ProxyError
from meshbatch.http.message import Request
from meshbatch.http.serialize import local_reply
from meshbatch.ingest.record import key_of
from meshbatch.ingest.route import RETRY_AFTER_FOR, IngestRoute
from meshbatch.runtime.ingest import build_ingest
from meshbatch.service import Call
from meshbatch.telemetry.metrics import Registry


def make(tmp_path: Path, ingest: dict[str, Any], pipeline: list[Any] | None = None) -> IngestRoute:
    spec = {"name": "events", "ingest": {"log": {"path": str(tmp_path / "log.db"), **ingest.pop("log", {})},
                                         "sink": {"type": "sqlite", "path": str(tmp_path / "sink.db")}, **ingest},
            "pipeline": pipeline or []}
    return build_ingest(of(Route.model_validate(spec)), None, Registry(), {}, True)


@pytest.fixture
async def started(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IngestRoute]:
    route = make(tmp_path, dict(request.param) if hasattr(request, "param") else {})
    await route.start()
    yield route
    await route.drain(5.0)


def post(body: bytes, *headers: tuple[bytes, bytes]) -> Request:
    return Call(Request(b"POST", b"/events", list(headers), body))


def stored(tmp_path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(tmp_path / "sink.db")
    try:
        return db.execute("SELECT event_id, payload FROM events ORDER BY event_id").fetchall()
    finally:
        db.close()


async def wait_stored(tmp_path: Path, n: int) -> list[tuple[str, str]]:
    async with asyncio.timeout(10):
        while True:
            try:
                rows = stored(tmp_path)
            except sqlite3.OperationalError:
                rows = []
            if len(rows) >= n:
                return rows
            await asyncio.sleep(0.01)


async def test_accepted_with_an_id_then_stored(started: IngestRoute, tmp_path: Path) -> None:
    response = await started.handler(post(b'{"a": 1}'))
    assert response.status == 202
    body = orjson.loads(response.body)
    assert body["status"] == "accepted"
    assert (b"x-meshbatch-event-id", body["id"].encode()) in response.headers
    assert body["id"].startswith("e.")
    keyed = await started.handler(post(b'{"a": 2}', (b"idempotency-key", b"order-42")))
    again = await started.handler(post(b'{"a": 2}', (b"idempotency-key", b"order-42")))
    keyed_id = orjson.loads(keyed.body)["id"]
    assert keyed_id == orjson.loads(again.body)["id"] and key_of(keyed_id) == "order-42"
    rows = await wait_stored(tmp_path, 2)
    assert sorted(r[0] for r in rows) == sorted([body["id"], keyed_id])  # the key stored once
    assert started.summary()["accepted"] == 3


async def test_bad_bodies_and_keys(started: IngestRoute) -> None:
    with pytest.raises(BadRequest, match="not valid JSON"):
        await started.handler(post(b"{nope"))
    with pytest.raises(BadRequest, match="empty"):
        await started.handler(post(b""))
    with pytest.raises(BadRequest, match="idempotency-key"):
        await started.handler(post(b"{}", (b"idempotency-key", b"x" * 201)))


@pytest.mark.parametrize("started", [{"ack": "delivered"}], indirect=True)
async def test_delivered_waits_for_the_sink(started: IngestRoute, tmp_path: Path) -> None:
    response = await started.handler(post(b'{"a": 1}'))
    assert response.status == 202 and orjson.loads(response.body)["status"] == "delivered"
    assert [r[0] for r in stored(tmp_path)] == [orjson.loads(response.body)["id"]]


@pytest.mark.parametrize("started", [{"ack": "memory"}], indirect=True)
async def test_memory_answers_before_the_commit(started: IngestRoute, tmp_path: Path) -> None:
    log = started.log
    response = await started.handler(post(b'{"a": 1}'))
    assert response.status == 202
    assert log.stats()["commits"] == 0  # answered before the group commit ran
    await wait_stored(tmp_path, 1)


@pytest.mark.parametrize("started", [{"log": {"max_events": 2}}], indirect=True)
async def test_a_full_log_is_a_429_with_retry_after(started: IngestRoute) -> None:
    await started.flusher.stop(1.0)  # nothing drains: the log fills
    for _ in range(2):
        assert (await started.handler(post(b"{}"))).status == 202
    with pytest.raises(ProxyError) as info:
        await started.handler(post(b"{}"))
    reply = local_reply(info.value)
    assert reply.status == 429 and reply.reason == "ingest_log_full"
    assert any(k == b"retry-after" and int(v) >= 1 for k, v in reply.headers)


class _CountingStats:
    """A log whose statistics count their readers."""

    def __init__(self, backlog: int) -> None:
        self.backlog = backlog
        self.reads = 0

    def stats(self) -> dict[str, Any]:
        self.reads += 1
        return {"backlog": self.backlog}


def test_a_full_logs_retry_after_is_computed_at_most_every_quarter_second(tmp_path: Path) -> None:
    """Producers that send again at once after a 429 make thousands of refusals a second: each one read the
    log's statistics (a walk of the events in flight) for the same Retry-After."""
    route = make(tmp_path, {})
    clock = FakeClock()
    route.clock = clock
    counting = _CountingStats(backlog=5_000)
    route.log = counting  # type: ignore[assignment]
    assert route.retry_after() == 5.0  # nothing delivered yet
    for _ in range(100):
        assert route.retry_after() == 5.0
    assert counting.reads == 1
    clock.advance(RETRY_AFTER_FOR)
    assert route.retry_after() == 5.0 and counting.reads == 2


async def test_a_full_log_refuses_a_request_before_its_pipeline_runs(tmp_path: Path) -> None:
    route = make(tmp_path, {"log": {"max_events": 3}}, [{"decode": {"format": "ndjson"}}])
    await route.start()
    await route.flusher.stop(1.0)
    ndjson = (b"content-type", b"application/x-ndjson")
    assert (await route.handler(post(b"1\n2\n3\n", ndjson))).status == 202
    assert route.pipeline is not None
    decoded = route.pipeline.counts()["decode"]
    with pytest.raises(ProxyError) as info:
        await route.handler(post(b"4\n" * 1000, ndjson))
    assert info.value.status == 429 and info.value.reason == "ingest_log_full"
    assert route.pipeline.counts()["decode"] == decoded  # not decoded: nothing to spend on a refusal
    await route.drain(5.0)


async def test_block_mode_waits_for_room(tmp_path: Path) -> None:
    route = make(tmp_path, {"log": {"max_events": 1, "on_full": "block", "block_timeout_ms": 3000}})
    await route.start()
    await route.flusher.stop(1.0)
    assert (await route.handler(post(b"{}"))).status == 202
    blocked = asyncio.ensure_future(route.handler(post(b'{"second": 1}')))
    for _ in range(20):
        await asyncio.sleep(0)  # let it run until it waits for room
    assert not blocked.done()
    batch = await route.log.take(10, 1 << 20)
    route.log.ack(batch)
    assert (await blocked).status == 202
    await route.drain(5.0)


async def test_pipeline_expands_filters_and_dead_letters(tmp_path: Path) -> None:
    route = make(tmp_path, {}, [{"decode": {"format": "ndjson"}},
                                {"validate": {"schema": {"required": ["t"]}, "on_invalid": "dead_letter"}},
                                {"filter": "t > 0"}])
    await route.start()
    body = b'{"t": 1}\n{"t": -1}\n{"x": 1}\n{"t": 2}\n'
    response = await route.handler(post(body, (b"idempotency-key", b"batch-7")))
    answer = orjson.loads(response.body)
    ids = answer["ids"]
    prefix = ids[0].rpartition(":")[0]
    assert answer == {"ids": ids, "status": "accepted", "dropped": 1, "dead_lettered": 1,
                      "dead_letters": [{"id": f"{prefix}:dead2",
                                        "reason": "schema_violation: $: 't' is a required property"}]}
    assert ids == [f"{prefix}:0", f"{prefix}:1"] and key_of(ids[0]) == key_of(ids[1]) == "batch-7"
    rows = await wait_stored(tmp_path, 2)
    assert rows == [(ids[0], '{"t":1}'), (ids[1], '{"t":2}')]
    letters = await route.dead_letters(10)
    assert [(d["body"], d["reason"][:16], d["stage"]) for d in letters] == [
        ('{"x":1}', "schema_violation", "pipeline[1].validate")]
    await route.drain(5.0)
    assert route.summary()["state"] == "closed"


class DeadlineSpy:
    """The route's log with each append's deadline noted (the compiled log's own methods cannot be replaced)."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.deadlines: list[float | None] = []

    def append(self, records: Any, deadline: float | None = None) -> Any:
        self.deadlines.append(deadline)
        return self.log.append(records, deadline)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)


async def test_the_append_gets_the_requests_deadline(started: IngestRoute) -> None:
    spy = DeadlineSpy(started.log)
    deadlines = spy.deadlines
    started.log = spy  # type: ignore[assignment]
    now = asyncio.get_running_loop().time()
    assert (await started.handler(post(b"{}"))).status == 202
    assert (await started.handler(post(b"{}", (b"x-meshbatch-deadline-ms", b"250")))).status == 202
    route_timeout = started.timeout
    assert deadlines[0] is not None and now + route_timeout - 1 <= deadlines[0] <= now + route_timeout + 1
    assert deadlines[1] is not None and deadlines[1] <= now + 1.25  # the caller's shorter budget wins
    for hostile in (b"soon", b"nan", b"inf", b""):
        with pytest.raises(BadRequest, match="milliseconds"):
            await started.handler(post(b"{}", (b"x-meshbatch-deadline-ms", hostile)))


@pytest.mark.parametrize("pipeline", [None, [{"decode": {"format": "ndjson"}}]])
@pytest.mark.parametrize("key", [None, b"order-42", b'a "quoted" \\key/:0'])
async def test_the_joined_answer_is_the_json_it_stands_for(tmp_path: Path, pipeline: list[Any] | None,
                                                          key: bytes | None) -> None:
    """The usual 202 body is joined from its pieces: the same bytes orjson would write, whatever the key."""
    route = make(tmp_path, {}, pipeline)
    await route.start()
    try:
        headers = [(b"idempotency-key", key)] if key is not None else []
        body = b'{"a": 1}\n{"a": 2}\n' if pipeline else b'{"a": 1}'
        answer = await route.handler(post(body, (b"content-type", b"application/x-ndjson"), *headers))
        payload = orjson.loads(answer.body)
        assert answer.status == 202 and answer.body == orjson.dumps(payload)
        ids = payload["ids"] if pipeline else [payload["id"]]
        assert list(payload) == (["ids", "status"] if pipeline else ["id", "status"])
        assert payload["status"] == "accepted" and len(ids) == (2 if pipeline else 1)
        assert dict(answer.headers)[b"x-meshbatch-event-id"] == ids[0].encode()
        if key is not None:
            assert {key_of(i) for i in ids} == {key.decode()}
    finally:
        await route.drain(5.0)
