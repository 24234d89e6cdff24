"""Tables fitted to the terminal (meshbatch.tools.fit): sparklines shrink, then go, then the least important
columns; never a required one; a wide terminal shows everything."""

from __future__ import annotations

from meshbatch.tools.fit import SPARK_MAX, SPARK_MIN, Column, Spark, fit_table, natural_width

COLUMNS = (Column("name", "left", required=True), Column("rate", keep=90),
           Column("trend\nlast {n}s", "left", spark=True), Column("minor figure", keep=10),
           Column("major figure", keep=80))
ROW = ["a-route", "12.5", Spark(tuple(float(i) for i in range(120))), "7", "3.25"]


def headers(width: int) -> list[str]:
    return [str(c.header) for c in fit_table("t", COLUMNS, [ROW], width).columns]


def test_a_wide_terminal_shows_every_column_and_the_longest_trend() -> None:
    assert headers(400) == ["name", "rate", f"trend\nlast {SPARK_MAX}s", "minor figure", "major figure"]


def test_the_sparkline_shrinks_before_anything_goes() -> None:
    full = natural_width(fit_table("t", COLUMNS, [ROW], 400))
    shown = headers(full - 20)
    assert shown == ["name", "rate", f"trend\nlast {SPARK_MAX - 20}s", "minor figure", "major figure"]


def test_then_the_sparkline_goes_then_the_least_important_columns() -> None:
    without_spark = natural_width(fit_table("t", COLUMNS[:2] + COLUMNS[3:], [ROW[:2] + ROW[3:]], 400))
    assert headers(without_spark) == ["name", "rate", "minor figure", "major figure"]
    assert headers(without_spark - 1) == ["name", "rate", "major figure"]
    assert headers(20) == ["name", "rate"]
    assert headers(5) == ["name"]  # a required column stays whatever the width


def test_a_sparkline_gets_at_least_its_minimum_and_blank_history_reads_as_a_dash() -> None:
    short = ["r", "1", Spark((None, None)), "2", "3"]
    table = fit_table("t", COLUMNS, [short], 400)
    assert str(table.columns[2].header) == f"trend\nlast {SPARK_MIN}s"
    assert table.columns[2]._cells[0].plain == "-"  # type: ignore[union-attr]
