"""The pure parts of the benchmark harness: locating bench/, wrk output parsing, stats and ratios."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from meshbatch import benchcli


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return benchcli.load_bench(benchcli.find_bench_dir())


def _mod(name: str) -> ModuleType:
    return importlib.import_module(f"{benchcli.PACKAGE}.{name}")


def test_bench_dir_is_found_from_the_package() -> None:
    found = benchcli.find_bench_dir()
    assert (found / "runner.py").is_file()
    assert (found / "scenario_proxy.py").is_file()


def test_env_var_must_point_at_a_bench_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(benchcli.ENV_VAR, str(tmp_path))
    with pytest.raises(benchcli.BenchNotFoundError, match=benchcli.ENV_VAR):
        benchcli.find_bench_dir()
    assert benchcli.main(["proxy", "--quick"]) == 2


def test_scenarios_are_discovered(bench: ModuleType) -> None:
    scenarios = _mod("runner").discover()
    assert "proxy" in scenarios


def test_wrk_done_line_is_parsed(bench: ModuleType) -> None:
    wrk = _mod("wrk")
    line = (
        'WRK_JSON {"requests":1000,"duration_us":2000000,"bytes":1,'
        '"errors":{"connect":0,"read":1,"write":0,"status":2,"timeout":0},'
        '"latency_us":{"min":10,"mean":500.5,"stdev":1.0,"max":9000,'
        '"p50":400,"p75":600,"p90":800,"p99":1200,"p999":5000}}'
    )
    result = wrk.parse_wrk_output("Running 2s test\n" + line + "\n")
    assert result.rps == 500.0
    assert result.errors == 3
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (0.4, 1.2, 9.0)
    with pytest.raises(_mod("common").BenchError):
        wrk.parse_wrk_output("no marker here")


def test_summaries_pair_runs_of_the_same_round(bench: ModuleType) -> None:
    report = _mod("proxy_report")
    runs = [
        {"round": 1, "target": "nginx", "rps": 100.0, "p50_ms": 1.0, "p99_ms": 2.0},
        {"round": 1, "target": "meshbatch", "rps": 80.0, "p50_ms": 1.0, "p99_ms": 3.0},
        {"round": 2, "target": "nginx", "rps": 50.0, "p50_ms": 1.0, "p99_ms": 2.0},
        {"round": 2, "target": "meshbatch", "rps": 45.0, "p50_ms": 1.0, "p99_ms": 2.0},
        {"round": 3, "target": "meshbatch", "error": "wrk exited 1"},
    ]
    closed = report.closed_summary(runs, ["nginx", "meshbatch"])
    assert closed["summary"]["meshbatch"]["rps"] == {"median": 62.5, "min": 45.0, "max": 80.0, "n": 2}
    paired = closed["ratios"]["meshbatch/nginx"]["rps"]["paired"]
    assert (paired["min"], paired["max"]) == (0.8, 0.9)
    assert closed["ratios"]["meshbatch/nginx"]["rps"]["of_medians"] == 62.5 / 75.0


def test_loadgen_percentiles_are_nearest_rank(bench: ModuleType) -> None:
    loadgen = _mod("loadgen")
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile(values, 100) == 100.0
    cdf = loadgen.cdf([v / 1000 for v in values], points=10)
    assert cdf[-1] == [100.0, 1.0]
    assert len(cdf) == 10
