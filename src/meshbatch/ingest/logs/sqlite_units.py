"""Units: events kept as one row of the SQLite log, those of one append (a request's NDJSON lines, a split
array) and those of one group commit's requests of one event each.

A row per event made the log's B-tree the largest cost of an event: an insert into `events` when it is accepted
and a delete once delivered, where one row of 100 bodies costs about what one event does. A unit's row is the
same `events` row with more columns:

- `seq` is the first event's sequence number; its events have `seq`, `seq + 1`, ... `seq + n - 1` (numbers no
  other row takes, so every event keeps its own number in the log's order, as before);
- `id` holds the events' ids joined by `,` (no id holds one: ingest/record.py), `body` their bodies end to end
  and `lens` their lengths (decimal, joined by `,`); `trace` is the same for all; `received` is too, or else
  `times` holds each event's (8-byte doubles, the machine's order) and `received` the earliest;
- `n` is the number of events (NULL: a row of one event, as every row was before units);
- `gone` lists (by place, joined by `,`) the events already settled: parked in dead letters (written in the
  same transaction as their letters, so an event is never both a dead letter and in the log after a crash) or
  acknowledged (written with the acknowledgements, which are lazy: one lost in a crash delivers its event again,
  as for any event);
- `tries` holds each event's failed deliveries (joined by `,`; NULL: none yet), as `attempts` does for a row of
  one event.

The row is deleted once each of its events is acknowledged or parked (`Unit.left` counts the others); until
then it stays whole, and after a restart its events not `gone` are read back. A log written before units opens
as it is (its rows have `n` NULL); a log with units needs a meshbatch that knows them.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

from meshbatch.ingest.record import Record

UNIT_COLUMNS = (("n", "INTEGER"), ("lens", "TEXT"), ("gone", "TEXT"), ("tries", "TEXT"), ("times", "BLOB"))


class Unit:
    """The log's handle of one unit (each of its records has it as `ref`): where its row is, how many events it
    has, how many are not yet settled, which are (by place) and how often each failed."""

    __slots__ = ("gone", "left", "n", "seq", "tries")

    def __init__(self, seq: int, n: int, left: int, gone: list[int] | None = None,
                 tries: list[int] | None = None) -> None:
        self.seq = seq
        self.n = n
        self.left = left
        self.gone: list[int] = gone if gone is not None else []
        self.tries = tries

    def __repr__(self) -> str:
        return f"<Unit seq={self.seq} n={self.n} left={self.left} gone={self.gone}>"


def _fresh(record: Record) -> bool:
    """Whether a record can go into a unit's row: no attempt yet, an id without `,`."""
    return not record.attempts and "," not in record.id


def joinable(records: Sequence[Record]) -> bool:
    """Whether these records of one append can share a row: several, fresh, received at the same time with the
    same trace."""
    if len(records) < 2:
        return False
    first = records[0]
    received, trace = first.received, first.trace
    return all(r.received == received and r.trace == trace and _fresh(r) for r in records)


def packable(record: Record) -> bool:
    """Whether a record of a request of one event can share a row with others of its group commit: fresh, no
    trace (each request's would differ)."""
    return record.trace is None and _fresh(record)


def unit_row(unit: Unit, records: Sequence[Record]) -> list[Any]:
    """The unit's row: seq, id, body, received, attempts, trace, n, lens, times (`sqlite_store`'s insert order)."""
    first = records[0]
    ids = ",".join([r.id for r in records])
    bodies = [r.body for r in records]
    lens = ",".join([str(len(body)) for body in bodies])
    received = array("d", [r.received for r in records])
    earliest = min(received)
    times = None if earliest == max(received) else received.tobytes()
    return [unit.seq, ids, b"".join(bodies), earliest, 0, first.trace, unit.n, lens, times]


def _settle(record: Record) -> Unit:
    """A unit's record acknowledged or parked: its place is `gone`, one event fewer `left`."""
    unit = record.ref
    assert isinstance(unit, Unit)
    unit.left -= 1
    unit.gone.append(record.seq - unit.seq)
    return unit


def acked(records: Sequence[Record], rows: list[int], touched: dict[int, Unit]) -> None:
    """Adds to `rows` the rows these acknowledged records free (a record's own, a unit's with its last event),
    and to `touched` the units whose row's `gone` is to be rewritten (`settled`)."""
    for record in records:
        if record.ref is None:
            rows.append(record.seq)
            continue
        unit = _settle(record)
        if unit.left:
            touched[unit.seq] = unit
        else:
            rows.append(unit.seq)


def settled(touched: dict[int, Unit]) -> list[tuple[str, int]]:
    """The `gone` of each touched unit whose row stays (the others' rows are deleted in the same commit)."""
    return [(text(unit.gone), unit.seq) for unit in touched.values() if unit.left]


def failed(record: Record) -> tuple[str, int]:
    """A unit's record's attempts (already counted) noted in its unit: the unit's `tries` and row."""
    unit = record.ref
    assert isinstance(unit, Unit)
    if unit.tries is None:
        unit.tries = [0] * unit.n
    unit.tries[record.seq - unit.seq] = record.attempts
    return text(unit.tries), unit.seq


def parked(record: Record, gone: list[tuple[str, int]], drops: list[int]) -> None:
    """A unit's record parked in dead letters: its row's `gone` rewritten in the letter's transaction (`gone`),
    or the row deleted there (`drops`) when it was the unit's last event."""
    unit = _settle(record)
    if unit.left:
        gone.append((text(unit.gone), unit.seq))
    else:
        drops.append(unit.seq)


def numbers(text: str | None) -> list[int]:
    return [int(part) for part in text.split(",")] if text else []


def text(values: Sequence[int]) -> str:
    return ",".join([str(value) for value in values])


def expand(seq: int, ids: str, body: bytes, received: float, trace: bytes | None, n: int, lens: str,
           gone: str | None, tries: str | None, times: bytes | None = None) -> tuple[Unit, list[Record]]:
    """A unit's row read back: its handle and the records of its events not `gone`. A row that does not hold
    what it says (counts, lengths, places, numbers) is a ValueError naming it."""
    malformed = ValueError(f"the log's row {seq} is not a well-formed unit of {n} events")
    try:
        id_list = ids.split(",")
        sizes = numbers(lens)
        settled_places = set(numbers(gone))
        attempts = numbers(tries) or None
    except ValueError:
        raise malformed from None
    if (len(id_list) != n or len(sizes) != n or sum(sizes) != len(body) or min(sizes, default=0) < 0
            or not settled_places <= set(range(n)) or (attempts is not None and len(attempts) != n)
            or (times is not None and len(times) != 8 * n)):
        raise malformed
    stamps = array("d", times) if times is not None else None
    unit = Unit(seq, n, n - len(settled_places), sorted(settled_places), attempts)
    records: list[Record] = []
    at = 0
    for i in range(n):
        end = at + sizes[i]
        if i not in settled_places:
            records.append(Record(id_list[i], body[at:end], received if stamps is None else stamps[i],
                                  attempts[i] if attempts else 0, seq + i, unit, trace))
        at = end
    return unit, records


def gone_size(n: int, lens: str, gone: str) -> tuple[int, int]:
    """How many events and bytes of a unit's row are settled (not in the log's backlog)."""
    sizes = numbers(lens)
    places = set(numbers(gone))
    return len(places), sum(sizes[i] for i in places if 0 <= i < n)


__all__ = ["UNIT_COLUMNS", "Unit", "acked", "expand", "failed", "gone_size", "joinable", "numbers", "packable",
           "parked", "settled", "text", "unit_row"]
