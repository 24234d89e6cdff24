"""The sweep the proxy runs for a canary with no candidate (`python -m meshbatch.tools.tune.worker`): its target is
the canary's own p99 rule on the replay, its answer tune's recommendation; bad input exits 2 with the reason."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from meshbatch.tools.tune.worker import run
from testbed.tune_trace import recorded


def test_the_recommendation_saves_upstream_time_within_the_canarys_p99_rule() -> None:
    # a 4 ms fixed cost per call and batches of at most 8: bigger batches cost the upstream much less per item
    answer = run({"trace": recorded(rate=1500, seconds=1.0, max_items=8), "max_p99_increase": 0.1,
                  "p99_slack_ms": 1})
    current, best = answer["current"], answer["best"]
    assert current["max_items"] == 8 and answer["met"] and not answer["is_current"]
    assert answer["target_p99_ms"] == pytest.approx(current["p99_ms"] * 1.1 + 1)
    assert best["p99_ms"] <= answer["target_p99_ms"] and best["busy"] < current["busy"]
    assert answer["recommended"]["max_items"] == best["max_items"] > 8
    assert answer["recommended"]["max_wait_ms"] >= answer["recommended"]["min_wait_ms"]
    assert answer["arrivals"] > 1000 and answer["candidates"] >= 36


def test_a_grid_of_the_route_own_setting_alone_recommends_it() -> None:
    answer = run({"trace": recorded(rate=500, seconds=0.5), "items": [64], "waits_ms": [0], "in_flight": [1]})
    assert answer["is_current"] and answer["candidates"] == 1


def worker(stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "meshbatch.tools.tune.worker", *args], input=stdin,
                          capture_output=True, timeout=60)


@pytest.mark.parametrize("stdin", [b"", b"[1]", b"{", b'{"trace": {}}', b'{"trace": {"batches": []}}',
                                   b'{"trace": {"batches": [{"arrivals": ["x"], "sent": 1, "done": 2}]}}'])
def test_input_it_cannot_use_exits_2_with_the_reason(stdin: bytes) -> None:
    result = worker(stdin)
    assert result.returncode == 2 and result.stderr.startswith(b"meshbatch sweep: ") and not result.stdout


def test_through_its_process() -> None:
    request = {"trace": recorded(rate=1000, seconds=0.5, max_items=8), "items": [8, 64], "waits_ms": [0, 2]}
    result = worker(orjson.dumps(request), "512")
    assert result.returncode == 0, result.stderr
    answer = orjson.loads(result.stdout)
    assert answer["route"] == "orders" and answer["candidates"] == 4
