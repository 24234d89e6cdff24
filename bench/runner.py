"""`meshbatch bench`: the command line, scenario discovery, the progress display, and where results go.

A scenario is one module `scenario_NAME.py` in this directory with:
    NAME: str                     the command-line name
    SUMMARY: str                  one line for --help
    ORDER: int                    its place in `meshbatch bench all`
    add_arguments(parser) -> None its own options (defaults must be usable by `all`)
    run(ctx: RunContext) -> ScenarioResult
    plot(data, out_dir) -> list[Path]   optional: PNGs from the result (matplotlib imported inside)
    render(data) -> str           optional: the markdown of a recorded result (`meshbatch bench report`)
Adding a scenario is adding that one file. `meshbatch bench report` regenerates docs/benchmarks.md from
bench/results/ (see docs_report.py); `meshbatch bench deps` installs the batching peers into bench/.peers/.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from testbed import machine

from .common import BenchError

BENCH_DIR = Path(__file__).resolve().parent
REQUIRED = ("NAME", "SUMMARY", "add_arguments", "run")
MATPLOTLIB = "3.11.2"  # the version the plots were made with


@dataclass
class ScenarioResult:
    data: dict[str, Any]  # written as NAME.json, machine facts included by the scenario
    markdown: str  # printed to the terminal and written as NAME.md
    failures: list[str] = field(default_factory=list)  # runs that failed; the command then exits 1


@dataclass
class RunContext:
    name: str
    args: argparse.Namespace
    console: Console
    progress: Progress
    _task: Any = None

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)

    @property
    def repeat(self) -> int:
        if self.args.repeat is not None:
            return max(1, int(self.args.repeat))
        return 1 if self.quick else 3

    def begin(self, total: int, description: str) -> None:
        self._task = self.progress.add_task(f"{self.name}: {description}", total=total)

    def step(self, description: str) -> None:
        """Say what runs next (the bar advances with `done()`)."""
        if self._task is not None:
            self.progress.update(self._task, description=f"{self.name}: {description}")

    def done(self) -> None:
        if self._task is not None:
            self.progress.advance(self._task)

    def note(self, message: str) -> None:
        self.progress.console.print(message, markup=False, highlight=False)


def discover() -> dict[str, ModuleType]:
    """The scenario modules of this directory, by NAME, in ORDER."""
    package = __name__.rpartition(".")[0]
    found: list[tuple[int, str, ModuleType]] = []
    for path in sorted(BENCH_DIR.glob("scenario_*.py")):
        module = importlib.import_module(f"{package}.{path.stem}")
        missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
        if missing:
            raise BenchError(f"{path.name} is not a scenario: it lacks {', '.join(missing)}")
        found.append((int(getattr(module, "ORDER", 100)), str(module.NAME), module))
    return {name: module for _, name, module in sorted(found, key=lambda item: (item[0], item[1]))}


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quick", action="store_true", help="a short smoke run (about a minute)")
    common.add_argument("--repeat", type=int, default=None, help="interleaved rounds (default 3, --quick 1)")
    common.add_argument(
        "--out", type=Path, default=None, help="results directory (default bench/results, --quick: .../quick)"
    )
    return common


def build_parser(scenarios: dict[str, ModuleType], prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Benchmarks of meshbatch beside its peers.")
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    common = _common_options()
    for name, module in scenarios.items():
        scenario_parser = sub.add_parser(name, parents=[common], help=module.SUMMARY, description=module.SUMMARY)
        module.add_arguments(scenario_parser)
    sub.add_parser("all", parents=[common], help="every scenario, each with its default options")
    report = sub.add_parser("report", help="regenerate docs/benchmarks.md from bench/results/ (ratios first)")
    report.add_argument("--results", type=Path, default=None, help="results directory (default bench/results)")
    report.add_argument("--docs", type=Path, default=None, help="the page to write (default docs/benchmarks.md)")
    deps = sub.add_parser("deps", help="install the batching peers (Ray Serve, BentoML) into bench/.peers/")
    deps.add_argument("--peers", default="ray-serve,bentoml", help="peers to install, comma-separated")
    return parser


def _scenario_args(parser: argparse.ArgumentParser, scenario: str, common: argparse.Namespace) -> argparse.Namespace:
    """`all` runs each scenario with its own defaults and the common options given."""
    args = parser.parse_args([scenario])
    args.quick, args.repeat, args.out = common.quick, common.repeat, common.out
    return args


def _write_results(out_dir: Path, name: str, result: ScenarioResult) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, target)
    (out_dir / f"{name}.md").write_text(result.markdown + "\n")
    return target


def _plot(module: ModuleType, result: ScenarioResult, out_dir: Path, console: Console) -> list[Path]:
    """The scenario's PNGs, when it draws any and matplotlib is installed."""
    if not hasattr(module, "plot"):
        return []
    if importlib.util.find_spec("matplotlib") is None:
        console.print(f"no plots: matplotlib is not installed (pip install matplotlib=={MATPLOTLIB})")
        return []
    paths: list[Path] = module.plot(result.data, out_dir)
    return paths


