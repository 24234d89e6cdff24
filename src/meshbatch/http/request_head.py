"""A request's header section, read once per distinct section: its fields, and those fields as header lines.

A caller sends the same header section again and again (`Host`, `User-Agent`, `Accept`, ... in the same order
with the same values), so when one read holds a request's whole head the reader (http/parser.py) looks the
section's bytes up here instead of taking a Python callback from httptools per field. A section seen before
hands back its fields as a tuple of `(name, value)` tuples (immutable: every request gets its own list of them);
one not seen before is cut line by line and kept. The table is bounded (sections of at most `MAX_SECTION_BYTES`,
`MAX_SECTIONS` of them) and emptied when full, so that changing sections (a per-request id or trace header)
cannot crowd out the repeated ones.

A section's fields are as httptools hands them to a callback: names lower-cased here, values with the spaces
and tabs before them dropped and those after them kept (llhttp's spans). Cutting trusts nothing: llhttp still
reads every byte of the head and refuses what it refuses; a section that could not be a valid one (a line
without a colon, a Content-Length that is not one run of digits) is not cut at all, and the reader takes
httptools' callbacks instead.

The fields also keep their header lines, encoded once (`block`): the request's head to the upstream writes them
as one piece while its headers still begin with those very tuples (`known_block`), as an answer's head does
(http/answer_head.py). The tuples of a section are its own (never shared with another section), so the first
one says which section a list of headers may begin with.

The fields a proxy appends to a request it forwards are the same for every request of a caller that sent none of
its own (`x-forwarded-for: <peer>`, `x-forwarded-proto`, `via`): `forwarding` hands out the same three tuples, and
their lines encoded once, for the same three values (bounded as the sections are), and `known_tail` finds them
at the end of a list of headers by the identity of the first.
"""

from __future__ import annotations

from typing import Final, cast

from meshbatch.http.fields import OWN_PREFIX, SINGLETONS
from meshbatch.http.message import Headers
from meshbatch.http.names import lower_name

MAX_SECTIONS: Final = 64
MAX_SECTION_BYTES: Final = 2048

# What proxies in front say about the original request besides x-forwarded-for: believed only through them.
FORWARDED: Final = frozenset({b"forwarded", b"x-forwarded-host", b"x-forwarded-port", b"x-real-ip"})
# Fields the reader acts on (http/parser.py `_watched`) beyond the proxy's own x-meshbatch-* ones.
WATCHED: Final = SINGLETONS | {b"host", b"connection", b"x-forwarded-for", b"tracestate", b"upgrade",
                               b"http2-settings"} | FORWARDED
_OWN_PREFIX: Final = OWN_PREFIX


def _lines(fields: tuple[tuple[bytes, bytes], ...]) -> bytes:
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(name)
        parts.append(b": ")
        parts.append(value)
        parts.append(b"\r\n")
    return b"".join(parts)


class RequestHead:
    """A header section read: its `fields`, the positions of those the reader acts on (`watched`), its size as
    the reader counts it (`size`: name, value and 4 per field) and its fields as header lines (`block`, made when
    first asked for by `known_block`)."""

    __slots__ = ("block", "fields", "kept", "size", "watched")

    def __init__(self, fields: tuple[tuple[bytes, bytes], ...], watched: tuple[int, ...], size: int) -> None:
        self.fields = fields
        self.watched = watched
        self.size = size
        self.block = b""
        self.kept = -1  # the tables' age when it was kept (see `still_kept`)


_SECTIONS: Final[dict[bytes, RequestHead]] = {}
# The sections kept, by the identity of their first field (alive while kept here: an id is never reused meanwhile).
_FIRST: Final[dict[int, RequestHead]] = {}
_AGE: Final[list[int]] = [0]  # how many times the tables were emptied


def _keep(section: bytes, read: RequestHead) -> None:
    if len(_SECTIONS) >= MAX_SECTIONS:
        _SECTIONS.clear()
        _FIRST.clear()
        _AGE[0] += 1
    _SECTIONS[section] = read
    read.kept = _AGE[0]
    if read.fields:  # (the tuple itself, as an object: a compiled `fields[0]` would be a new box of it)
        _FIRST[id(cast("tuple[object, ...]", read.fields)[0])] = read


