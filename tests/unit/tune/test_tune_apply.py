"""`meshbatch tune --apply`: the recommendation as a canary in the config file; refused, with the file untouched,
whenever the route cannot take it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import yaml

from meshbatch.config import load
from meshbatch.tools.tune.apply import ApplyError, apply, candidate, reload

CONFIG = """\
# the proxy's config
listeners:
  - name: in
    listen: 127.0.0.1:0
    routes:
      - name: orders
        match: {path_prefix: /orders}
        cluster: c
        batch: {max_items: 16, min_wait_ms: 1, max_wait_ms: 5%s}
      - name: plain
        cluster: c
clusters:
  - name: c
    endpoints: [127.0.0.1:9]
"""
BEST = {"max_items": 64, "min_wait_ms": 2.0, "max_wait_ms": 5.0, "max_in_flight": 4}


def write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "proxy.yaml"
    path.write_text(CONFIG % extra)
    return path


def test_the_recommendation_becomes_a_canary_of_what_it_changes(tmp_path: Path) -> None:
    path = write(tmp_path)
    original = path.read_text()
    assert apply(path, "orders", BEST, 0.2) == {"max_items": 64, "min_wait_ms": 2.0}
    batch = load(path, log_notes=False).listeners[0].routes[0].batch
    assert batch.adaptive.canary == 0.2 and batch.adaptive.candidate.max_items == 64
    assert batch.max_items == 16  # the route's own setting stays until the canary promotes
    assert (tmp_path / "proxy.yaml.bak").read_text() == original
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_second_apply_replaces_the_canary_and_keeps_its_rules(tmp_path: Path) -> None:
    path = write(tmp_path, ", adaptive: {canary: 0.1, candidate: {max_items: 32}, window_ms: 2000}")
    apply(path, "orders", BEST, 0.1)
    adaptive = yaml.safe_load(path.read_text())["listeners"][0]["routes"][0]["batch"]["adaptive"]
    assert adaptive == {"window_ms": 2000, "canary": 0.1, "candidate": {"max_items": 64, "min_wait_ms": 2.0}}


def test_a_canary_that_finds_its_own_candidate_gets_this_one(tmp_path: Path) -> None:
    path = write(tmp_path, ", adaptive: {canary: 0.1, sweep: {min_arrivals: 500}, window_ms: 2000}")
    apply(path, "orders", BEST, 0.1)
    adaptive = load(path, log_notes=False).listeners[0].routes[0].batch.adaptive
    assert adaptive.sweep is None and adaptive.candidate.max_items == 64 and adaptive.window_ms == 2000


def test_auto_slots_are_left_to_themselves() -> None:
    assert candidate({"max_in_flight": "auto", "max_items": 16}, BEST) == {"max_items": 64, "min_wait_ms": 2.0}
    assert candidate({"max_in_flight": {"auto": {"max": 8}}}, {"max_in_flight": 2}) == {}


@pytest.mark.parametrize(("route", "extra", "best", "share", "says"), [
    ("nope", "", BEST, 0.1, "no route named 'nope'"),
    ("plain", "", BEST, 0.1, "no batch: block"),
    ("orders", ", adaptive: {target_p99_ms: 20}", BEST, 0.1, "adaptive hold"),
    ("orders", "", {"max_items": 16, "min_wait_ms": 1.0, "max_wait_ms": 5.0}, 0.1, "nothing to try"),
    ("orders", "", BEST, 0.0, "0 < share <= 0.5"),
    ("orders", "", BEST, 0.9, "0 < share <= 0.5"),
    ("orders", "", {**BEST, "min_wait_ms": 9.0}, 0.1, "would not load"),
    ("orders", "", {**BEST, "max_items": 10**9}, 0.1, "would not load"),
])
def test_refusals_leave_the_file_untouched(tmp_path: Path, route: str, extra: str, best: dict[str, float],
                                           share: float, says: str) -> None:
    path = write(tmp_path, extra)
    original = path.read_text()
    with pytest.raises(ApplyError, match=says):
        apply(path, route, best, share)
    assert path.read_text() == original and not (tmp_path / "proxy.yaml.bak").exists()


def test_a_file_that_is_not_a_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("listeners: [\n")
    with pytest.raises(ApplyError, match=r"bad\.yaml"):
        apply(path, "orders", BEST, 0.1)
    path.write_text("- a list\n")
    with pytest.raises(ApplyError, match="not a YAML mapping"):
        apply(path, "orders", BEST, 0.1)


def test_reload_signals_the_process_or_says_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr("os.kill", lambda pid, sig: sent.append((pid, sig)))
    reload(1234)
    assert sent == [(1234, signal.SIGHUP)]

    def gone(pid: int, sig: int) -> None:
        raise ProcessLookupError

    monkeypatch.setattr("os.kill", gone)
    with pytest.raises(ApplyError, match="no process 1234"):
        reload(1234)
