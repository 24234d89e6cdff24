"""Events to table rows: the table's columns from config, values taken from each event by dotted path.

Columns: the event id (primary key: a batch delivered twice stores each event once), optionally the receive
time, and either the mapped fields (`columns: {column: field path | {field, type}}`) or the whole event in one
JSON column (`payload_column`, the default `payload` when no fields are mapped), or both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Final

import orjson

from meshbatch.config.plain import Column
from meshbatch.config.plain import Sink as SinkConfig
from meshbatch.ingest.record import Record

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class RowError(ValueError):
    """An event whose fields do not fit the table's column types."""


def quote(name: str) -> str:
    """A checked identifier, double-quoted (`schema.table` quotes each part)."""
    parts = name.split(".")
    for part in parts:
        if not IDENTIFIER.match(part):
            raise ValueError(f"{name!r} is not a valid SQL name (letters, digits, _; at most 63)")
    return ".".join(f'"{part}"' for part in parts)


@dataclass(frozen=True, slots=True)
class MappedColumn:
    name: str
    path: tuple[str, ...]  # () for id / received / payload columns
    type: str  # text bigint double boolean json timestamp


def id_index(table: str, id_column: str) -> str:
    """The unique index on the id column that `INSERT ... ON CONFLICT (id)` needs, for a table made elsewhere
    without one (a table the sinks make has the id as its key); the same statement in SQLite and PostgreSQL."""
    index = quote(f"{table.replace('.', '_')}_{id_column}_key"[:63])
    return f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {quote(table)} ({quote(id_column)})"


def columns_of(config: SinkConfig) -> list[MappedColumn]:
    out = [MappedColumn(config.id_column, (), "id")]
    if config.received_column:
        out.append(MappedColumn(config.received_column, (), "received"))
    for name, spec in config.columns.items():
        column = spec if isinstance(spec, Column) else Column(field=spec)
        out.append(MappedColumn(name, tuple(column.field.split(".")), column.type))
    payload = config.payload_column or (None if config.columns else "payload")
    if payload:
        out.append(MappedColumn(payload, (), "payload"))
    return out


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _bigint(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RowError(f"{value!r} is not an integer")
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except ValueError:
        number = None
    if number is None or not -(2**63) <= number < 2**63:
        raise RowError(f"{value!r} is not a 64-bit integer")
    return number


def _double(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RowError(f"{value!r} is not a number")
    try:
        return float(value)
    except ValueError:
        raise RowError(f"{value!r} is not a number") from None


def _boolean(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise RowError(f"{value!r} is not a boolean")


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) > 1e11 else value  # epoch milliseconds or seconds
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):  # beyond the platform's time_t or year 9999
            raise RowError(f"{value!r} is out of the range of times") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RowError(f"{value!r} is not an RFC 3339 time") from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    raise RowError(f"{value!r} is not a time")


CONVERT: dict[str, Callable[[Any], Any]] = {
    "text": _text, "bigint": _bigint, "double": _double, "boolean": _boolean, "json": _json, "timestamp": _timestamp,
}


def _lookup(event: Any, path: tuple[str, ...]) -> Any:
    value = event
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class ReceivedTexts:
    """Receive times as text, remembering the last stamp (the events of one request share it) and the last whole
    second (one strftime a second, not a row)."""

    __slots__ = ("last", "last_text", "second", "second_text")

    def __init__(self) -> None:
        self.last = math.nan  # equal to no stamp
        self.last_text = ""
        self.second = -1
        self.second_text = ""

    def __call__(self, stamp: float) -> str:
        if stamp == self.last:
            return self.last_text
        whole = int(stamp)
        if whole != self.second:
            self.second, self.second_text = whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        micro = round((stamp - whole) * 1_000_000)
        if micro >= 1_000_000:  # rounds up into the next second
            text = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="microseconds")
        else:
            text = f"{self.second_text}.{str(1_000_000 + micro)[1:]}+00:00"  # six digits, no format call
        self.last, self.last_text = stamp, text
        return text


received_text: Final = ReceivedTexts()  # `stamp` (epoch seconds) as RFC 3339 UTC with microseconds, like
# `datetime.isoformat(timespec="microseconds")`


def make_row(columns: list[MappedColumn], record: Record, timestamps_as_text: bool = False) -> tuple[Any, ...]:
    """The row for one record; raises RowError when the body is not JSON or a field does not fit its column."""
    event: Any = None
    if any(column.path for column in columns):  # fields to take out: parse (the payload column alone needs not)
        try:
            event = orjson.loads(record.body)
        except orjson.JSONDecodeError as exc:
            raise RowError(f"the event is not JSON ({exc.msg})") from None
    row: list[Any] = []
    for column in columns:
        kind = column.type
        if kind == "id":
            row.append(record.id)
        elif kind == "received":
            row.append(received_text(record.received) if timestamps_as_text
                       else datetime.fromtimestamp(record.received, UTC))
        elif kind == "payload":
            row.append(record.body.decode("utf-8"))
        else:
            try:
                value = CONVERT[kind](_lookup(event, column.path))
            except RowError as exc:
                raise RowError(f"column {column.name}: {exc}") from None
            if timestamps_as_text and isinstance(value, datetime):
                value = value.isoformat()
            row.append(value)
    return tuple(row)


def _cell(kind: str, timestamps_as_text: bool) -> Callable[[Record], Any]:
    if kind == "id":
        return attrgetter("id")
    if kind == "received":
        if timestamps_as_text:
            return lambda record: received_text(record.received)
        return lambda record: datetime.fromtimestamp(record.received, UTC)
    return lambda record: record.body.decode("utf-8")


def plain_rows(columns: list[MappedColumn],
               timestamps_as_text: bool = False) -> Callable[[Sequence[Record]], list[tuple[Any, ...]]] | None:
    """For a table of the id, receive time and payload columns only (no field taken out of the event, so no row
    can fail): a function making the rows of many records at once, as `make_row` would one by one, a column at a
    time. None for a table with mapped fields."""
    if any(column.path or column.type not in ("id", "received", "payload") for column in columns):
        return None
    cells = [_cell(column.type, timestamps_as_text) for column in columns]

    def rows(records: Sequence[Record]) -> list[tuple[Any, ...]]:
        return list(zip(*[map(cell, records) for cell in cells], strict=True))

    return rows


RowsMaker = Callable[[Sequence[Record]], tuple[list[tuple[Any, ...]], list[str | None]]]


def batch_rows(columns: list[MappedColumn], timestamps_as_text: bool = False) -> RowsMaker:
    """A function making a batch's rows and each record's outcome: None when it has its row, else why it has
    none (a mapped field missing or of the wrong type). Tables without mapped fields take `plain_rows`."""
    plain = plain_rows(columns, timestamps_as_text)
    if plain is not None:
        plain_made = plain
        return lambda records: (plain_made(records), [None] * len(records))

    def rows(records: Sequence[Record]) -> tuple[list[tuple[Any, ...]], list[str | None]]:
        made: list[tuple[Any, ...]] = []
        outcomes: list[str | None] = []
        for record in records:
            try:
                made.append(make_row(columns, record, timestamps_as_text))
                outcomes.append(None)
            except RowError as exc:
                outcomes.append(str(exc))
        return made, outcomes

    return rows


__all__ = ["CONVERT", "IDENTIFIER", "MappedColumn", "RowError", "RowsMaker", "batch_rows", "columns_of", "id_index",
           "make_row", "plain_rows", "quote", "received_text"]
