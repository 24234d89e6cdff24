"""`meshbatch bench proxy --quick` and `mtls --quick` end to end: real nginx, haproxy, wrk and meshbatch on
loopback (one proxy each; a sidecar pair with mTLS between them each).

Asserts only that a complete, valid result is produced (JSON, markdown, and the PNG plots where matplotlib is
installed), never a speed: the machine is shared and noisy.
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

TOOLS = ("nginx", "haproxy", "wrk")
TARGETS = ["no proxy", "nginx", "haproxy", "meshbatch"]


def _have(tool: str) -> bool:
    return shutil.which(tool) is not None or any(
        os.access(Path(folder) / tool, os.X_OK) for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin")
    )


def _require_tools() -> None:
    missing = [tool for tool in TOOLS if not _have(tool)]
    if not missing:
        return
    reason = f"benchmark peers missing: {', '.join(missing)} (apt-get install nginx-light haproxy wrk)"
    if os.environ.get("MESHBATCH_REQUIRE_SERVICES"):
        pytest.fail(reason + "; MESHBATCH_REQUIRE_SERVICES is set")
    pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", ["proxy", "mtls"])
def test_proxy_quick_writes_valid_results(tmp_path: Path, scenario: str) -> None:
    _require_tools()
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "meshbatch", "bench", scenario, "--quick", "--duration", "0.5", "--open-duration", "0.5",
         "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=200,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    data = json.loads((out / f"{scenario}.json").read_text())
    assert data["scenario"] == scenario
    assert data["mode"] == "quick"
    assert data["failures"] == []
    assert data["targets"] == TARGETS
    assert {"cpu_model", "cores_usable", "python", "date", "versions"} <= data["machine"].keys()
    assert {"nginx", "haproxy", "wrk"} <= data["machine"]["versions"].keys()

    closed = data["closed_loop"]["summary"]
    for target in TARGETS:
        assert closed[target]["rps"]["n"] == 1
        assert closed[target]["rps"]["median"] > 0
        assert closed[target]["p99_ms"]["median"] >= closed[target]["p50_ms"]["median"]
    assert "meshbatch/nginx" in data["closed_loop"]["ratios"]

    rates = data["open_loop"]["by_rate"]
    assert sorted(rates, key=float) == ["20", "200", "2000"]
    for per_target in rates.values():
        assert per_target["meshbatch"]["p50_ms"]["n"] == 1
        assert "added_ms" in per_target["meshbatch"]

    for proxy in ("nginx", "haproxy", "meshbatch"):
        assert data["resources"][proxy]["role"] == "proxy"
        assert data["resources"][proxy]["peak_rss_kib"] > 0
    markdown = (out / f"{scenario}.md").read_text()
    assert "| meshbatch |" in markdown and markdown.startswith(f"## {scenario} (quick")
    if scenario == "mtls":  # a pair: both processes measured, and the report says what a target is
        assert data["resources"]["meshbatch"]["processes"] >= 2
        assert "sidecar pair" in markdown

    if importlib.util.find_spec("matplotlib") is not None:
        for name in (f"{scenario}_closed_loop.png", f"{scenario}_open_loop_cdf.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
