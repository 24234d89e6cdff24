"""Checks that a terminal view (`meshbatch top`, `meshbatch tune`) reads well at a given width: nothing wider than
the terminal, no header or value cut short (no ellipsis anywhere), every header shown whole, and every value
column with a value on every row."""

from __future__ import annotations

import io
from collections.abc import Iterable

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

ELLIPSIS = "…"


def render(renderable: RenderableType, width: int) -> str:
    """What `renderable` prints on a terminal of `width` columns (no colour codes)."""
    console = Console(width=width, record=True, color_system=None, force_terminal=False, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def _plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def column_cells(table: Table) -> dict[str, list[str]]:
    """Each column's header and its cells as plain text."""
    return {str(column.header): [_plain(cell) for cell in column._cells] for column in table.columns}


def assert_readable(text: str, tables: Iterable[Table], width: int, may_be_blank: frozenset[str] = frozenset()) -> None:
    """`text` (the whole view at `width`) and each of its `tables` (rendered alone at `width`) read whole.

    `may_be_blank`: headers of note columns, whose cells may be empty on some rows."""
    too_wide = [line for line in text.splitlines() if cell_len(line) > width]
    assert not too_wide, f"lines wider than {width}: {too_wide}"
    assert ELLIPSIS not in text, f"something cut short at {width} columns:\n{text}"
    for table in tables:
        alone = render(table, width)
        header_block = "\n".join(alone.splitlines()[:6])
        for header, cells in column_cells(table).items():
            for line in header.split("\n"):
                assert line in header_block, f"header {header!r} not shown whole at {width} columns:\n{alone}"
            if header not in may_be_blank:
                blank = [i for i, cell in enumerate(cells) if not cell.strip()]
                assert not blank, f"column {header!r} has no value on rows {blank} at {width} columns:\n{alone}"


__all__ = ["assert_readable", "column_cells", "render"]
