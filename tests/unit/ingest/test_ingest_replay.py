"""Dead letters and the pipeline: a request whose every event is parked is a 422 with the reasons; a replay runs
the letters through the route's pipeline from the stage that refused them (still refused: stays, with its
reason; now valid: stored as the later stages leave it; filtered: removed), and `raw` stores them as they are.
In process, with the SQLite log and sink."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_ingest_handler import post, wait_stored

from meshbatch.config.model import Route
from meshbatch.http.serialize import local_reply
from meshbatch.ingest.handler import EventsDeadLettered
from meshbatch.ingest.logs.sqlite_store import Store
from meshbatch.ingest.route import IngestRoute
from meshbatch.pipeline.runner import build_pipeline
from meshbatch.runtime.ingest import build_ingest
from meshbatch.telemetry.metrics import Registry

STRICT = {"type": "object", "required": ["temperature"], "properties": {"temperature": {"type": "number"}}}
RELAXED = {"type": "object", "required": ["temperature"]}


def make(tmp_path: Path, ingest: dict[str, Any], pipeline: list[Any]) -> IngestRoute:
    """An ingest route on a SQLite log and sink whose pipeline runs inline (no worker processes to outlive it)."""
    spec = {"name": "events", "ingest": {"log": {"path": str(tmp_path / "log.db")},
                                         "sink": {"type": "sqlite", "path": str(tmp_path / "sink.db")}, **ingest},
            "pipeline": pipeline, "pipeline_limits": {"workers": 0}}
    return build_ingest(Route.model_validate(spec), None, Registry(), {}, True)


def steps(schema: dict[str, Any], keep: str = "true") -> list[Any]:
    return [{"decode": {"format": "auto"}},
            {"transform": {"rename": {"temp": "temperature"}}},
            {"validate": {"schema": schema, "on_invalid": "dead_letter"}},
            {"filter": keep},
            {"transform": {"add": {"checked": True}}}]


async def answer(route: IngestRoute, body: bytes, *headers: tuple[bytes, bytes]) -> tuple[int, dict[str, Any]]:
    try:
        response = await route.handler(post(body, *headers))
    except EventsDeadLettered as exc:
        response = local_reply(exc)
    return response.status, orjson.loads(response.body)


async def test_every_event_parked_is_a_422_with_the_reasons(tmp_path: Path) -> None:
    route = make(tmp_path, {}, steps(STRICT))
    await route.start()
    status, body = await answer(route, b'{"temperature": "hot"}')
    assert status == 422
    (letter,) = body.pop("dead_letters")
    assert body == {"error": "unprocessable entity", "reason": "events_dead_lettered", "dead_lettered": 1,
                    "detail": "the event breaks the route's rules and is parked in dead letters "
                              "(schema_violation: $.temperature: 'hot' is not of type 'number')"}
    assert letter["reason"] == "schema_violation: $.temperature: 'hot' is not of type 'number'"
    assert [d["id"] for d in await route.dead_letters(10)] == [letter["id"]], "parked durably before the 422"
    ndjson = (b"content-type", b"application/x-ndjson")
    status, body = await answer(route, b'{"x": 1}\n{"temp": "cold"}\n', ndjson)
    assert status == 422 and body["dead_lettered"] == 2 and len(body["dead_letters"]) == 2
    status, body = await answer(route, b'{"x": 1}\n{"temp": 21.5}\n', ndjson)
    assert status == 202 and len(body["ids"]) == 1, "a request of several events is answered with ids"
    assert body["dead_lettered"] == 1 and body["dead_letters"][0]["reason"].startswith("schema_violation: $:")
    status, body = await answer(route, b'{"temp": 20}')
    assert status == 202 and set(body) == {"id", "status"}
    await route.log.flush()  # type: ignore[attr-defined]
    letters = await route.dead_letters(10)
    assert [d["stage"] for d in letters] == ["pipeline[2].validate"] * 4
    assert route.metrics.count("refused") == 4 and route.metrics.count("accepted") == 2
    await route.drain(5.0)


async def test_a_replay_reruns_the_pipeline_from_the_stage_that_refused(tmp_path: Path) -> None:
    route = make(tmp_path, {}, steps(STRICT))
    await route.start()
    await answer(route, b'{"temp": "hot"}')  # renamed, then refused: its letter is {"temperature": "hot"}
    await answer(route, b'{"temp": 19, "site": "x"}')
    await answer(route, b'{"temp": "warm", "drop": true}')
    await wait_stored(tmp_path, 1)
    await route.log.flush()  # type: ignore[attr-defined]
    (hot, drop) = await route.dead_letters(10)
    assert hot["body"] == '{"temperature":"hot"}'

    report = await route.replay(None, 100)  # nothing fixed: refused again, with the reason, and kept
    assert report.payload() == {"replayed": 0, "dropped": 0, "refused": 2, "raw": False, "refusals": [
        {"id": hot["id"], "reason": "schema_violation: $.temperature: 'hot' is not of type 'number'"},
        {"id": drop["id"], "reason": "schema_violation: $.temperature: 'warm' is not of type 'number'"}]}
    assert len(await route.dead_letters(10)) == 2
    await route.drain(5.0)

    fixed = make(tmp_path, {}, steps(RELAXED, keep="not exists(drop)"))  # the fix, as a reload would bring it
    await fixed.start()
    report = await fixed.replay(None, 100)
    assert (report.replayed, report.dropped, report.refused) == (1, 1, [])
    rows = await wait_stored(tmp_path, 2)
    assert sorted((orjson.loads(payload) for _, payload in rows), key=len) == [
        {"checked": True, "temperature": "hot"},
        {"checked": True, "site": "x", "temperature": 19}], "the stages after validate ran, the rename not twice"
    assert await fixed.dead_letters(10) == []
    assert fixed.metrics.count("replayed") == 1
    await fixed.drain(5.0)


async def test_raw_replays_as_is_and_delivery_letters_need_no_pipeline(tmp_path: Path) -> None:
    route = make(tmp_path, {}, steps(STRICT))
    await route.start()
    await answer(route, b'{"temp": "hot"}')
    route.log.dead([*_records(b'{"temperature": 1}')], "column x: does not fit")  # as the flusher parks
    await route.log.flush()  # type: ignore[attr-defined]
    letters = await route.dead_letters(10)
    assert [d["stage"] for d in letters] == ["pipeline[2].validate", "delivery"]
    report = await route.replay([letters[1]["id"]], 100)  # a delivery letter passed the pipeline: moved as is
    assert (report.replayed, report.refused) == (1, [])
    report = await route.replay(None, 100, raw=True)
    assert report.payload() == {"replayed": 1, "dropped": 0, "refused": 0, "refusals": [], "raw": True}
    rows = await wait_stored(tmp_path, 2)
    assert sorted(payload for _, payload in rows) == sorted(['{"temperature":"hot"}', '{"temperature": 1}'])
    await route.drain(5.0)


def _records(*bodies: bytes) -> list[Any]:
    from meshbatch.ingest.record import Record

    return [Record(f"d{i}", body, 1700000000.0) for i, body in enumerate(bodies)]


def test_resume_finds_the_stage_by_place_then_by_name() -> None:
    route = Route.model_validate({"name": "r", "ingest": {}, "pipeline": [{"compress": {}}, *steps(RELAXED)]})
    pipeline = build_pipeline("r", route.pipeline, dead_letters=True)
    assert pipeline.places[2] == "pipeline[3].validate", "places count every step of the config, compress too"
    event = b'{"temp": 1, "temperature": 2}'
    assert pipeline.resume(event, "pipeline[3].validate").events == [b'{"temp":1,"temperature":2,"checked":true}']
    assert pipeline.resume(event, "pipeline[7].validate").events == [b'{"temp":1,"temperature":2,"checked":true}']
    assert pipeline.resume(event, "pipeline[0].unknown").events == [b'{"temp":1,"temperature":2}'], \
        "no such stage: nothing to re-run"
    refused = pipeline.resume(b'{"t": 1}', "validate")
    assert refused.dead == [(b'{"t":1}', "schema_violation: $: 'temperature' is a required property",
                             "pipeline[3].validate")]
    assert pipeline.resume(b"{nope", "validate").error is not None


def test_a_log_from_before_stages_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE dead_letters (n INTEGER PRIMARY KEY, id TEXT NOT NULL, body BLOB NOT NULL, "
               "received REAL NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL, failed_at REAL NOT NULL)")
    db.execute("INSERT INTO dead_letters VALUES (1, 'a', x'7b7d', 1, 0, 'schema_violation: $: x', 2)")
    db.commit()
    db.close()
    store = Store(str(path), "full")
    store.open()
    try:
        assert store.dead_letters(10)[0]["stage"] is None
    finally:
        store.close()


@pytest.mark.parametrize("payload", [{"raw": "yes"}, {"raws": True}, {"ids": "a"}])
def test_the_admin_replay_body_is_checked(payload: dict[str, Any]) -> None:
    import asyncio

    from meshbatch.http.message import Request
    from meshbatch.ingest.admin import IngestAdmin

    class Target:
        snapshot = type("S", (), {"ingest": {}, "config": type("C", (), {"admin": None})()})()

    admin = IngestAdmin(Target())
    request = Request(b"POST", b"/ingest/replay", [], orjson.dumps(payload))
    admin._authorize = lambda request: None  # type: ignore[method-assign]
    response = asyncio.run(admin.replay(request))
    assert response.status == 400 and orjson.loads(response.body)["reason"] == "bad_replay"


async def test_a_large_refused_request_lists_the_first_hundred_letters(tmp_path: Path) -> None:
    route = make(tmp_path, {}, steps(STRICT))
    await route.start()
    body = b"\n".join(b'{"temperature": "t%d"}' % i for i in range(150))
    status, answer = await answer_of(route, body)
    assert status == 422 and answer["dead_lettered"] == 150 and len(answer["dead_letters"]) == 100
    assert answer["detail"].startswith("all 150 events break the route's rules and are parked in dead letters")
    await route.log.flush()  # type: ignore[attr-defined]  # letters are parked with the next group commit
    assert len(await route.dead_letters(1000)) == 150
    await route.drain(5.0)


async def answer_of(route: IngestRoute, body: bytes) -> tuple[int, dict[str, Any]]:
    return await answer(route, body, (b"content-type", b"application/x-ndjson"))