def still_kept(section: bytes, head: RequestHead) -> None:
    """`head`, the section `section` read and held by a connection, kept again if the tables were emptied since."""
    if head.kept != _AGE[0]:
        _keep(section, head)


def known_section(section: bytes) -> RequestHead | None:
    """The header section `section` as kept, if it is."""
    return _SECTIONS.get(section)


def request_head(section: bytes) -> RequestHead | None:
    """The header section `section` (the lines between the request line and the blank line, without the CRLF
    that ends the last one) read; None when it is not cut (see the module docstring)."""
    known = _SECTIONS.get(section)
    if known is not None:
        return known
    fields: list[tuple[bytes, bytes]] = []
    watched: list[int] = []
    size = 0
    if section:
        for line in section.split(b"\r\n"):
            end = len(line)
            colon = 0
            while colon < end and line[colon] != 58:  # ':', found natively (a `find` call costs more)
                colon += 1
            if colon == 0 or colon == end:
                return None
            name = lower_name(line[:colon])
            start = colon + 1
            while start < end and (line[start] == 32 or line[start] == 9):  # SP, HTAB: dropped before a value
                start += 1
            value = line[start:]
            if name in WATCHED or (len(name) > 12 and name.startswith(_OWN_PREFIX)):
                if name == b"content-length" and not value.isdigit():
                    return None
                watched.append(len(fields))
            fields.append((name, value))
            size += colon + len(value) + 4
    read = RequestHead(tuple(fields), tuple(watched), size)
    if len(section) <= MAX_SECTION_BYTES:
        _keep(section, read)
    return read


def known_block(headers: Headers) -> RequestHead | None:
    """The kept section whose very field tuples `headers` begins with, if any."""
    # As objects: the compiled build would unpack each (bytes, bytes) into a C struct and box it again, a new tuple.
    rows = cast("list[object]", headers)
    if not rows:
        return None
    head = _FIRST.get(id(rows[0]))
    if head is None:
        return None
    fields = head.fields
    count = len(fields)
    if count > len(rows):
        return None
    same = cast("tuple[object, ...]", fields)
    for i in range(count):
        if rows[i] is not same[i]:
            return None
    if not head.block:
        head.block = _lines(fields)
    return head


MAX_TAILS: Final = 256

_TAILS: Final[dict[tuple[str, bytes, bytes], RequestHead]] = {}
_TAIL_FIRST: Final[dict[int, RequestHead]] = {}


def forwarding(peer: str, proto: bytes, via: bytes) -> RequestHead:
    """The fields `x-forwarded-for: <peer>`, `x-forwarded-proto: <proto>` and `via: <via>`, the same tuples for the
    same values."""
    key = (peer, proto, via)
    known = _TAILS.get(key)
    if known is not None:
        return known
    tail = RequestHead(((b"x-forwarded-for", peer.encode()), (b"x-forwarded-proto", proto), (b"via", via)), (), 0)
    tail.block = _lines(tail.fields)
    if len(_TAILS) >= MAX_TAILS:
        _TAILS.clear()
        _TAIL_FIRST.clear()
    _TAILS[key] = tail
    _TAIL_FIRST[id(cast("tuple[object, ...]", tail.fields)[0])] = tail
    return tail


def known_tail(headers: Headers) -> RequestHead | None:
    """The `forwarding` fields `headers` ends with (those very tuples), if any."""
    rows = cast("list[object]", headers)
    count = len(rows)
    if count < 3:
        return None
    tail = _TAIL_FIRST.get(id(rows[count - 3]))
    if tail is None:
        return None
    same = cast("tuple[object, ...]", tail.fields)
    if rows[count - 2] is not same[1] or rows[count - 1] is not same[2]:
        return None
    return tail


def forget_sections() -> None:
    """Empty the tables (tests)."""
    _SECTIONS.clear()
    _FIRST.clear()
    _TAILS.clear()
    _TAIL_FIRST.clear()


__all__ = ["FORWARDED", "MAX_SECTIONS", "MAX_SECTION_BYTES", "MAX_TAILS", "WATCHED", "RequestHead", "forget_sections",
           "forwarding", "known_block", "known_section", "known_tail", "request_head", "still_kept"]
