"""The trailer section of a chunked HTTP/1.1 answer, read from its last bytes (http/client_machine.py).

The reader cuts heads from the bytes itself rather than take a Python callback per header from the parser; the
trailer section is read the same way, and only when there is one: a chunked message ends with its last chunk
(`0`, perhaps with extensions), the trailer fields, then a blank line. Read backwards from the end, every line
up to the last chunk is a field: no field line can look like a last chunk (a field name is a token followed by
a colon), and none can hold a line break. Fields a trailer may not carry are dropped.
"""

from __future__ import annotations

import re
from typing import Final

from meshbatch.http.message import Headers
from meshbatch.http2.headers import NOT_IN_TRAILERS

NO_TRAILERS: Final = b"\n0\r\n\r\n"  # how a chunked message without trailers (nor extensions) ends
_LAST_CHUNK: Final = re.compile(rb"0+[ \t]*(;.*)?\Z")


def trailer_section(tail: bytes) -> Headers | None:
    """The trailer fields of a chunked message whose last bytes are `tail` (from before its last chunk to the
    blank line that ends it); None when it has none, or when `tail` does not reach back to the last chunk."""
    if tail.endswith(NO_TRAILERS) or not tail.endswith(b"\r\n\r\n"):
        return None
    fields: Headers = []
    for line in reversed(tail[:-4].split(b"\r\n")):
        if _LAST_CHUNK.match(line):
            fields.reverse()
            return [(name, value) for name, value in fields if name not in NOT_IN_TRAILERS] or None
        name, colon, value = line.partition(b":")
        if not colon:
            return None
        fields.append((name.lower(), value.strip(b" \t")))
    return None


__all__ = ["NO_TRAILERS", "trailer_section"]
