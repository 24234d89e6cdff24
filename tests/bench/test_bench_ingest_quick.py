"""`meshbatch bench ingest --quick` end to end: real wrk and meshbatch on loopback, single JSON events and NDJSON
requests (decoded by the route's pipeline) into the SQLite log and sink.

Asserts only that a complete, valid result is produced and that every accepted event was delivered, never a
speed: the machine is shared.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenario_ingest import EVENT, ndjson_body

# timed bars or heavy load: run alone, after the parallel part of `make test`
pytestmark = pytest.mark.serial


def test_an_ndjson_body_is_one_event_a_line() -> None:
    lines = ndjson_body(3).splitlines()
    assert len(lines) == 3 and len(set(lines)) == 3
    assert all(json.loads(line).keys() == json.loads(EVENT).keys() for line in lines)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_ingest_quick_measures_single_events_and_ndjson_requests(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk missing (apt-get install wrk)")
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "meshbatch", "bench", "ingest", "--quick", "--duration", "1", "--sinks", "sqlite",
         "--events-per-request", "10", "--out", str(out)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((out / "ingest.json").read_text())
    assert data["scenario"] == "ingest" and data["mode"] == "quick" and data["failures"] == []
    assert data["settings"]["bodies"] == ["json", "ndjson"] and data["settings"]["events_per_request"] == 10
    assert data["settings"]["on_full"] == "reject"
    runs = {run["body"]: run for run in data["runs"]}
    assert runs["json"]["events_per_request"] == 1 and runs["ndjson"]["events_per_request"] == 10
    for run in runs.values():
        assert run["requests"] > 0 and run["errors"] == 0
        # the route's own count of events accepted (202s), with the requests in flight when the load stopped
        assert run["accepted_per_s"] == pytest.approx(run["requests_per_s"] * run["events_per_request"], rel=0.05)
        assert run["accepted"] >= run["requests"] * run["events_per_request"]
        assert run["delivered"] == run["accepted"] and run["left"] == 0
        assert run["kept_up_per_s"] == pytest.approx(  # the load's events over the load and the drain
            run["accepted_per_s"] * run["load_s"] / (run["load_s"] + run["drain_s"]), rel=0.01)
        assert run["cpu_us_per_event"] == pytest.approx(
            run["proxy_cpu_us_per_event"] + run["workers_cpu_us_per_event"], abs=0.02)
        assert run["p99_ms"] >= run["p50_ms"]
    summary = data["summary"]["ndjson"]["sqlite"]
    assert summary["accepted_per_s"]["n"] == 1 and summary["requests_per_s"]["median"] > 0
    markdown = (out / "ingest.md").read_text()
    assert "| json x1 | sqlite |" in markdown and "| ndjson x10 | sqlite |" in markdown
