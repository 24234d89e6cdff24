"""An ingest route as the dashboard and `meshbatch top` read it (meshbatch.admin.ingest_feed): a real route on a
fake clock delivering, then failing to reach its sink; and summaries missing or mangling every field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshbatch.admin.ingest_feed import ingest_entry, ingest_reading, sink_state
from meshbatch.clock import FakeClock
from meshbatch.config.model import Route
from meshbatch.http.message import Request
from meshbatch.ingest.route import IngestRoute
from meshbatch.service import Call
from meshbatch.telemetry.metrics import Registry
from meshbatch.telemetry.series import Reading, Series
from tests.unit.ingest.ingest_support import ScriptedSink


def build(tmp_path: Path, clock: FakeClock) -> IngestRoute:
    spec = Route.model_validate({"name": "events", "ingest": {
        "ack": "fsync", "log": {"path": str(tmp_path / "log.db")},
        "sink": {"type": "sqlite", "path": str(tmp_path / "s.db")}}})
    route = IngestRoute(spec, send=None, pipeline=None, metrics=Registry(), clock=clock)
    route.sink = route.flusher.sink = ScriptedSink()
    return route


async def accept(route: IngestRoute, n: int) -> None:
    for i in range(n):
        response = await route.handler(Call(Request(b"POST", b"/events", [], b'{"n": %d}' % i)))
        assert response.status == 202


def reading(route: IngestRoute) -> Reading:
    out = Reading()
    ingest_reading(route, out)
    return out


async def test_delivery_then_an_outage_as_the_dashboard_shows_them(tmp_path: Path) -> None:
    clock = FakeClock()
    route = build(tmp_path, clock)
    await route.log.open()
    route.serving = True
    series = Series()
    try:
        series.sample(clock.now(), {"events": reading(route)})
        await accept(route, 10)
        assert await route.flusher.step() == 10
        await route.log.flush()  # the acknowledgements committed
        clock.advance(1.0)
        point = series.sample(clock.now(), {"events": reading(route)})
        assert point is not None
        figures = point["routes"]["events"]
        assert figures["accepted_per_s"] == 10 and figures["delivered_per_s"] == 10
        assert figures["retried_per_s"] == 0 and figures["backlog"] == 0 and figures["in_flight"] == 0
        entry = ingest_entry(route)
        assert entry["sink"] == {"type": "scripted", "state": "up", "error": "", "failures": 0}
        assert entry["delivered_total"] == 10 and entry["backlog"] == 0 and entry["log"] == "sqlite"

        sink = route.sink
        assert isinstance(sink, ScriptedSink)
        sink.down = True
        await accept(route, 4)
        assert await route.flusher.step() == 4  # taken, refused by the sink, back in the log
        await route.log.flush()
        clock.advance(1.0)
        point = series.sample(clock.now(), {"events": reading(route)})
        assert point is not None
        figures = point["routes"]["events"]
        assert figures["delivered_per_s"] == 0 and figures["accepted_per_s"] == 4 and figures["backlog"] == 4
        entry = ingest_entry(route)
        assert entry["backlog"] == 4 and entry["sink"]["state"] == "down"
        assert entry["sink"]["error"] == "down for maintenance" and entry["sink"]["failures"] == 1
    finally:
        await route.log.close()


@pytest.mark.parametrize("summary", [
    {}, {"state": None, "log": None, "delivery": None, "sink": None},
    {"log": {"backlog": "many", "oldest_age_s": [1]}, "delivery": {"delivered": True, "consecutive_outages": "x"}},
    {"log": "not a mapping?", "delivery": {}, "sink": {"connected": "no"}},
])
def test_a_mangled_summary_reads_as_zeros_never_an_error(summary: dict[str, Any]) -> None:
    class View:
        def summary(self) -> dict[str, Any]:
            return summary

    entry = ingest_entry(View())
    assert entry["backlog"] == 0 and entry["delivered_total"] == 0 and entry["sink"]["state"] == "up"
    out = Reading()
    ingest_reading(View(), out)
    assert out.gauges["backlog"] == 0 and out.counters["delivered"] == 0


def test_the_sink_state_in_one_word() -> None:
    assert sink_state({"state": "starting"}) == ("starting", "")
    assert sink_state({"state": "serving", "delivery": {"consecutive_outages": 2, "last_error": "refused"}}) == (
        "down", "refused")
    assert sink_state({"state": "serving", "sink": {"connected": False}}) == ("connecting", "")
    assert sink_state({"state": "serving", "log": {"connected": False}}) == ("connecting", "")
    assert sink_state({"state": "serving", "delivery": {"last_error": "old news"}}) == ("up", "")
