"""Closed-loop load with wrk: keep-alive connections, a Lua `done()` hook that reports the figures as JSON."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .common import LOOPBACK, BenchError, CorePlan

# wrk calls done() once at the end; the percentiles come from its full latency histogram (microseconds).
DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.3f,"stdev":%.3f,"max":%d,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""
MARKER = "WRK_JSON "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_wrk_output(stdout: str) -> WrkResult:
    """The figures of one wrk run, from the line DONE_LUA prints."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise BenchError(f"wrk printed no result line:\n{stdout[-2000:]}")
    data = json.loads(line[len(MARKER) :])
    seconds = data["duration_us"] / 1e6
    lat = data["latency_us"]
    requests = int(data["requests"])
    return WrkResult(
        requests=requests,
        seconds=seconds,
        rps=requests / seconds if seconds > 0 else 0.0,
        errors=sum(int(v) for v in data["errors"].values()),
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        p999_ms=lat["p999"] / 1000,
        max_ms=lat["max"] / 1000,
        mean_ms=lat["mean"] / 1000,
    )


def write_script(workdir: Path) -> Path:
    path = workdir / "wrk_done.lua"
    path.write_text(DONE_LUA)
    return path


def run_wrk(
    wrk: str,
    port: int,
    *,
    connections: int,
    seconds: float,
    cores: CorePlan,
    script: Path,
    threads: int = 1,
    path: str = "/",
) -> WrkResult:
    """One closed-loop run against 127.0.0.1:`port`, wrk pinned to the load core."""
    whole = max(1, round(seconds))  # wrk takes whole seconds only
    argv = [
        *cores.prefix("load"),
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{whole}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"http://{LOOPBACK}:{port}{path}",
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=whole + 30, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {whole + 30}s") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk_output(done.stdout)
