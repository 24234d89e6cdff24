"""HPACK decoding that remembers the header blocks a peer repeats. Pure (state per connection).

A block made only of indexed fields and literals that are not indexed (no insertion into the dynamic table, no
table size update) changes nothing in the decoder: decoding the same bytes again, with the table as it was, gives
the same fields. Clients repeat such blocks all the time: once nghttp2, grpc or a browser has put a request's
fields into the table, the next request to the same place is the same few index bytes; an upstream's answers
repeat too when its encoder does (one that indexes fields afresh in each answer is decoded as before).
`RepeatDecoder` keeps the fields of such blocks by their bytes and answers a repeat from there; any change to the
table, and any change to the limits the decoder checks, forgets them all, so an answer never comes from a table
that is gone.

Bounded: blocks of at most `MAX_BLOCK` bytes and `MAX_FIELDS` fields, at most `MAX_KEPT` of them per connection
(beyond: forgotten and started over); what a hostile peer gains by sending many different blocks is nothing.
"""

from __future__ import annotations

from typing import Any, Final, cast

from hpack import Decoder
from hpack.table import HeaderTable, table_entry_size

from meshbatch.http2.hpack_kept import kept_now

MAX_BLOCK: Final = 512
MAX_FIELDS: Final = 32
MAX_KEPT: Final = 16


class CountedTable(HeaderTable):
    """hpack's table, counting its changes (insertions, size changes). What changes nothing is not counted: an
    entry too large for a table that is empty already (every insertion, for a peer whose table size is 0, as
    nginx's answers are), a size set to what it was."""

    def __init__(self) -> None:
        super().__init__()
        self.changes = 0

    def add(self, name: bytes, value: bytes) -> None:
        if self.dynamic_entries or table_entry_size(name, value) <= self._maxsize:
            self.changes += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        if int(newmax) != self._maxsize:
            self.changes += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class RepeatDecoder(Decoder):
    """An hpack `Decoder` (h2's `conn.decoder`) that answers repeated blocks from memory; see the module
    docstring."""

    def __init__(self) -> None:
        super().__init__()
        table = self.header_table = CountedTable()
        self.max_allowed_table_size = table.maxsize
        self._kept: dict[bytes, list[Any]] = {}
        self._state: tuple[int, int, int] = (-1, 0, 0)

    def decode(self, data: bytes, raw: bool = False) -> Any:
        if not raw or len(data) > MAX_BLOCK:
            return super().decode(data, raw)
        table = self.header_table
        assert isinstance(table, CountedTable)
        kept = kept_now(self)
        key = data if type(data) is bytes else bytes(data)
        found = kept.get(key)
        if found is not None:
            return list(found)
        changes = table.changes
        headers = cast(list[Any], super().decode(key, raw))  # (a list, whatever its annotation)
        if table.changes == changes and len(headers) <= MAX_FIELDS:  # (decoding changed nothing)
            if len(kept) >= MAX_KEPT:
                kept.clear()
            kept[key] = list(headers)
        return headers


__all__ = ["MAX_BLOCK", "MAX_FIELDS", "MAX_KEPT", "CountedTable", "RepeatDecoder"]
