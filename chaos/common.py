"""Shared pieces of the chaos suite: where the repository is, waiting on conditions, checks, the scenario context
and result, machine facts."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import machine

CHAOS_DIR = Path(__file__).resolve().parent
REPO = CHAOS_DIR.parent



class ChaosError(RuntimeError):
    """A scenario could not run (a process that would not start, a condition never met)."""


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy (returned); ChaosError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ChaosError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Check:
    """One bar: its name, whether it held, and what was measured against what."""

    name: str
    ok: bool
    detail: str


@dataclass
class ScenarioResult:
    name: str
    title: str
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[str]:
        out = [f"{self.name}: {c.name}: {c.detail}" for c in self.checks if not c.ok]
        if self.error is not None:
            out.append(f"{self.name}: error: {self.error}")
        return out

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "seconds": round(self.seconds, 2), "ok": self.ok,
                "skipped": self.skipped, "error": self.error, "figures": self.figures, "notes": self.notes,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks]}


@dataclass
class Context:
    """What a scenario gets: the mode, a private work directory, its durations, and a way to report progress."""

    short: bool
    work: Path
    soak_seconds: float
    overload_seconds: float
    status: Callable[[str], None] = lambda text: None
    live: Callable[[Any], None] = lambda load: None  # the running load generator, for a live display

    def seconds(self, short: float, full: float) -> float:
        return short if self.short else full

    def dir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Scenario:
    """One scenario: `run(ctx)` fills and returns its result. `order` is its place in a full run."""

    name: str
    title: str
    order: int
    run: Callable[[Context], ScenarioResult]
    services: tuple[str, ...] = ()  # services it needs beyond loopback (e.g. "postgresql")


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def machine_facts() -> dict[str, Any]:
    import meshbatch

    load1, load5, load15 = os.getloadavg()
    return {
        **machine.machine_facts(),
        "meshbatch": getattr(meshbatch, "__version__", "unknown"),
        "compiled_build": "compiled" in os.environ.get("PYTHONPATH", ""),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": _git("status", "--porcelain") not in ("", "unknown"),
        "loadavg_at_start": [round(load1, 2), round(load5, 2), round(load15, 2)],
    }


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def slope(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The least-squares slope of y over x (units of y per unit of x) and its standard error; (0, 0) with fewer
    than 3 points."""
    n = len(points)
    if n < 3:
        return 0.0, 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0, 0.0
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    residuals = sum((y - my - b * (x - mx)) ** 2 for x, y in points)
    return b, (residuals / (n - 2) / sxx) ** 0.5


__all__ = ["CHAOS_DIR", "REPO", "ChaosError", "Check", "Context", "Scenario", "ScenarioResult", "machine_facts",
           "percentile", "slope", "wait_until"]
