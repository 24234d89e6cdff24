"""Reload: an unchanged ingest route is carried over; a changed one is rebuilt and takes the log over once the
old one has drained (one process, one log file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from meshbatch.config.model import Route
from meshbatch.http.message import Request
from meshbatch.runtime.ingest import build_ingest, start_ingest, stop_ingest
from meshbatch.service import Call
from meshbatch.telemetry.metrics import Registry


def spec(tmp_path: Path, **sink: Any) -> Route:
    return Route.model_validate({"name": "events", "ingest": {
        "log": {"path": str(tmp_path / "log.db")}, "sink": {"type": "sqlite", "path": str(tmp_path / "s.db"),
                                                            **sink}}})


async def test_carry_over_and_hand_over(tmp_path: Path) -> None:
    registry = Registry()
    first = build_ingest(spec(tmp_path), None, registry, {}, True)
    await start_ingest({"events": first})
    accepted = await first.handler(Call(Request(b"POST", b"/events", [], b'{"a": 1}')))
    assert accepted.status == 202
    assert build_ingest(spec(tmp_path), None, registry, {"events": first}, True) is first
    changed = build_ingest(spec(tmp_path, table="other"), None, registry, {"events": first}, True)
    assert changed is not first
    await stop_ingest({"events": first}, {"events": changed}, 5.0)  # the old one drains, releasing the log
    await start_ingest({"events": changed}, {"events": first})
    assert first.summary()["state"] == "closed" and changed.summary()["state"] == "serving"
    again = await changed.handler(Call(Request(b"POST", b"/events", [], b'{"a": 2}')))
    assert orjson.loads(again.body)["status"] == "accepted"
    await stop_ingest({"events": changed}, None, 5.0)
