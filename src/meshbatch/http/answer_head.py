"""An upstream answer's head, read once per distinct head: its end-to-end fields and its framing.

An upstream answers the same route with the same head again and again (`Server`, `Content-Type`, the same
`Content-Length`; a `Date` that changes once a second), so the response reader (http/client_machine.py) looks
the head's bytes up here before splitting them: a head seen before costs one look-up, and hands back its fields
as a tuple of shared, immutable `(name, value)` tuples. A head not seen before is split line by line
(`header_field`, http/names.py), what frames the answer noted, and kept. The table is bounded (heads of at most
`MAX_HEAD_BYTES`, `MAX_HEADS` of them); once full it is emptied, and fills again with what is repeated.

Reading a head: names lower-cased, values trimmed; the hop-by-hop fields (and those the proxy sets itself) are
not end-to-end fields but frame the answer: `Content-Length` (llhttp has checked it is one run of digits),
`Transfer-Encoding` (chunked last: chunked framing; any other coding last: the answer ends when the connection
closes, RFC 9112 6.3, as llhttp reads it), `Connection` (the fields it names are hop-by-hop too).
"""

from __future__ import annotations

from typing import Final

from meshbatch.http.names import header_field
from meshbatch.http.serialize import HOP_BY_HOP, field_lines

MAX_HEADS: Final = 64
MAX_HEAD_BYTES: Final = 2048

_HOP_BY_HOP: Final = HOP_BY_HOP  # (a C static in the compiled module, not a look-up in its globals per field)


class AnswerHead:
    """What a head says: its end-to-end `fields`, its Content-Length (`length`, -1: none), whether it is framed
    (by a length or chunked), chunked, has a Transfer-Encoding (`coded`), and the Connection value that names
    further hop-by-hop fields (`named`, lower case; b"": none), and the fields encoded (`block`)."""

    __slots__ = ("block", "chunked", "coded", "fields", "framed", "length", "named")

    def __init__(self, fields: tuple[tuple[bytes, bytes], ...], length: int, framed: bool, chunked: bool,
                 coded: bool, named: bytes) -> None:
        self.fields = fields
        self.block = field_lines(fields)  # the fields as an HTTP/1.1 head carries them (see Response.head_block)
        self.length = length
        self.framed = framed
        self.chunked = chunked
        self.coded = coded
        self.named = named


_HEADS: Final[dict[bytes, AnswerHead]] = {}


def answer_head(head: bytes) -> AnswerHead:
    """The head `head` (its status line and header lines, without the blank line that ends it) read."""
    known = _HEADS.get(head)
    if known is not None:
        return known
    lines = head.split(b"\r\n")
    fields: list[tuple[bytes, bytes]] = []
    length = -1
    framed = chunked = coded = False
    named = b""
    for i in range(1, len(lines)):  # (after the status line)
        field = header_field(lines[i])
        name = field[0]
        if name not in _HOP_BY_HOP:
            fields.append(field)
            continue
        value = field[1]
        if name == b"content-length":
            framed = True
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = framed = value.lower().endswith(b"chunked")
            coded = True
        elif name == b"connection" and value != b"keep-alive" and value != b"close" and \
                value.lower() not in (b"keep-alive", b"close"):  # (the usual spellings without lowering)
            named = value.lower()
    read = AnswerHead(tuple(fields), length, framed, chunked, coded, named)
    if len(head) <= MAX_HEAD_BYTES:
        if len(_HEADS) >= MAX_HEADS:
            _HEADS.clear()
        _HEADS[head] = read
    return read


def forget_heads() -> None:
    """Empty the table (tests)."""
    _HEADS.clear()


__all__ = ["MAX_HEADS", "MAX_HEAD_BYTES", "AnswerHead", "answer_head", "forget_heads"]
