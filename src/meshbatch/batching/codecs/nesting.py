"""How deep a JSON body nests, checked on admission: every codec embeds an item's body in a bigger document.

A body that nests arrays and objects a thousand levels deep is valid JSON and cheap to send, but the batch that
carries it adds levels of its own (one for `json-array`, three for `envelope`), and many upstream parsers stop
at a fixed depth (often 512 or 1000) and refuse the whole batch: one caller's body would fail every caller
batched with it. So an item body may nest at most `MAX_DEPTH` levels (64: far beyond real payloads); deeper is
refused at the door with 400 `json_too_deep`, before it can share a batch.

The check runs on bytes, after the body parsed as JSON, in time linear in its size and cheap in the usual case:
a body with at most 64 `[` and `{` in all cannot nest deeper, whatever its strings hold. Otherwise the strings
are cut out (in valid JSON a backslash occurs only inside a string, where escapes pair from the left, so
removing `\\\\` then `\\"` leaves every remaining `"` a string delimiter), the brackets kept, and the deepest
running count of open brackets found with C-level iteration.
"""

from __future__ import annotations

from itertools import accumulate

MAX_DEPTH = 64

_BRACKETS = bytes.maketrans(b"{}", b"[]")  # objects and arrays count alike
_OTHERS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = 1
_STEP[ord("]")] = -1


def nesting_exceeds(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON document `body` nests arrays and objects more than `limit` levels deep (`1` and `"x"`
    nest 0 levels, `[1]` one, `{"a": [1]}` two). Meant for bodies that parsed as JSON; never raises."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    if b'"' in body:
        if b"\\" in body:
            body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
        body = b"".join(body.split(b'"')[::2])  # the even parts are outside strings
    brackets = body.translate(_BRACKETS, _OTHERS)
    if len(brackets) <= 2 * limit:  # too few pairs left to nest deeper
        return False
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


__all__ = ["MAX_DEPTH", "nesting_exceeds"]
