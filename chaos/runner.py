"""`meshbatch chaos`: the command line, scenario discovery, the live display, and where results go.

A scenario module is a file `scenario_NAME.py` in this directory with `SCENARIOS`, a list of `Scenario`
(name, title, order, run). `run(ctx)` gets a `Context` (short or full, a work directory, durations, progress
callbacks) and returns a `ScenarioResult` (figures and checks). Results: `chaos/results/latest.{md,json}` for a
full run, `latest-short.{md,json}` for `--short` (the JSON holds every figure and the machine facts).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from testbed import machine

from .common import CHAOS_DIR, ChaosError, Context, Scenario, ScenarioResult, machine_facts
from .report import markdown

RESULTS = CHAOS_DIR / "results"
SHORT_SOAK_SECONDS = 20.0
FULL_SOAK_SECONDS = 600.0
SHORT_OVERLOAD_SECONDS = 8.0
FULL_OVERLOAD_SECONDS = 30.0


def discover() -> dict[str, Scenario]:
    """Every scenario of this directory, by name, in order."""
    package = __name__.rpartition(".")[0]
    found: list[Scenario] = []
    for path in sorted(CHAOS_DIR.glob("scenario_*.py")):
        module = importlib.import_module(f"{package}.{path.stem}")
        scenarios = getattr(module, "SCENARIOS", None)
        if not isinstance(scenarios, list):
            raise ChaosError(f"{path.name} defines no SCENARIOS list")
        found += scenarios
    return {s.name: s for s in sorted(found, key=lambda s: (s.order, s.name))}


def run_scenario(scenario: Scenario, ctx: Context) -> ScenarioResult:
    """Run one scenario; an exception becomes the result's error (with the traceback in its notes)."""
    started = time.monotonic()
    try:
        result = scenario.run(ctx)
    except Exception as exc:
        result = ScenarioResult(scenario.name, scenario.title, error=f"{type(exc).__name__}: {exc}")
        result.notes.append(traceback.format_exc())
    result.seconds = time.monotonic() - started
    return result


def make_context(short: bool, work: Path, soak: float | None = None, overload: float | None = None) -> Context:
    return Context(short=short, work=work,
                   soak_seconds=soak if soak is not None else (SHORT_SOAK_SECONDS if short else FULL_SOAK_SECONDS),
                   overload_seconds=overload if overload is not None else (
                       SHORT_OVERLOAD_SECONDS if short else FULL_OVERLOAD_SECONDS))


def run_one(name: str, short: bool = True, work: Path | None = None, soak: float | None = None,
            overload: float | None = None) -> ScenarioResult:
    """One scenario by name, without the display (what the pytest versions call)."""
    scenario = discover()[name]
    if work is None:
        work = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
    return run_scenario(scenario, make_context(short, work, soak, overload))


# -- the command line ---------------------------------------------------------------------------------
def build_parser(names: list[str], prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Reliability under load and faults: the chaos and "
                                     "soak suite of meshbatch, with figures (docs/reliability.md).")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"any of: {', '.join(names)} (default: all)")
    parser.add_argument("--short", action="store_true", help="the short version (as in `make test`)")
    parser.add_argument("--soak-seconds", type=float, default=None,
                        help=f"soak duration (default {FULL_SOAK_SECONDS:g}, --short {SHORT_SOAK_SECONDS:g})")
    parser.add_argument("--overload-seconds", type=float, default=None,
                        help=f"time at 2x capacity (default {FULL_OVERLOAD_SECONDS:g}, "
                             f"--short {SHORT_OVERLOAD_SECONDS:g})")
    parser.add_argument("--out", type=Path, default=None, help="results directory (default chaos/results)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, id files)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser


def write_results(out: Path, stem: str, data: dict[str, Any], text: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{stem}.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, target)
    (out / f"{stem}.md").write_text(text + "\n")
    return target


def main(argv: list[str], prog: str = "meshbatch chaos") -> int:
    from .display import Display

    try:
        scenarios = discover()
    except ChaosError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    parser = build_parser(list(scenarios), prog)
    args = parser.parse_args(argv)
    if args.list:
        for s in scenarios.values():
            print(f"{s.name:18} {s.title}")
        return 0
    unknown = [n for n in args.scenarios if n not in scenarios]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(scenarios)}")
    chosen = [scenarios[n] for n in (args.scenarios or list(scenarios))]
    work = Path(tempfile.mkdtemp(prefix="meshbatch-chaos-"))
    ctx = make_context(args.short, work, args.soak_seconds, args.overload_seconds)
    command = shlex.join([prog.split()[0], *prog.split()[1:], *argv])
    facts = machine_facts()
    results: list[ScenarioResult] = []
    started = time.monotonic()
    display = Display(chosen, ctx)
    try:
        with machine.sigterm_interrupts(), display:
            for scenario in chosen:
                display.begin(scenario)
                result = run_scenario(scenario, ctx)
                results.append(result)
                display.end(result)
    except KeyboardInterrupt:
        display.console.print("[yellow]interrupted; processes stopped[/yellow]")
        return 130
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - started
    data = {"command": command, "mode": "short" if args.short else "full", "seconds": round(total, 1),
            "machine": facts, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "ok": all(r.ok or r.skipped for r in results), "scenarios": [r.as_json() for r in results]}
    text = markdown(data)
    stem = "latest-short" if args.short else "latest"
    if args.scenarios:
        stem += "-partial"
    path = write_results(args.out or RESULTS, stem, data, text)
    display.summary(results, text, path)
    if args.keep:
        display.console.print(f"work directory kept: {work}", highlight=False)
    return 0 if data["ok"] else 1


__all__ = ["discover", "main", "make_context", "run_one", "run_scenario"]
