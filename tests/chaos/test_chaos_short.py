"""The chaos and soak suite, short version (`meshbatch chaos --short`): each scenario with short durations, on
real processes and sockets. The same code as `make chaos`; figures are printed (run with -s to see them).
A scenario needing a service that is unreachable (PostgreSQL) or root (`multi-host`: network namespaces) is
skipped with the reason, or failed under MESHBATCH_REQUIRE_SERVICES."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

from meshbatch import checkout

# timed bars or heavy load: run alone, after the parallel part of `make test`
pytestmark = pytest.mark.serial

SCENARIOS = ["upstream-kill", "upstream-hang", "reload", "cert-rotation", "drain-handover", "ingest-kill",
             "sink-outage", "shard-kill", "nats-node-kill", "multi-host", "client-disconnect", "overload", "soak",
             "worker-kill"]


@pytest.fixture(scope="module")
def runner() -> ModuleType:
    return checkout.load("chaos")


def test_every_scenario_is_here(runner: ModuleType) -> None:
    assert sorted(runner.discover()) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.timeout(150)
def test_scenario_short(runner: ModuleType, name: str, tmp_path: Path) -> None:
    result = runner.run_one(name, short=True, work=tmp_path)
    report = importlib.import_module("chaos.report")
    print("\n" + report.scenario_markdown(result.as_json()))
    if result.skipped:
        if os.environ.get("MESHBATCH_REQUIRE_SERVICES"):
            pytest.fail(f"{result.skipped} and MESHBATCH_REQUIRE_SERVICES is set")
        pytest.skip(result.skipped)
    assert result.ok, "\n".join(result.failures + result.notes)
