"""`decode`: the body into events. JSON (one event, or one per element with `split_arrays`), NDJSON (one event
per non-blank line) or MessagePack; `auto` picks by Content-Type (JSON when absent or unknown).

Invalid data is a 400 naming the line or offset; more than `max_events` events a 413.
"""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from meshbatch.config.model import Decode
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


def decode_ndjson(body: bytes, limit: int) -> list[Any]:
    events: list[Any] = []
    loads = orjson.loads
    for number, line in enumerate(body.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            events.append(loads(line))
        except orjson.JSONDecodeError as exc:
            raise BadRequest("invalid_json", f"line {number} is not valid JSON ({exc.msg})") from None
        if len(events) > limit:
            raise PayloadTooLarge("too_many_events", f"more than {limit} events in one request")
    return events


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

    def __call__(self, work: Work) -> None:
        fmt = self.format if self.format != "auto" else format_of(work.header(b"content-type"))
        if fmt == "ndjson":
            events = decode_ndjson(work.body, self.limit)
        else:
            value = decode_msgpack(work.body) if fmt == "msgpack" else decode_json(work.body)
            events = value if self.split and isinstance(value, list) else [value]
        if len(events) > self.limit:
            raise PayloadTooLarge("too_many_events", f"{len(events)} events in one request (limit {self.limit})")
        work.events = events


@STAGE_FACTORIES.register("decode")
def _factory(options: Decode, context: StageContext) -> DecodeStage:
    return DecodeStage(options)


__all__ = ["DecodeStage", "decode_json", "decode_msgpack", "decode_ndjson", "format_of"]
