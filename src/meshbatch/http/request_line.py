"""The HTTP version of a request, read from its request line instead of asked of httptools.

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


__all__ = ["line_version"]
