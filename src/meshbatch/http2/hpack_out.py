"""HPACK for answers without the dynamic table: each field is a static-table index, or a literal that is not
indexed, so a field's encoding depends on nothing but the field, and the encodings of the fields answers repeat
(`:status 200`, `content-type`, `server`, small `content-length`s) are kept and reused. Pure.

hpack's `Encoder` (what h2 uses) inserts fields into the dynamic table, searches it per field and Huffman-codes
every literal afresh: in pure Python that was the largest part of what an answer's HEADERS cost. nginx's encoder
makes the same choice (static table and literals only); the price is a few bytes per answer for the fields the
dynamic table would have shortened. RFC 7541 is kept: the peer's table-size changes (SETTINGS_HEADER_TABLE_SIZE)
are still signalled at the start of the next block, as hpack does; literals are Huffman-coded when that is
shorter, except never-indexed ones (`x-request-id`: unique to each answer, so not worth coding or keeping);
never-indexed fields stay never-indexed (RFC 7541 6.2.3). The fields are encoded by http2/hpack_fields.py
(compiled with the hot path; this class, a subclass of hpack's, stays pure Python).
"""

from __future__ import annotations

from typing import Any

from hpack import Encoder
from hpack.hpack import encode_integer

from meshbatch.http2.hpack_fields import encode_field, encode_fields


class StaticEncoder(Encoder):
    """An hpack `Encoder` h2 can use (`conn.encoder`) that never touches the dynamic table; see the module
    docstring. The table-size bookkeeping (`header_table_size`, `table_size_changes`) is the base class's."""

    def __init__(self) -> None:
        super().__init__()
        self._kept: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return encode_fields(self._kept, headers, self._size_updates() if self.table_size_changes else b"")

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
