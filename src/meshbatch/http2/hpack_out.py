"""HPACK for answers without the dynamic table: each field is a static-table index, or a literal that is not
indexed, so a field's encoding depends on nothing but the field, and the encodings of the fields answers repeat
(`:status 200`, `content-type`, `server`, small `content-length`s) are kept and reused. Pure.

hpack's `Encoder` (what h2 uses) inserts fields into the dynamic table, searches it per field and Huffman-codes
every literal afresh: in pure Python that was the largest part of what an answer's HEADERS cost. nginx's encoder
makes the same choice (static table and literals only); the price is a few bytes per answer for the fields the
dynamic table would have shortened. RFC 7541 is kept: the peer's table-size changes (SETTINGS_HEADER_TABLE_SIZE)
are still signalled at the start of the next block, as hpack does; literals are Huffman-coded when that is
shorter, except never-indexed ones (`x-request-id`: unique to each answer, so not worth coding or keeping);
never-indexed fields stay never-indexed (RFC 7541 6.2.3).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from hpack import Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hpack.hpack import encode_integer
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

_HUFFMAN: Final = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
_EXACT: Final[dict[tuple[bytes, bytes], int]] = {}
_NAMES: Final[dict[bytes, int]] = {}
for _index, (_static_name, _static_value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _EXACT.setdefault((_static_name, _static_value), _index)
    _NAMES.setdefault(_static_name, _index)
MAX_KEPT: Final = 4096  # field encodings kept (per connection; names: per process); beyond it they start over
_NAME_KEPT: Final[dict[tuple[bytes, bool], bytes]] = {}


def _string(data: bytes, huffman: bool) -> bytes:
    if huffman:
        coded = _HUFFMAN.encode(data)
        if len(coded) < len(data):
            head = encode_integer(len(coded), 7)
            head[0] |= 0x80
            return bytes(head) + coded
    return bytes(encode_integer(len(data), 7)) + data


def encode_field(name: bytes, value: bytes, never_indexed: bool) -> bytes:
    """One field: indexed from the static table, else a literal without indexing (or never indexed)."""
    if not never_indexed:
        index = _EXACT.get((name, value))
        if index is not None:
            head = encode_integer(index, 7)
            head[0] |= 0x80
            return bytes(head)
    return _name(name, never_indexed) + _string(value, not never_indexed)


def _name(name: bytes, never_indexed: bool) -> bytes:
    """A literal's first byte(s) and its name: the static table's index of the name, else the name itself."""
    key = (name, never_indexed)
    found = _NAME_KEPT.get(key)
    if found is not None:
        return found
    flag = 0x10 if never_indexed else 0x00
    name_index = _NAMES.get(name)
    if name_index is not None:
        head = encode_integer(name_index, 4)
        head[0] |= flag
        found = bytes(head)
    else:
        found = bytes([flag]) + _string(name, True)
    if len(_NAME_KEPT) >= MAX_KEPT:
        _NAME_KEPT.clear()
    _NAME_KEPT[key] = found
    return found


def _bytes(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8")


class StaticEncoder(Encoder):
    """An hpack `Encoder` h2 can use (`conn.encoder`) that never touches the dynamic table; see the module
    docstring. The table-size bookkeeping (`header_table_size`, `table_size_changes`) is the base class's."""

    def __init__(self) -> None:
        super().__init__()
        self._kept: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        parts: list[bytes] = []
        if self.table_size_changes:
            parts.append(self._size_updates())
        kept = self._kept
        fields: Iterable[Any] = headers.items() if isinstance(headers, dict) else headers
        for field in fields:
            name, value = _bytes(field[0]), _bytes(field[1])
            if isinstance(field, NeverIndexedHeaderTuple) or (
                    len(field) > 2 and not isinstance(field, HeaderTuple) and field[2]):
                parts.append(encode_field(name, value, True))
                continue
            key = (name, value)
            encoded = kept.get(key)
            if encoded is None:
                if len(kept) >= MAX_KEPT:
                    kept.clear()
                encoded = kept[key] = encode_field(name, value, False)
            parts.append(encoded)
        return b"".join(parts)

    def _size_updates(self) -> bytes:
        """RFC 7541 6.3: the smallest size since the last block, then the current one (when they differ)."""
        changes = self.table_size_changes
        self.table_size_changes = []
        sizes = [min(changes)]
        if changes[-1] != sizes[0]:
            sizes.append(changes[-1])
        out = b""
        for size in sizes:
            head = encode_integer(size, 5)
            head[0] |= 0x20
            out += bytes(head)
        return out


__all__ = ["StaticEncoder", "encode_field"]
