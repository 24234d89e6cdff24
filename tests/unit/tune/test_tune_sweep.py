"""`tune` from a recorded trace: parsing, the cost fit, the sweep and the recommendation, the report and the CLI."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from meshbatch.tools.tune import report
from meshbatch.tools.tune.cli import run_tune
from meshbatch.tools.tune.sweep import Outcome, recommend, sweep
from meshbatch.tools.tune.trace import TraceError, fit, parse
from testbed.terminal import assert_readable
from testbed.tune_trace import recorded


def test_parse_and_fit_recover_the_cost_line() -> None:
    trace = parse(recorded())
    assert trace.route == "orders" and list(trace.arrivals) == sorted(trace.arrivals)
    assert trace.rate == pytest.approx(2000, rel=0.15)
    cost = fit(trace)
    assert cost.fixed == pytest.approx(0.00425, abs=0.0006)
    assert cost.per_item == pytest.approx(0.0002, abs=0.00005)
    assert len(cost.residuals) == len(trace.batches)


@pytest.mark.parametrize("document", [{}, {"batches": []}, {"batches": [], "recording": False}, []])
def test_unusable_traces_say_why(document: Any) -> None:
    with pytest.raises(TraceError):
        parse(document)


def test_the_recommendation_meets_the_target_and_spends_the_budget() -> None:
    trace = parse(recorded())
    outcomes = sweep(trace, fit(trace), items=[8, 32, 128], waits_ms=[0, 2, 20], in_flight=[1])
    assert len(outcomes) == 9 and sum(o.current for o in outcomes) == 0
    best, met = recommend(outcomes, target_ms=30)
    assert met and best.p99_ms <= 30 and best.expired == 0
    assert best.busy <= min(o.busy for o in outcomes if o.meets(30)) + 0.01
    tight, met_tight = recommend(outcomes, target_ms=0.001)
    assert not met_tight and tight.p99_ms == min(o.p99_ms for o in outcomes if o.expired == 0)


def test_more_load_means_more_latency() -> None:
    trace = parse(recorded())
    cost = fit(trace)
    (calm,) = sweep(trace, cost, items=[64], waits_ms=[0], in_flight=[1])
    (busy,) = sweep(trace, cost, items=[64], waits_ms=[0], in_flight=[1], load=1.5)
    assert busy.p99_ms > calm.p99_ms and busy.items_per_s > calm.items_per_s * 1.4
    (over,) = sweep(trace, cost, items=[64], waits_ms=[0], in_flight=[1], load=3.0)
    assert over.items_per_s == pytest.approx(over.capacity, rel=0.1)  # beyond capacity: throughput saturates


def test_recommend_needs_candidates() -> None:
    with pytest.raises(ValueError):
        recommend([], 10)
    one = Outcome(8, 0.0, 1, 1.0, 2.0, 3.0, 4.0, 100.0, 25.0, 1000.0, 0.5, 0)
    assert recommend([one], 10) == (one, True)


def _args(**overrides: Any) -> argparse.Namespace:
    args = {"admin": None, "route": None, "input": None, "save": None, "target_p99_ms": 25.0, "max_items": [16, 64],
            "wait_ms": [0.0, 2.0], "in_flight": None, "load": 1.0, "tick_us": 100.0, "seed": 1, "plot": None,
            "json": False}
    args.update(overrides)
    return argparse.Namespace(**args)


def test_the_command_prints_plots_and_answers_json(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    path.write_bytes(orjson.dumps(recorded()))
    console = Console(record=True, width=160)
    plot = tmp_path / "tune.png"
    assert run_tune(_args(input=str(path), plot=str(plot)), console) == 0
    text = console.export_text()
    assert "recommended" in text and "batch: {max_items:" in text and "current" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_tune(_args(input=str(path), json=True), console) == 0


def test_the_command_reports_a_missing_trace(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    assert run_tune(_args(input=str(tmp_path / "missing.json")), console) == 1
    assert "missing.json" in console.export_text()
    assert run_tune(_args(input=str(tmp_path / "missing.json"), load=0.0), console) == 1  # the trace fails first
    assert run_tune(_args(), console) == 1  # neither a proxy nor a file


@pytest.mark.parametrize("width", [80, 120, 200])
def test_the_report_reads_whole_at_every_width(tmp_path: Path, width: int) -> None:
    path = tmp_path / "trace.json"
    path.write_bytes(orjson.dumps(recorded()))
    console = Console(record=True, width=width, file=io.StringIO())
    assert run_tune(_args(input=str(path)), console) == 0
    trace = parse(recorded())
    outcomes = sweep(trace, fit(trace), items=[16, 64], waits_ms=[0.0, 2.0], in_flight=[1], load=1.0, tick=1e-4,
                     seed=1)
    best, _ = recommend(outcomes, 25.0)
    table = report.table(outcomes, best, 25.0, 64, width=width)
    assert_readable(console.export_text(), [table], width, may_be_blank=frozenset({"note"}))
    headers = [str(c.header) for c in table.columns]
    assert {"max\nitems", "wait\nms", "p99\nms", "capacity\nitems/s", "note"} <= set(headers), headers
    assert len(headers) == (13 if width >= 120 else len(headers)) and len(headers) >= 7