def _report(scenarios: dict[str, ModuleType], args: argparse.Namespace, console: Console) -> int:
    from . import docs_report

    results = args.results or docs_report.RESULTS
    docs = args.docs or docs_report.DOCS
    path = docs_report.write(scenarios, results, docs)
    console.print(f"docs: {path}", highlight=False)
    return 0


def _deps(args: argparse.Namespace, console: Console) -> int:
    """Install each peer into its own virtual environment; a peer that cannot be installed is reported."""
    from .batching_targets import PEERS, install_peer

    ok = True
    for name in [n.strip() for n in str(args.peers).split(",") if n.strip()]:
        if name not in PEERS:
            console.print(f"[red]unknown peer {name}[/red]; choose from {', '.join(PEERS)}", highlight=False)
            return 2
        version, reason = install_peer(PEERS[name], lambda line: console.print(line, highlight=False))
        if version is None:
            console.print(f"[yellow]{name}: not installed: {reason}[/yellow]", highlight=False)
            ok = False
        else:
            console.print(f"{name}: {version}", highlight=False)
    return 0 if ok else 1


def run_one(name: str, module: ModuleType, args: argparse.Namespace, console: Console) -> bool:
    default_out = BENCH_DIR / "results"
    out_dir: Path = args.out or (default_out / ("quick" if args.quick else ""))
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, refresh_per_second=4) as progress:
        ctx = RunContext(name=name, args=args, console=console, progress=progress)
        result: ScenarioResult = module.run(ctx)
    path = _write_results(out_dir, name, result)
    console.print(Markdown(result.markdown))
    console.print(f"results: {path}", highlight=False)
    for picture in _plot(module, result, out_dir, console):
        console.print(f"plot: {picture}", highlight=False)
    for failure in result.failures:
        console.print(f"[red]failed:[/red] {failure}", highlight=False)
    if not args.quick and out_dir.resolve() == default_out.resolve():
        from . import docs_report

        page = docs_report.write(discover(), out_dir)
        console.print(f"docs: {page}", highlight=False)
    return not result.failures


def main(argv: list[str], prog: str = "meshbatch bench") -> int:
    console = Console()
    if not console.is_terminal:  # a log file or CI: wide enough that the tables are not cut
        console = Console(width=140)
    try:
        scenarios = discover()
    except BenchError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    parser = build_parser(scenarios, prog)
    args = parser.parse_args(argv)
    if args.scenario == "report":
        return _report(scenarios, args, console)
    if args.scenario == "deps":
        return _deps(args, console)
    chosen = list(scenarios) if args.scenario == "all" else [args.scenario]
    ok = True
    with machine.sigterm_interrupts():
        for name in chosen:
            scenario_args = _scenario_args(parser, name, args) if args.scenario == "all" else args
            try:
                ok = run_one(name, scenarios[name], scenario_args, console) and ok
            except BenchError as exc:
                console.print(f"[red]{name}: {exc}[/red]", highlight=False)
                ok = False
            except KeyboardInterrupt:
                console.print(f"[yellow]{name}: interrupted; peers stopped[/yellow]")
                return 130
    return 0 if ok else 1
