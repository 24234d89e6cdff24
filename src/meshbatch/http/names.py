"""Header names and values as the HTTP/1.1 readers keep them, made cheaply.

A connection's messages repeat a handful of header names (`Server`, `Content-Type`, `Host`, `User-Agent` ...).
`lower_name` keeps, for each name seen as it was written, its lower-case form, so that a name seen before costs
one dictionary look-up instead of a `bytes.lower()` call, and the lower-case name comes back as one shared
object whose hash is already known (the set look-ups that follow it are cheaper too). The table is bounded: a
peer sending ever new names fills it once, then its names are lowered one by one as before.

`NameMemo` is one connection's shortcut before that table: a client sends the same names in the same order in
each request, so the name at each position of the previous request is compared first (a byte comparison, no
hashing), and its lower-case form reused.

`header_field` does the same for whole header lines of answers: an upstream repeats most of its lines exactly
(`Server: nginx`, `Content-Type: text/plain`), so a line seen before is one look-up, and its `(name, value)` comes
back as one shared tuple (immutable: answers may hold it). Lines that change (`Date`, cookies) fill the table;
once full it is emptied and fills again with what is repeated.

`trim` strips the spaces and tabs around a value (what `value.strip(b" \\t")` does) in a loop the compiled build
runs natively, without a method call, and without a copy when there is nothing to strip.
"""

from __future__ import annotations

from typing import Final

MAX_NAMES: Final = 512  # names kept
MAX_NAME_BYTES: Final = 64  # longer names are lowered each time, never kept

MAX_FIELDS: Final = 256  # header lines kept
MAX_FIELD_BYTES: Final = 128  # longer lines are split each time, never kept

_LOWER: Final[dict[bytes, bytes]] = {}
_FIELDS: Final[dict[bytes, tuple[bytes, bytes]]] = {}


def lower_name(name: bytes) -> bytes:
    """`name.lower()`, from the table when the name was seen before."""
    lname = _LOWER.get(name)
    if lname is None:
        lname = name.lower()
        if len(_LOWER) < MAX_NAMES - 1 and len(name) <= MAX_NAME_BYTES:
            lname = _LOWER.setdefault(lname, lname)  # (one object for every spelling of a name)
            _LOWER[name] = lname
    return lname


MAX_POSITIONS: Final = 32  # positions a NameMemo remembers


class NameMemo:
    """The header names of a connection's previous request, by position, and their lower-case forms."""

    __slots__ = ("_lower", "_raw")

    def __init__(self) -> None:
        self._raw: list[bytes] = []
        self._lower: list[bytes] = []

    def lower(self, position: int, name: bytes) -> bytes:
        """`name.lower()` for the field at `position` (0: the first) of the request being read."""
        raw = self._raw
        if position < len(raw):
            if raw[position] == name:
                return self._lower[position]
            lname = lower_name(name)
            raw[position] = name
            self._lower[position] = lname
            return lname
        lname = lower_name(name)
        if position == len(raw) and position < MAX_POSITIONS:
            raw.append(name)
            self._lower.append(lname)
        return lname


def header_field(line: bytes) -> tuple[bytes, bytes]:
    """The lower-case name and the trimmed value of a header line `name:value` (llhttp has checked its syntax)."""
    field = _FIELDS.get(line)
    if field is None:
        name, _, value = line.partition(b":")
        field = (lower_name(name), trim(value))
        if len(line) <= MAX_FIELD_BYTES:
            if len(_FIELDS) >= MAX_FIELDS:
                _FIELDS.clear()
            _FIELDS[line] = field
    return field


def trim(value: bytes) -> bytes:
    """`value.strip(b" \\t")`."""
    end = len(value)
    start = 0
    while start < end and (value[start] == 32 or value[start] == 9):  # SP, HTAB
        start += 1
    while end > start and (value[end - 1] == 32 or value[end - 1] == 9):
        end -= 1
    if start == 0 and end == len(value):
        return value
    return value[start:end]


def forget_names() -> None:
    """Empty the tables (tests)."""
    _LOWER.clear()
    _FIELDS.clear()


__all__ = ["MAX_FIELDS", "MAX_FIELD_BYTES", "MAX_NAMES", "MAX_NAME_BYTES", "MAX_POSITIONS", "NameMemo", "forget_names",
           "header_field", "lower_name", "trim"]
