"""`meshbatch bench batching --quick` end to end: both work models, the HTTP upstream, wrk, post_loadgen and
meshbatch; Ray Serve and BentoML are pointed at an empty peers directory, so they must be reported as not
installed (the suite never installs them: `make bench-deps` does).

Asserts only that a complete, valid result is produced (JSON, markdown, the PNGs where matplotlib is installed),
never a speed: the machine is shared and noisy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# timed bars or heavy load: run alone, after the parallel part of `make test`
pytestmark = pytest.mark.serial

PNG = b"\x89PNG\r\n\x1a\n"


def _require_wrk() -> None:
    if shutil.which("wrk") is not None:
        return
    reason = "wrk is missing (apt-get install wrk): the batching benchmark's closed-loop load needs it"
    if os.environ.get("MESHBATCH_REQUIRE_SERVICES"):
        pytest.fail(reason + "; MESHBATCH_REQUIRE_SERVICES is set")
    pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_batching_quick_writes_valid_results(tmp_path: Path) -> None:
    _require_wrk()
    out = tmp_path / "results"
    env = {**os.environ, "MESHBATCH_BENCH_PEERS_DIR": str(tmp_path / "no-peers")}
    done = subprocess.run(
        [sys.executable, "-m", "meshbatch", "bench", "batching", "--quick", "--duration", "1", "--open-duration", "0.5",
         "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=85,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    # Exit 1 means a run reported errors; the files must be valid either way, the check of content follows.
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]

    data = json.loads((out / "batching.json").read_text())
    assert data["scenario"] == "batching"
    assert data["mode"] == "quick"
    assert data["targets"] == ["direct", "meshbatch"]
    assert set(data["peers_skipped"]) == {"ray-serve", "bentoml"}
    assert all(why.startswith("not installed") for why in data["peers_skipped"].values())
    assert data["settings"]["models"] == ["fixed", "cpu"]
    assert data["settings"]["concurrency"] == [64]
    assert {"cpu_model", "cores_usable", "python", "versions"} <= data["machine"].keys()
    for model in ("fixed", "cpu"):
        entry = data["models"][model]["by_concurrency"]["64"]
        for target in ("direct", "meshbatch"):
            assert entry[target]["items_per_s"]["n"] == 1
            assert entry[target]["items_per_s"]["median"] > 0
            assert entry[target]["p99_ms"]["median"] >= entry[target]["p50_ms"]["median"]
            assert entry[target]["mean_batch_size"]["median"] >= 1
        assert entry["meshbatch_over"]["direct"]["n"] == 1
        assert data["models"][model]["equal_p99"]["target_ms"] > 0
        assert data["models"][model]["batch_sizes_at_top"]["meshbatch"]
        assert "meshbatch" in data["models"][model]["open_loop"]["common"]
    markdown = (out / "batching.md").read_text()
    assert markdown.startswith("## batching")
    assert "### Ratios" in markdown
    assert markdown.index("### Ratios") < markdown.index("### Closed loop (absolute)")
    assert "ray-serve: not installed" in markdown

    if importlib.util.find_spec("matplotlib") is not None:
        for name in ("batching.png", "batching_latency_cdf.png", "batching_batch_sizes.png"):
            assert (out / name).read_bytes()[:8] == PNG, name
