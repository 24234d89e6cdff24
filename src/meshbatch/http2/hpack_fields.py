"""HPACK fields for http2/hpack_out.py's `StaticEncoder`, compiled with the hot path: each field a static-table
index or a literal that is not indexed (see that module's docstring), and a block's fields encoded in one loop
with the encodings an encoder keeps. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from hpack import HeaderTuple, NeverIndexedHeaderTuple
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
_tuple_new: Final[Any] = tuple.__new__


def _string(data: bytes, huffman: bool) -> bytes:
    if huffman:
        coded = _HUFFMAN.encode(data)
        if len(coded) < len(data):
            head = encode_integer(len(coded), 7)
            head[0] |= 0x80
            return bytes(head) + coded
    size = len(data)
    if size < 127:  # (a length that fits its 7-bit prefix: one byte, without hpack's Python-level encode_integer)
        return bytes((size,)) + data
    return bytes(encode_integer(size, 7)) + data


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


def never_indexed(name: bytes, value: bytes) -> Any:
    """`NeverIndexedHeaderTuple(name, value)`, made without its Python-level `__new__` (which makes it so)."""
    return _tuple_new(NeverIndexedHeaderTuple, (name, value))


def _bytes(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8")


def encode_fields(kept: dict[tuple[bytes, bytes], bytes], headers: Any, prefix: bytes) -> bytes:
    """A header block: `prefix` (its table-size updates), then each field, from `kept` when encoded before (and
    kept there, up to `MAX_KEPT`) unless it is never indexed."""
    parts: list[bytes] = [prefix] if prefix else []
    fields: Iterable[Any] = headers.items() if isinstance(headers, dict) else headers
    for field in fields:
        kind = type(field)
        plain = (kind is tuple and len(field) == 2) or kind is HeaderTuple  # (an indexable pair: hpack's decoder
        if plain:  # gives HeaderTuple; a never-indexed field is another tuple subclass)
            encoded = kept.get(field)  # encoded before: its bytes at once (a str field is not kept as such)
            if encoded is not None:
                parts.append(encoded)
                continue
        name = _bytes(field[0])
        value = _bytes(field[1])
        if kind is NeverIndexedHeaderTuple or isinstance(field, NeverIndexedHeaderTuple) or (
                len(field) > 2 and not isinstance(field, HeaderTuple) and field[2]):
            parts.append(encode_field(name, value, True))
            continue
        # kept under the field itself when it is a pair of bytes: a block a decoder repeats gives the same tuple
        # again, found by identity (an equal tuple is compared element by element)
        key = field if plain and field[0] is name and field[1] is value else (name, value)
        encoded = kept.get(key)
        if encoded is None:
            if len(kept) >= MAX_KEPT:
                kept.clear()
            encoded = kept[key] = encode_field(name, value, False)
        parts.append(encoded)
    return b"".join(parts)




__all__ = ["MAX_KEPT", "encode_field", "encode_fields", "never_indexed"]
