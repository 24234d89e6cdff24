"""The demo says in words what its plot can hide: a batched p99 worse than direct at low concurrency."""

from meshbatch.demo.cli import verdict
from meshbatch.demo.producer import RunResult


def run(name: str, ms: list[float], ok: int, seconds: float, calls: int) -> RunResult:
    return RunResult(name=name, ok=ok, seconds=seconds, upstream_calls=calls, latencies=[m / 1000 for m in ms])


def test_a_worse_batched_tail_is_said_with_its_figures() -> None:
    direct = run("direct", [2.0] * 98 + [4.0, 4.0], ok=1000, seconds=1.0, calls=1000)
    batched = run("batched", [3.0] * 98 + [9.0, 9.0], ok=3000, seconds=1.0, calls=100)
    text = verdict(direct, batched)
    assert "3.0x the events/s" in text
    assert "100 upstream calls instead of 1,000" in text
    assert "p99 is 5.0 ms worse (9.0 vs 4.0 ms" in text
    assert "max_wait_ms" in text


def test_a_better_batched_tail_is_said_too() -> None:
    direct = run("direct", [20.0] * 100, ok=500, seconds=1.0, calls=500)
    batched = run("batched", [5.0] * 100, ok=2000, seconds=1.0, calls=40)
    text = verdict(direct, batched)
    assert "better tail" in text and "p99 5.0 vs 20.0 ms" in text
    assert "worse" not in text
