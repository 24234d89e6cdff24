"""`meshbatch bench replicas --quick` end to end (the replicas as listeners of one process, to start fast): a
valid result whose hashed run reports batch sizes. Never a speed or a ratio: the machine is shared and noisy.
The pure parts (the tally's figures, the summary's ratios, the markdown) are checked beside it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshbatch import checkout

# heavy load: run alone, after the parallel part of `make test`
pytestmark = pytest.mark.serial


@pytest.mark.timeout(60)
def test_replicas_quick_writes_valid_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "meshbatch", "bench", "replicas", "--quick", "--one-process", "--duration", "0.4",
         "--warmup", "0.1", "--out", str(out)],
        capture_output=True, text=True, timeout=55, stdin=subprocess.DEVNULL,
    )
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((out / "replicas.json").read_text())
    assert data["scenario"] == "replicas" and data["mode"] == "quick"
    assert data["settings"]["lbs"] == ["round_robin", "ring_hash"]
    assert data["settings"]["keys"] == [50] and data["settings"]["replicas"] == 3
    hashed = [r for r in data["runs"] if r["lb"] == "ring_hash"]
    assert len(hashed) == 1
    run = hashed[0]
    assert run["errors"] == 0, run["error_kinds"]
    assert run["batches"] > 0 and run["answered"] >= run["batches"]
    assert run["mean_batch"] >= 1 and run["p50_batch"] >= 1
    assert run["unbatched"] == 0
    assert run["replicas_per_key"] == 1.0  # the hash keeps each key at one replica
    assert len(run["replica_items"]) == 3 and sum(run["replica_items"]) >= run["answered"]
    assert "ring_hash" in data["summary"]["50"]["vs_round_robin"]
    markdown = (out / "replicas.md").read_text()
    assert "## Batches across replicas" in markdown and "ring_hash" in markdown


def _bench(name: str) -> Any:
    checkout.load("bench")
    return importlib.import_module(f"bench.{name}")


def test_tally_figures_are_per_batch_and_per_item() -> None:
    load = _bench("replicas_load")
    tally = load.Tally(latencies=[0.01] * 6, batches={"a-1": 4, "b-1": 1, "b-2": 1})
    tally.per_key.update({"k1": 4, "k2": 2})
    tally.key_replicas.update({"k1": {"a"}, "k2": {"a", "b"}})
    figures = load.summarize_tally(tally, 2.0)
    assert figures["batches"] == 3 and figures["mean_batch"] == 2.0 and figures["p50_batch"] == 1
    assert figures["item_weighted_batch"] == pytest.approx(18 / 6)
    assert figures["items_per_s"] == 3.0 and figures["keys_answered"] == 2
    assert figures["replicas_per_key"] == 1.5 and figures["busiest_keys"] == 2
    empty = load.summarize_tally(load.Tally(), 1.0)
    assert empty["mean_batch"] is None and empty["p99_ms"] is None and empty["answered"] == 0


def test_summary_pairs_rounds_and_render_puts_ratios_first() -> None:
    scenario = _bench("scenario_replicas")
    runs = [{"round": r, "keys": 50, "lb": lb, "mean_batch": size, "p50_batch": 1, "item_weighted_batch": size,
             "items_per_s": 100 * size, "p50_ms": 10.0, "p99_ms": 20.0 / size, "busiest_share": 0.4}
            for r in (1, 2) for lb, size in (("round_robin", 1.0), ("ring_hash", 2.0))]
    summary = scenario._summary(runs, [50], ["round_robin", "ring_hash"])
    assert summary["50"]["vs_round_robin"]["ring_hash"]["mean_batch"]["median"] == 2.0
    assert summary["50"]["vs_round_robin"]["ring_hash"]["p99_ms"]["median"] == 0.5
    data = {"settings": {"replicas": 3, "max_in_flight": 2, "max_items": 64, "upstream_ms": 10, "concurrency": 64,
                         "seconds": 6.0}, "runs": runs, "summary": summary}
    text = scenario.render(data)
    assert text.index("| 50 | ring_hash | 2.00x [2.00-2.00] |") < text.index("busiest replica")


def test_configs_hash_the_batch_key_header_only_for_hashing_balancers() -> None:
    scenario = _bench("scenario_replicas")
    named = scenario.configs("127.0.0.1:9", ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"],
                             ["round_robin", "maglev"], 2, one_process=False)
    assert set(named) == {"replica-0", "replica-1", "replica-2", "sidecar"}
    clusters = {c["name"]: c for c in named["sidecar"]["clusters"]}
    assert "hash_key" not in clusters["round_robin"]
    assert clusters["maglev"]["hash_key"] == "header:x-tenant"
    assert named["replica-1"]["listeners"][0]["routes"][0]["batch"]["key"] == ["header:x-tenant"]
    single = scenario.configs("127.0.0.1:9", ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], ["ring_hash"], 2,
                              one_process=True)
    assert list(single) == ["sidecar"] and len(single["sidecar"]["listeners"]) == 4


def test_balancer_specs_set_the_bound_and_refuse_nonsense() -> None:
    scenario = _bench("scenario_replicas")
    assert scenario.balancer("ring_hash:125") == ("ring_hash", 125)
    assert scenario.balancer("round_robin") == ("round_robin", None)
    named = scenario.configs("127.0.0.1:9", ["127.0.0.1:1"], ["maglev:150"], 2, one_process=True)
    (bounded,) = [c for c in named["sidecar"]["clusters"] if c["name"] == "maglev-150"]
    assert bounded["lb"] == "maglev" and bounded["lb_config"] == {"hash_balance_factor": 150}
    for bad in ("round_robin:125", "ring_hash:99", "ring_hash:x", "nope", "maglev:1e3"):
        with pytest.raises(Exception, match=r"balancer|factor"):
            scenario.balancer(bad)
