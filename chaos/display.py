"""The live view while `meshbatch chaos` runs (rich): overall progress, the scenario running, what it is doing,
and the load generator's counters refreshed four times a second."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .common import Context, Scenario, ScenarioResult


class Display:
    """A live view on a terminal; plain lines (one per step) into a log file or CI."""

    def __init__(self, scenarios: list[Scenario], ctx: Context) -> None:
        self.console = Console() if Console().is_terminal else Console(width=140)
        self.interactive = self.console.is_terminal
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console)
        self.task = self.progress.add_task("chaos", total=len(scenarios))
        self.current: Scenario | None = None
        self.phase = ""
        self.load: Any = None
        self.phase_at = time.monotonic()
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, get_renderable=self._render)
        ctx.status = self.status
        ctx.live = self.attach

    def __enter__(self) -> Display:
        if self.interactive:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.interactive:
            self.live.__exit__(None, None, None)

    def status(self, text: str) -> None:
        self.phase = text
        self.phase_at = time.monotonic()
        if not self.interactive and self.current is not None:
            self.console.print(f"  {self.current.name}: {text}", highlight=False)

    def attach(self, load: Any) -> None:
        self.load = load

    def begin(self, scenario: Scenario) -> None:
        self.current = scenario
        self.phase = "starting"
        self.progress.update(self.task, description=f"chaos: {scenario.name}")

    def end(self, result: ScenarioResult) -> None:
        if result.skipped:
            mark = f"[yellow]skipped[/yellow] ({result.skipped})"
        elif result.ok:
            mark = "[green]ok[/green]"
        else:
            mark = "[red]FAILED[/red]: " + "; ".join(result.failures[:3])
        self.console.print(f"{result.name}: {mark} ({result.seconds:.1f} s)", highlight=False)
        self.progress.advance(self.task)
        self.load = None

    def _render(self) -> Group:
        parts: list[Any] = [self.progress]
        if self.current is not None:
            parts.append(Text(f"  {self.current.title}: {self.phase}", style="bold"))
        load = self.load
        if load is not None:
            grid = Table.grid(padding=(0, 2))
            for _ in range(7):
                grid.add_column(justify="right")
            grid.add_row("stream", "rate/s", "sent", "answered", "2xx", "failed", "in flight")
            for stream in list(load.streams.values()):
                total = stream.total
                settled = total - stream.outstanding - len(stream.queue)
                rate = "closed" if stream.rate is None else f"{stream.rate:.0f}"
                grid.add_row(stream.spec.name, rate, str(total), str(stream.answered), str(stream.ok),
                             str(settled - stream.ok), str(stream.outstanding))
            parts.append(grid)
        return Group(*parts)

    def summary(self, results: list[ScenarioResult], text: str, path: Path) -> None:
        self.console.print(Markdown(text.split("\n### ")[0]))
        self.console.print(f"results: {path} and {path.with_suffix('.md')}", highlight=False)
        for result in results:
            for failure in result.failures:
                self.console.print(f"[red]failed:[/red] {failure}", highlight=False)


__all__ = ["Display"]
