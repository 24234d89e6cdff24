"""The HTTP version of a request, read from its request line instead of asked of httptools; and whether its
path needs normalising, found in one native pass.

httptools' `get_http_version()` formats a new string from llhttp's major and minor numbers for every request
(`'{}.{}'.format(...)`): a tenth of what reading a small request's head costs. When the bytes of one read
began with a request's first byte, and llhttp has accepted that request's head, the request line is whole in
them and ends at their first CRLF (a request line holds no CR or LF), its last eight bytes the version. Any
other case (the head began in an earlier read, a second request in the same read, CRLFs before the request
line) answers "" and the reader asks httptools.
"""

from __future__ import annotations

from typing import Final

_HTTP11: Final = b"HTTP/1.1"
_HTTP10: Final = b"HTTP/1.0"


def line_version(data: bytes, target_length: int) -> str:
    """"1.1" or "1.0": the version of the request line `data` begins with (see the module docstring), whose
    target is `target_length` bytes long; "": not known from `data`."""
    if not data or data[0] == 13 or data[0] == 10:  # CR, LF: llhttp skips them before a request line
        return ""
    # The line's CR comes after the method, a space and the target: looked for from there, natively (a `find`
    # call costs more than the few bytes of a version).
    end = len(data)
    at = target_length + 2
    while at < end and data[at] != 13:
        at += 1
    if at >= end or at < 8:
        return ""
    version = data[at - 8:at]
    if version == _HTTP11:
        return "1.1"
    if version == _HTTP10:
        return "1.0"
    return ""


# Bytes a path needing normalisation may hold (the set of http/paths.py): a path with none of them and no `//`
# or `/.` is left as it is, without a call.
_PATH_BYTES: Final = bytes(1 if c in b'%;#\\"<>[]^`{|}' or c <= 0x20 or c >= 0x7F else 0 for c in range(256))


def path_work(target: bytes) -> int:
    """Where the path of `target` ends (its `?`, else its length) when normalising may change it, else -1: one
    native pass up to the query, for a byte normalising acts on, or `//` or `/.`."""
    table = _PATH_BYTES
    end = len(target)
    work = False
    previous = 0
    for i in range(end):
        c = target[i]
        if c == 63:  # '?'
            end = i
            break
        if table[c] or (previous == 47 and (c == 47 or c == 46)):  # '//' or '/.'
            work = True
        previous = c
    return end if work else -1


__all__ = ["line_version", "path_work"]
