"""Tables that fit the terminal they are printed on, for `meshbatch top` and `meshbatch tune`.

A table is described as columns and rows of cells; `fit_table(..., width)` builds the rich `Table` that shows as
much as `width` columns hold, with no header or value cut short:

1. every column at its natural width (its longest header line or cell), sparklines at `SPARK_MAX` points;
2. too wide: the sparklines shrink (to `SPARK_MIN` points), then go;
3. still too wide: columns go, the least important first (`Column.keep`, lowest first; a tie drops the rightmost),
   never a `required` one.

So 80 columns show the figures that matter, and a wider terminal shows more columns and longer trends. The width
is measured by rich itself (`Measurement`), so what is chosen is exactly what it prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

BLOCKS = " ▁▂▃▄▅▆▇█"
SPARK_MAX = 60  # points of a sparkline on a wide terminal (one a second)
SPARK_MIN = 10  # below this a sparkline says too little: it goes instead
NATURAL = 10_000  # a width no table reaches: measuring against it gives a table's natural width


def sparkline(values: Sequence[float | None], width: int = SPARK_MAX) -> str:
    """The last `width` values as block characters scaled to their peak; a missing value is a blank (a gap)."""
    values = list(values)[-width:] if width > 0 else []
    known = [v for v in values if v is not None]
    top = max(known) if known else 0.0
    steps = len(BLOCKS) - 1
    return "".join(" " if v is None else BLOCKS[max(1, round(v / top * steps)) if top > 0 else 1] for v in values)


@dataclass(frozen=True, slots=True)
class Spark:
    """A sparkline cell, drawn at the width its column gets."""

    values: tuple[float | None, ...]
    style: str = "cyan"

    def render(self, width: int) -> Text:
        if all(v is None for v in self.values[-width:]):
            return Text("-", style="dim")  # nothing sampled in the window: say so rather than leave it blank
        return Text(sparkline(self.values, width), style=self.style)


Cell = str | Text | Spark


@dataclass(frozen=True, slots=True)
class Column:
    """`header` may hold a second line after a newline; in a sparkline column, `{n}` in it is the points shown.

    `keep`: how long the column stays as the width shrinks (higher stays longer). `label`: a note that may be
    blank on some rows (every other column has a value in every row)."""

    header: str
    justify: Literal["left", "right"] = "right"
    keep: int = 50
    required: bool = False
    spark: bool = False
    label: bool = False

    def title(self, points: int) -> str:
        return self.header.replace("{n}", str(points)) if self.spark else self.header


def _table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], shown: Sequence[int],
           points: int, width: int) -> Table:
    # At least as wide as its title (up to the terminal's width), so the title is never wrapped.
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, header_style="bold", expand=False, min_width=min(cell_len(title), width))
    for index in shown:
        column = columns[index]
        table.add_column(column.title(points), justify=column.justify, no_wrap=True,
                         overflow="ellipsis" if column.required else "crop")
    for row in rows:
        cells: list[str | Text] = []
        for index in shown:
            cell = row[index]
            cells.append(cell.render(points) if isinstance(cell, Spark) else cell)
        table.add_row(*cells)
    return table


def natural_width(table: Table, console: Console | None = None) -> int:
    """The width `table` takes when nothing limits it."""
    console = console or Console(width=NATURAL)
    return Measurement.get(console, console.options.update_width(NATURAL), table).maximum


def fit_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> Table:
    """The table of `columns` and `rows` that fits `width`: sparklines shrunk, then dropped, then the least
    important columns dropped (see the module's docstring)."""
    console = Console(width=NATURAL)
    shown = list(range(len(columns)))
    spark_points = max((len(c.values) for row in rows for c in row if isinstance(c, Spark)), default=0)
    points = max(SPARK_MIN, min(SPARK_MAX, spark_points))

    def build() -> tuple[Table, int]:
        table = _table(title, columns, rows, shown, points, width)
        return table, natural_width(table, console)

    table, used = build()
    sparks = [i for i in shown if columns[i].spark]
    if used > width and sparks:
        points = max(SPARK_MIN, points - -(-(used - width) // len(sparks)))
        table, used = build()
        if used > width:
            shown = [i for i in shown if not columns[i].spark]
            table, used = build()
    droppable = sorted((i for i in shown if not columns[i].required), key=lambda i: (columns[i].keep, -i))
    for index in droppable:
        if used <= width:
            break
        shown.remove(index)
        table, used = build()
    return table


__all__ = ["BLOCKS", "Cell", "Column", "Spark", "fit_table", "natural_width", "sparkline"]
