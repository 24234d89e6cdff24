"""The pure parts of the chaos suite: slopes and their errors, the growth test, percentiles, the report, and
finding chaos/ from the package."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from meshbatch import checkout


@pytest.fixture(scope="module")
def chaos() -> ModuleType:
    return checkout.load("chaos")


def _mod(name: str) -> ModuleType:
    return importlib.import_module(f"chaos.{name}")


def test_chaos_dir_is_found(chaos: ModuleType) -> None:
    assert (checkout.find("chaos") / "chaos" / "runner.py").is_file()


def test_slope_and_its_error(chaos: ModuleType) -> None:
    common = _mod("common")
    b, se = common.slope([(x, 2.0 * x + 1) for x in range(10)])
    assert b == pytest.approx(2.0) and se == pytest.approx(0.0, abs=1e-9)
    b, se = common.slope([(x, float(x % 2)) for x in range(40)])  # jitter, no trend
    assert abs(b) < 0.05 and se > 0
    assert common.slope([(0, 1.0), (1, 2.0)]) == (0.0, 0.0)
    assert common.percentile([], 0.99) == 0.0
    assert common.percentile([float(i) for i in range(1, 101)], 0.99) == 99.0


def test_growth_test_tells_a_leak_from_jitter(chaos: ModuleType) -> None:
    sampler = _mod("sampler").Sampler(proxy=None)  # type: ignore[arg-type]
    leak = 1.0 / 60  # 1 MiB a minute: 60 MiB/h
    sampler.samples = [{"t": float(t), "rss_mib": 80 + 2 * leak * t, "fds": 20 + (t % 3), "tasks": 4 + (t * 7 % 5),
                        "lag_ms": 1.0, "cpu_s": 0.0} for t in range(120)]
    growth = sampler.growth()
    assert not growth["rss_mib"]["ok"]  # 120 MiB/h > 64
    assert growth["fds"]["ok"] and growth["tasks"]["ok"] and growth["lag_ms"]["ok"]


def test_a_short_soak_lets_counts_drift_a_few_units_a_full_one_does_not(chaos: ModuleType) -> None:
    sampler_mod = _mod("sampler")
    sampler = sampler_mod.Sampler(proxy=None)  # type: ignore[arg-type]
    # one minute: the fd count creeps from 89 to 92 over the second half (connections opened by the traffic)
    sampler.samples = [{"t": float(t), "rss_mib": 80.0, "fds": 89 + (3 * max(0, t - 30)) // 30, "tasks": 4,
                        "lag_ms": 1.0, "cpu_s": 0.0} for t in range(61)]
    assert not sampler.growth(sampler_mod.limits_for(600.0))["fds"]["ok"]  # a 10-minute soak's limit: 30 fds/h
    short = sampler_mod.limits_for(60.0)
    assert short["fds"][0] == 960.0 and short["rss_mib"][0] == 240.0  # 2 MiB over its 30-second second half
    assert sampler.growth(short)["fds"]["ok"]
    # a leak of one fd every two seconds still fails the short soak
    sampler.samples = [{**s, "fds": 89 + int(s["t"]) // 2} for s in sampler.samples]
    assert not sampler.growth(short)["fds"]["ok"]
    assert sampler_mod.limits_for(600.0)["fds"][0] == 30.0
    # the 20-second smoke soak: warm-up moves RSS by a little and passes; a gross leak (~300 KiB/s) fails
    smoke = sampler_mod.limits_for(20.0)
    sampler.samples = [{"t": float(t), "rss_mib": 64.9 + 0.07 * t, "fds": 89, "tasks": 4, "lag_ms": 1.0,
                        "cpu_s": 0.0} for t in range(21)]
    assert sampler.growth(smoke)["rss_mib"]["ok"]
    sampler.samples = [{**s, "rss_mib": 64.9 + 0.3 * s["t"]} for s in sampler.samples]
    assert not sampler.growth(smoke)["rss_mib"]["ok"]


def test_report_renders_a_result(chaos: ModuleType) -> None:
    common, report = _mod("common"), _mod("report")
    result = common.ScenarioResult("x", "a scenario")
    result.figures["streams"] = {"sync": {"route": "sync", "sent": 3, "answered": 3, "ok": 2, "failed": {"503 x": 1},
                                          "lost": 0, "duplicate_deliveries": 0, "answered_twice": 0,
                                          "not_admitted": 0, "aborted": 0, "p50_ms": 1, "p99_ms": 2, "max_ms": 3}}
    result.check("a bar", False, "measured 1")
    text = report.scenario_markdown(result.as_json())
    assert "| sync | 3 | 3 | 2 | 1 (1 503 x) |" in text and "**FAIL**" in text


def test_loop_monitor_sees_a_blocked_loop() -> None:
    """The proxy's loop-lag sampler (what the soak reads from /metrics) measures a callback that blocks the loop."""
    import asyncio
    import time

    from meshbatch.telemetry.loop import LoopMonitor
    from meshbatch.telemetry.metrics import Registry

    async def main() -> tuple[float, str]:
        registry = Registry()
        monitor = LoopMonitor(asyncio.get_running_loop(), registry, interval=0.01)
        monitor.start()
        await asyncio.sleep(0)
        time.sleep(0.06)  # the loop is blocked: the sampler's next tick is late by about this much
        deadline = time.monotonic() + 5
        while monitor.lag.count < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        monitor.stop()
        return monitor.recent_max, registry.render().decode()

    lag, text = asyncio.run(main())
    assert lag >= 0.04
    assert "meshbatch_event_loop_lag_seconds_bucket" in text and "meshbatch_asyncio_tasks 1.0" in text
    assert "process_open_fds" in text and "process_resident_memory_bytes" in text


def test_fault_cycles_spread_numbered_begin_end_pairs(chaos: ModuleType) -> None:
    harness = _mod("harness")
    begin, end = (lambda: None), (lambda: None)
    steps = harness.fault_cycles(2, 0.25, 0.5, ("down", begin), ("up", end))
    assert [(s.at, s.label) for s in steps] == [(0.125, "down (1/2)"), (0.375, "up (1/2)"),
                                               (0.625, "down (2/2)"), (0.875, "up (2/2)")]
    assert [s.action for s in steps] == [begin, end, begin, end]
