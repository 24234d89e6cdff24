"""`decode`: the body into events. JSON (one event, or one per element with `split_arrays`), NDJSON (one event
per non-blank line) or MessagePack; `auto` picks by Content-Type (JSON when absent or unknown).

Invalid data is a 400 naming the line or offset; more than `max_events` events a 413 (NDJSON stops splitting
at the first event too many, before decoding the rest); a value nested deeper than `max_depth` arrays and
objects a 400 `too_deep` (deep values are what make validators, transforms and encoders recurse).

NDJSON lines are found with one C-level regex scan that starts a match only at a non-blank character, so blank
lines (8 MiB of newlines inflates from 8 KB of gzip) cost a few nanoseconds a byte, not a Python iteration each.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgpack
import orjson

from meshbatch.config.plain import Decode
from meshbatch.errors import BadRequest, PayloadTooLarge
from meshbatch.pipeline.base import STAGE_FACTORIES, StageContext
from meshbatch.pipeline.work import Work

NDJSON_TYPES = (b"application/x-ndjson", b"application/ndjson", b"application/jsonl", b"application/x-jsonlines",
                b"application/jsonlines")
MSGPACK_TYPES = (b"application/msgpack", b"application/x-msgpack", b"application/vnd.msgpack")


def format_of(content_type: bytes | None) -> str:
    if content_type is None:
        return "json"
    media = content_type.split(b";", 1)[0].strip().lower()
    if media in NDJSON_TYPES:
        return "ndjson"
    if media in MSGPACK_TYPES:
        return "msgpack"
    return "json"


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("invalid_json", f"the body is not valid JSON ({exc.msg} at offset {exc.pos})") from None


# A line from its first non-blank character to its end: no nested repetition, so no backtracking; the scan
# between matches (blank bytes) stays in C.
_LINE = re.compile(rb"[^\s][^\n]*")


def _never() -> None:
    return None


def decode_ndjson(body: bytes, limit: int, tick: Callable[[], None] = _never, max_depth: int = 0,
                  deep: list[int] | None = None) -> list[Any]:
    """The events of the body's non-blank lines; `tick` is called before every eighth. With `deep`, the places of
    the events whose line holds more than `max_depth` brackets and braces are added to it: only these can nest
    deeper (`check_depth(only=...)`). A JSON value nested deeper than `max_depth` opens and closes at least
    `max_depth + 1` arrays or objects: a shorter line is not counted."""
    events: list[Any] = []
    loads = orjson.loads
    floor = 2 * (max_depth + 1)
    for match in _LINE.finditer(body):
        n = len(events)
        if n == limit:
            raise PayloadTooLarge("too_many_events", f"more than {limit} events in one request")
        if not n & 7:
            tick()
        line = match.group()
        if deep is not None and len(line) >= floor and line.count(b"[") + line.count(b"{") > max_depth:
            deep.append(n)
        try:
            events.append(loads(line))
        except orjson.JSONDecodeError as exc:
            number = body.count(b"\n", 0, match.start()) + 1
            raise BadRequest("invalid_json", f"line {number} is not valid JSON ({exc.msg})") from None
    return events


def depth(value: Any, limit: int) -> int:
    """How deep `value` nests arrays and objects (a scalar is 0, `{}` is 1), counting no further than
    `limit + 1`; iterative, so any depth the decoder produced is measured safely."""
    if not isinstance(value, dict | list):
        return 0
    deepest = 1
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, level + 1))
    return deepest


def check_depth(events: list[Any], body: bytes | None, limit: int, only: list[int] | None = None) -> None:
    """400 `too_deep` when an event nests deeper than `limit`. A JSON text with no more than `limit` brackets
    cannot (counted in C: the walk is skipped for nearly every body); `only`: the places of the events that can
    (`decode_ndjson`'s `deep`), the others are not walked."""
    if body is not None and body.count(b"[") + body.count(b"{") <= limit:
        return
    for index in range(len(events)) if only is None else only:
        if depth(events[index], limit) > limit:
            where = f"event {index}" if len(events) > 1 else "the event"
            raise BadRequest("too_deep", f"{where} nests arrays and objects more than {limit} levels deep")


def json_values(body: bytes) -> int:
    """An upper bound of the values a JSON or NDJSON body holds beyond one a line (each comma, bracket, brace and
    newline can start at most one), counted at C speed: what decoding and encoding it grows with, besides its
    bytes."""
    return body.count(b",") + body.count(b"[") + body.count(b"{") + body.count(b"\n")


def decode_msgpack(body: bytes) -> Any:
    try:
        value = msgpack.unpackb(body, raw=False, strict_map_key=True)
        orjson.dumps(value)  # events travel as JSON from here on: bytes, ext types or huge ints cannot
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise BadRequest("invalid_msgpack", f"the body is not valid MessagePack ({exc})") from None
    except TypeError as exc:
        raise BadRequest("invalid_msgpack", f"the MessagePack value has no JSON form ({exc})") from None
    return value


class DecodeStage:
    name = "decode"

    def __init__(self, options: Decode) -> None:
        self.format = options.format
        self.split = options.split_arrays
        self.limit = options.max_events
        self.max_depth = options.max_depth

    def format_for(self, content_type: bytes | None) -> str:
        """How a body of this Content-Type is decoded: the stage's format, or the type's under `auto`."""
        return self.format if self.format != "auto" else format_of(content_type)

    def textual(self, content_type: bytes | None) -> bool:
        """Whether a body of this Content-Type is decoded as JSON or NDJSON (not MessagePack)."""
        return self.format_for(content_type) != "msgpack"

    def __call__(self, work: Work) -> None:
        fmt = self.format_for(work.header(b"content-type"))
        if fmt == "ndjson":
            deep: list[int] = []
            events = decode_ndjson(work.body, self.limit, work.tick, self.max_depth, deep)
            if deep:
                check_depth(events, None, self.max_depth, deep)
            work.events = events
            return
        value = decode_msgpack(work.body) if fmt == "msgpack" else decode_json(work.body)
        events = value if self.split and isinstance(value, list) else [value]
        if len(events) > self.limit:
            raise PayloadTooLarge("too_many_events", f"{len(events)} events in one request (limit {self.limit})")
        check_depth(events, work.body if fmt != "msgpack" else None, self.max_depth)
        work.events = events


@STAGE_FACTORIES.register("decode")
def _factory(options: Decode, context: StageContext) -> DecodeStage:
    return DecodeStage(options)


__all__ = ["DecodeStage", "check_depth", "decode_json", "decode_msgpack", "decode_ndjson", "depth", "format_of",
           "json_values"]
