"""Markdown pieces shared by the scenarios: tables and "median [min-max]" cells."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def spread(summary: Mapping[str, Any] | None, digits: int = 2) -> str:
    """`median [min-max]` of a `common.summarize` result; just the median when there was one run."""
    if not summary or summary.get("median") is None:
        return "-"
    median = num(summary["median"], digits)
    if summary.get("n", 0) <= 1:
        return median
    return f"{median} [{num(summary['min'], digits)}-{num(summary['max'], digits)}]"


def signed(summary: Mapping[str, Any] | None, digits: int = 3) -> str:
    """Like `spread` with an explicit sign, for differences against a baseline."""
    if not summary or summary.get("median") is None:
        return "-"
    text = spread(summary, digits)
    return text if text.startswith("-") else "+" + text
