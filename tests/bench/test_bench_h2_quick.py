"""`meshbatch bench h2 --quick` end to end: real nginx (an HTTP/2 listener), h2load and meshbatch on loopback.

Asserts only that a complete, valid result is produced (JSON and markdown), never a speed: the machine is shared.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.h2load import parse, percentile
from bench.peers_h2 import meshbatch_h2_conf, nginx_h2_listen

# timed bars or heavy load: run alone, after the parallel part of `make test`
pytestmark = pytest.mark.serial

TOOLS = ("nginx", "h2load")


def _have(tool: str) -> bool:
    return shutil.which(tool) is not None or any(
        os.access(Path(folder) / tool, os.X_OK) for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin")
    )


def test_h2load_figures_come_from_its_summary_and_request_log() -> None:
    stdout = ("finished in 1.00s, 3.00 req/s, 1KB/s\n"
              "requests: 4 total, 4 started, 4 done, 3 succeeded, 1 failed, 0 errored, 0 timeout\n"
              "status codes: 3 2xx, 0 3xx, 0 4xx, 0 5xx\n")
    log = "1\t200\t1000\n2\t200\t3000\n3\t200\t2000\n4\t-1\t9000\n"
    figures = parse(stdout, log, 1.0)
    assert figures["requests"] == 4 and figures["errors"] == 1 and figures["rps"] == 3.0
    assert figures["p50_ms"] == 2.0 and figures["p99_ms"] == 3.0 and figures["max_ms"] == 3.0
    assert percentile([], 0.5) == 0.0


def test_nginx_h2c_listener_follows_its_version() -> None:
    assert "http2 on;" in nginx_h2_listen(8080, (1, 25, 1))
    assert " http2 " in nginx_h2_listen(8080, (1, 22, 1)) and "http2 on" not in nginx_h2_listen(8080, (1, 22, 1))
    assert "codec: http2\n    listen: 127.0.0.1:1" in meshbatch_h2_conf(1, 2, "http2")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_h2_quick_writes_valid_results(tmp_path: Path) -> None:
    missing = [tool for tool in TOOLS if not _have(tool)]
    if missing:
        reason = f"benchmark peers missing: {', '.join(missing)} (apt-get install nginx-light nghttp2-client)"
        if os.environ.get("MESHBATCH_REQUIRE_SERVICES"):
            pytest.fail(reason + "; MESHBATCH_REQUIRE_SERVICES is set")
        pytest.skip(reason)
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "meshbatch", "bench", "h2", "--quick", "--duration", "0.5", "--out", str(out)],
        capture_output=True, text=True, timeout=100, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((out / "h2.json").read_text())
    assert data["scenario"] == "h2" and data["mode"] == "quick" and data["failures"] == []
    assert data["targets"] == ["nginx", "meshbatch"]
    assert "h2load" in data["machine"]["versions"]
    closed = data["closed_loop"]["summary"]
    for target in data["targets"]:
        assert closed[target]["rps"]["n"] == 1 and closed[target]["rps"]["median"] > 0
        assert closed[target]["p99_ms"]["median"] >= closed[target]["p50_ms"]["median"]
        assert data["resources"][target]["peak_rss_kib"] > 0
    assert data["closed_loop"]["ratios"]["meshbatch/nginx"]["rps"]["of_medians"] > 0
    markdown = (out / "h2.md").read_text()
    assert markdown.startswith("## h2 (quick") and "| meshbatch |" in markdown and "meshbatch / nginx" in markdown
