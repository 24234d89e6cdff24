"""`batch.adaptive.canary`: a share and a candidate the route can run, every mistake refused with its path."""

from __future__ import annotations

import pytest

from meshbatch.config import ConfigError, parse

CONFIG = """
listeners:
  - name: in
    listen: 127.0.0.1:0
    routes:
      - name: orders
        match: {path_prefix: /}
        cluster: c
        batch: %s
clusters:
  - name: c
    endpoints: [127.0.0.1:9]
"""
PATH = "listeners[0].routes[0].batch"


def problems(batch: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(CONFIG % batch)
    return [str(problem) for problem in caught.value.problems]


def test_a_canary_with_its_candidate_and_defaults():
    config = parse(CONFIG % "{max_items: 32, adaptive: {canary: 0.1, candidate: {max_items: 128, min_wait_ms: 2}}}")
    adaptive = config.listeners[0].routes[0].batch.adaptive
    assert adaptive.canary == 0.1 and adaptive.target_p99_ms is None
    assert adaptive.candidate.max_items == 128 and adaptive.candidate.max_in_flight is None
    assert (adaptive.window_ms, adaptive.min_batches, adaptive.passes, adaptive.failures) == (10_000, 20, 2, 2)


@pytest.mark.parametrize("share", ["true", "0", "-0.1", "0.6", "1", ".nan", ".inf", "'lots'", "[0.1]"])
def test_bad_shares(share: str):
    (problem,) = problems("{adaptive: {canary: " + share + ", candidate: {max_items: 8}}}")
    assert problem.startswith(f"{PATH}.adaptive.canary: ")


@pytest.mark.parametrize(("candidate", "where", "says"), [
    ("{max_items: 0}", ".adaptive.candidate.max_items", ">= 1"),
    ("{max_items: 1000000}", ".adaptive.candidate.max_items", "<= 100000"),
    ("{min_wait_ms: -1}", ".adaptive.candidate.min_wait_ms", ">= 0"),
    ("{max_in_flight: 0}", ".adaptive.candidate.max_in_flight", ">= 1"),
    ("{max_items: 8, batch_size: 9}", ".adaptive.candidate.batch_size", "unknown key"),
    ("{min_wait_ms: 9}", "", "min_wait_ms (9) must be <= max_wait_ms (5)"),
    ("{max_items: 64}", "", "the route's own setting"),
    ("{}", ".adaptive", "candidate is empty"),
])
def test_candidates_outside_limits_or_no_change(candidate: str, where: str, says: str):
    found = problems("{adaptive: {canary: 0.1, candidate: " + candidate + "}}")
    assert any(p.startswith(PATH + where + ":") and says in p for p in found), found


def test_canary_and_target_are_one_or_the_other():
    (problem,) = problems("{adaptive: {canary: 0.1, target_p99_ms: 5, candidate: {max_items: 8}}}")
    assert "choose one" in problem
    (problem,) = problems("{adaptive: {}}")
    assert "set target_p99_ms" in problem
    (problem,) = problems("{adaptive: {target_p99_ms: 5, candidate: {max_items: 8}}}")
    assert "set canary" in problem


def test_candidate_slots_need_fixed_slots_and_sizes_keep_preferred_ones():
    (problem,) = problems("{max_in_flight: auto, adaptive: {canary: 0.1, candidate: {max_in_flight: 8}}}")
    assert "max_in_flight is auto" in problem
    (problem,) = problems("{preferred_sizes: [8, 16], adaptive: {canary: 0.1, candidate: {max_items: 8}}}")
    assert "below the largest preferred size (16)" in problem


def test_rules_within_bounds():
    base = "{adaptive: {canary: 0.1, candidate: {max_items: 8}, %s}}"
    assert any("window_ms" in p for p in problems(base % "window_ms: 0"))
    assert any("min_batches" in p for p in problems(base % "min_batches: 1"))
    assert any("can never be reached" in p for p in problems(base % "passes: 5, max_windows: 3"))


def test_a_canary_without_candidate_finds_one_with_sweep_defaults():
    config = parse(CONFIG % "{adaptive: {canary: 0.1}}")
    adaptive = config.listeners[0].routes[0].batch.adaptive
    assert adaptive.candidate is None and adaptive.sweep is None  # the defaults of Sweep() apply
    config = parse(CONFIG % "{adaptive: {canary: 0.1, sweep: {min_arrivals: 200, min_batches: 10}}}")
    sweep = config.listeners[0].routes[0].batch.adaptive.sweep
    assert (sweep.min_arrivals, sweep.min_batches, sweep.timeout_ms, sweep.memory_mb) == (200, 10, 30_000, 1024)


@pytest.mark.parametrize(("adaptive", "says"), [
    ("{canary: 0.1, candidate: {max_items: 8}, sweep: {}}", "with candidate given, leave sweep out"),
    ("{target_p99_ms: 5, sweep: {}}", "set canary"),
    ("{canary: 0.1, sweep: {min_arrivals: 1}}", ">= 2"),
    ("{canary: 0.1, sweep: {timeout_ms: 0}}", ">= 100"),
    ("{canary: 0.1, sweep: {memory_mb: 1}}", ">= 64"),
    ("{canary: 0.1, sweep: {every_ms: 5}}", "unknown key"),
    ("{canary: 0.1, sweep: 3}", ""),
])
def test_bad_sweeps(adaptive: str, says: str):
    found = problems("{adaptive: " + adaptive + "}")
    assert any(p.startswith(PATH + ".adaptive") and says in p for p in found), found
