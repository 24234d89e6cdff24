"""The pure parts of the benchmark harness: locating bench/, wrk output parsing, stats and ratios."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from meshbatch import checkout


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return checkout.load("bench")


def _mod(name: str) -> ModuleType:
    return importlib.import_module(f"bench.{name}")


def test_bench_dir_is_found_from_the_package() -> None:
    found = checkout.find("bench") / "bench"
    assert (found / "runner.py").is_file()
    assert (found / "scenario_proxy.py").is_file()


def test_env_var_must_point_at_a_bench_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(checkout.ENV_VARS["bench"], str(tmp_path))
    with pytest.raises(checkout.CheckoutNotFoundError, match=checkout.ENV_VARS["bench"]):
        checkout.find("bench")
    assert checkout.run("bench", ["proxy", "--quick"]) == 2


def test_without_a_checkout_the_command_says_where_to_run_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An installed wheel has no bench/ beside it: a clear error and exit 2, never an import error."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checkout, "__file__", str(tmp_path / "site-packages" / "meshbatch" / "checkout.py"))
    with pytest.raises(checkout.CheckoutNotFoundError, match="not part of the installed package"):
        checkout.find("bench")
    assert checkout.run("chaos", ["--help"]) == 2
    assert "repository checkout" in capsys.readouterr().err


def test_a_harness_never_imports_the_tests() -> None:
    """bench/, chaos/ and testbed/ stand on their own: nothing in them reaches into tests/."""
    root = checkout.find("bench")
    for folder in ("bench", "chaos", "testbed"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text()
            for needle in ("from tests", "import tests", "from support", "upstream_fleet", "from test_",
                           '"tests"', "'tests'"):
                assert needle not in text, f"{path.relative_to(root)} refers to the tests ({needle})"


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


def test_the_fairness_figure_is_the_quiet_tenants_p99_gain(bench: ModuleType) -> None:
    fairness = _mod("scenario_fairness")
    assert fairness._percentile([float(v) for v in range(1, 101)], 0.99) == 100.0
    assert fairness._percentile([], 0.5) is None

    def cell(p99: float) -> dict[str, object]:
        return {field: {"median": value, "min": value, "max": value, "n": 1}
                for field, value in (("p50_ms", p99 / 2), ("p99_ms", p99), ("requests_per_s", 10.0))}

    data = {"tenants": {"hot": 20, "quiet-1": 2}, "seconds": 3.0, "runs": [{"round": 1}],
            "summary": {"fair": {"quiet": cell(50.0), "hot": cell(300.0)},
                        "unfair": {"quiet": cell(200.0), "hot": cell(250.0)}}}
    text = fairness.render(data)
    assert "4.0x lower than without (50.0 ms against 200.0 ms)" in text
    assert "`hot` runs 20 closed-loop callers" in text


def test_throughput_at_equal_p99_is_read_off_the_sweep(bench: ModuleType) -> None:
    at = _mod("batching_report").throughput_at_p99
    sweep = [(5.0, 1000.0), (20.0, 4000.0), (80.0, 6000.0)]
    assert at(sweep, 50.0) == (5000.0, "interpolated")
    assert at(sweep, 20.0) == (4000.0, "measured")
    assert at(sweep, 100.0) == (6000.0, "at least")
    assert at(sweep, 2.0) == (None, "above")
    # A sweep whose throughput falls past its peak: the best point under the target wins.
    assert at([(5.0, 1000.0), (10.0, 3000.0), (40.0, 2000.0)], 30.0) == (3000.0, "measured")
    assert at([], 10.0) == (None, "above")


def test_docs_are_built_from_the_results(bench: ModuleType, tmp_path: Path) -> None:
    docs_report = _mod("docs_report")
    results = tmp_path / "results"
    results.mkdir()
    (results / "proxy.md").write_text("## proxy (full)\n\nmeshbatch / nginx: 0.7\n")
    (results / "proxy_closed_loop.png").write_bytes(b"png")
    template = tmp_path / "template.md"
    template.write_text("# Benchmarks\n\n{{results:proxy}}\n\n{{results:ingest}}\n")
    page = docs_report.build({}, results, tmp_path / "docs" / "benchmarks.md", template)
    assert "### proxy (full)" in page
    assert "meshbatch / nginx: 0.7" in page
    assert "proxy_closed_loop" in page
    assert "No full run of `ingest`" in page
    assert page.startswith("<!-- Generated by `meshbatch bench report`")


def test_the_shared_work_is_the_same_everywhere(bench: ModuleType) -> None:
    import asyncio

    work_mod = _mod("batch_work")
    item = {"id": 1, "x": work_mod.sample_vector()}

    async def serve() -> tuple[list[object], list[object]]:
        work = work_mod.Work("cpu", dim_out=256)
        one = await work.run([item])
        many = await work.run([item] * 5)
        stats = work.stats()
        assert (stats["calls"], stats["items"], stats["sizes"]) == (2, 6, {"1": 1, "5": 1})
        return one, many

    one, many = asyncio.run(serve())
    assert many == one * 5
    assert set(one[0]) == {"id", "argmax", "max"}  # type: ignore[arg-type]


def test_memory_scenario_parts(bench: ModuleType) -> None:
    """`bench memory`: the RSS read from /proc, the config with its admin port, the report's ratio and goals."""
    import os

    memory = _mod("scenario_memory")
    assert memory.rss_kib([os.getpid()]) > 1024 and memory.rss_kib([2**22 + 7]) == 0  # (no such process: 0)
    conf = memory.meshbatch_conf(8080, 9901, 9000)
    assert "admin: {listen: 127.0.0.1:9901}" in conf and "127.0.0.1:8080" in conf and "127.0.0.1:9000" in conf
    row = {"idle_mb": 30.0, "loaded_peak_mb": 45.0, "loaded_end_mb": 44.0, "processes": 1, "scrapes": 20,
           "achieved_rps": 999.0, "errors": 0, "p99_ms": 2.0}
    data = {"rate": 1000.0, "duration_s": 20.0, "goals_mb": memory.GOALS_MB,
            "results": {"nginx": {**row, "idle_mb": 15.0, "loaded_peak_mb": 15.0, "processes": 2, "scrapes": 0},
                        "meshbatch": row}}
    text = memory.render(data)
    assert "| idle RSS (MB) | 30.0 | 15.0 | 2.0x | <= 40 |" in text
    assert "| RSS under load, peak (MB) | 45.0 | 15.0 | 3.0x | <= 60 |" in text
