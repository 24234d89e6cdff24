"""Closed-loop HTTP/2 load with h2load (nghttp2): h2c with prior knowledge, `connections` connections of `streams`
concurrent streams each. Its per-request log (`--log-file`: start, status, microseconds to the end of the answer)
gives the latency percentiles; its summary lines the counts."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import LOOPBACK, BenchError, CorePlan

REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                      r"(\d+) errored, (\d+) timeout")
STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def percentile(ordered: list[int], share: float) -> float:
    """The nearest-rank percentile of sorted values (microseconds), in milliseconds."""
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, int(share * len(ordered) + 0.5) - 1))
    return ordered[index] / 1000


def parse(stdout: str, log: str, seconds: float) -> dict[str, Any]:
    """The figures of one h2load run: its summary (`stdout`) and its per-request log over `seconds`."""
    counts = REQUESTS.search(stdout)
    statuses = STATUS.search(stdout)
    if counts is None or statuses is None:
        raise BenchError(f"h2load printed no summary:\n{stdout[-2000:]}")
    ok = int(statuses.group(1))
    failed = int(counts.group(5)) + int(counts.group(6)) + int(counts.group(7))
    errors = failed + sum(int(statuses.group(i)) for i in (2, 3, 4))
    latencies = sorted(int(fields[2]) for fields in (line.split("\t") for line in log.splitlines())
                       if len(fields) >= 3 and fields[1] == "200")
    mean = sum(latencies) / len(latencies) / 1000 if latencies else 0.0
    return {
        "requests": ok + errors,
        "errors": errors,
        "seconds": seconds,
        "rps": ok / seconds if seconds > 0 else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "p999_ms": percentile(latencies, 0.999),
        "max_ms": latencies[-1] / 1000 if latencies else 0.0,
        "mean_ms": mean,
    }


def run_h2load(h2load: str, port: int, seconds: float, connections: int, streams: int, cores: CorePlan,
               log: Path, warmup: float = 0.0, path: str = "/", data: Path | None = None,
               headers: Sequence[str] = ()) -> dict[str, Any]:
    """One closed-loop run of `seconds` (after `warmup` seconds that are not counted) against `port`: GETs of
    `path`, or POSTs of the file `data` (each request the whole file), with `headers` (`name: value`)."""
    log.unlink(missing_ok=True)
    argv = [*cores.prefix("load"), h2load, "-t", "1", "-c", str(connections), "-m", str(streams),
            "-D", f"{round(seconds * 1000)}ms", "--log-file", str(log)]
    if warmup > 0:
        argv += ["--warm-up-time", f"{round(warmup * 1000)}ms"]
    if data is not None:
        argv += ["-d", str(data)]
    for header in headers:
        argv += ["-H", header]
    argv.append(f"http://{LOOPBACK}:{port}{path}")
    limit = seconds + warmup + 60
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=limit, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"h2load did not finish within {limit:.0f}s") from exc
    if done.returncode != 0:
        raise BenchError(f"h2load exited {done.returncode}: {(done.stdout + done.stderr).strip()[-1000:]}")
    return parse(done.stdout, log.read_text() if log.exists() else "", seconds)
