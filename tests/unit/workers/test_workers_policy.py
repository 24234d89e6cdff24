"""The restart policy on a fake clock, and what `--workers` accepts."""

from __future__ import annotations

import pytest

from meshbatch.clock import FakeClock
from meshbatch.runtime.workers.count import workers_count
from meshbatch.runtime.workers.policy import RestartPolicy


def test_quick_deaths_back_off_to_the_cap_and_a_stable_run_is_forgiven() -> None:
    clock = FakeClock()
    policy = RestartPolicy(base=0.1, cap=1.0, stable=30.0)
    delays = []
    for _ in range(6):
        started = clock.now()
        clock.advance(2)  # each incarnation dies 2 s after its start
        delays.append(policy.delay(0, started, clock.now()))
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.deaths(0) == 6
    started = clock.now()
    clock.advance(31)  # ran longer than `stable`: its earlier deaths are forgiven
    assert policy.delay(0, started, clock.now()) == 0.1
    assert policy.deaths(0) == 1


def test_workers_back_off_apart() -> None:
    policy = RestartPolicy(base=0.5, cap=8.0, stable=10.0)
    assert policy.delay(0, 0.0, 1.0) == 0.5
    assert policy.delay(0, 1.0, 2.0) == 1.0
    assert policy.delay(1, 0.0, 1.0) == 0.5  # another worker's deaths do not count


@pytest.mark.parametrize("bad", [(0.0, 1.0, 1.0), (2.0, 1.0, 1.0), (0.1, 1.0, 0.0)])
def test_a_policy_needs_sane_bounds(bad: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(*bad)


@pytest.mark.parametrize(("value", "expected"), [("auto", 2), ("AUTO", 2), ("1", 1), ("8", 8), (3, 3), (" 2 ", 2)])
def test_workers_counts(value: str | int, expected: int) -> None:
    assert workers_count(value, available=2) == expected


@pytest.mark.parametrize(("value", "says"), [
    ("0", "at least 1"), ("-3", "at least 1"), (0, "at least 1"), ("9", "at most 8"), ("99999999999999", "at most 8"),
    ("two", "a number"), ("", "a number"), ("1.5", "a number"), ("0x10", "a number"), ("auto2", "a number"),
    ("\x00", "a number"), ("\u0661", "a number"), ("9" * 5000, "at most 8"), ("-" + "9" * 5000, "at least 1"),
])
def test_hostile_workers_counts_are_refused_with_a_reason(value: str | int, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        workers_count(value, available=2)
