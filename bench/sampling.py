"""What a fixed-rate benchmark reads while its load runs (bench/scenario_memory.py, bench/scenario_anchor.py):
each group of processes' CPU seconds and VmRSS every 100 ms, and a scrape of `/metrics` on each admin port every
second (telemetry on, as a monitored sidecar has it), in a thread; and the fixed-rate load generator itself."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import BenchError, cpu_seconds, http_get, plan_cores, status_kib


@dataclass(frozen=True)
class Sample:
    """One reading of a group: monotonic seconds, CPU seconds of its processes, their summed VmRSS in KiB."""

    at: float
    cpu_s: float
    rss_kib: int


class ProcessSampler:
    """Readings of each named group of processes every 100 ms, scrapes of `admin_ports` every second."""

    def __init__(self, pids: dict[str, list[int]], admin_ports: Sequence[int] = ()) -> None:
        self.pids = pids
        self.admin_ports = list(admin_ports)
        self.samples: dict[str, list[Sample]] = {group: [] for group in pids}
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        next_scrape = time.monotonic()
        while not self._stop.wait(0.1):
            now = time.monotonic()
            for group, pids in self.pids.items():
                self.samples[group].append(Sample(now, cpu_seconds(pids), status_kib(pids, "VmRSS")))
            if self.admin_ports and now >= next_scrape:
                next_scrape += 1.0
                for port in self.admin_ports:
                    status, _ = http_get(port, "/metrics", timeout=5.0)
                    self.scrapes += status == 200


def fixed_rate_load(script: Path, port: int, rate: float, duration: float, *extra: str) -> dict[str, Any]:
    """Run a load generator script (`--port --rate --duration --warmup 1`, JSON on stdout) on the load core."""
    argv = [*plan_cores().prefix("load"), sys.executable, str(script), "--port", str(port), "--rate", str(rate),
            "--duration", str(duration), "--warmup", "1", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise BenchError(f"load generator failed: {done.stderr[-400:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


__all__ = ["ProcessSampler", "Sample", "fixed_rate_load"]
