"""`meshbatch bench batching --quick` end to end: the single-worker upstream, wrk, post_loadgen and meshbatch.

Asserts only that a complete, valid result is produced (JSON, markdown, the PNG where matplotlib is installed),
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
    done = subprocess.run(
        [sys.executable, "-m", "meshbatch", "bench", "batching", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=80,
        stdin=subprocess.DEVNULL,
    )
    # Exit 1 means a run reported errors; the files must be valid either way, the check of content follows.
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]

    data = json.loads((out / "batching.json").read_text())
    assert data["scenario"] == "batching"
    assert data["mode"] == "quick"
    assert data["targets"] == ["direct", "meshbatch"]
    assert data["settings"]["concurrency"] == [64]
    assert data["settings"]["bulk_limit_items_per_s"] == pytest.approx(50_000)
    entry = data["closed_loop"]["by_concurrency"]["64"]
    for target in ("direct", "meshbatch"):
        assert entry[target]["items_per_s"]["n"] == 1
        assert entry[target]["items_per_s"]["median"] > 0
        assert entry[target]["p99_ms"]["median"] >= entry[target]["p50_ms"]["median"]
        assert entry[target]["mean_batch_size"]["median"] >= 1
    assert entry["meshbatch_x_direct"]["n"] == 1
    assert {"throughput_ratio", "added_p99_ms", "added_p99_bar_ms"} <= data["bars"].keys()
    assert data["open_loop"]["summary"]["meshbatch"]["added_p99_ms"]["n"] == 1
    assert {"cpu_model", "python", "versions"} <= data["machine"].keys()
    markdown = (out / "batching.md").read_text()
    assert markdown.startswith("## batching")
    assert "| 64 | meshbatch |" in markdown

    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "batching.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
