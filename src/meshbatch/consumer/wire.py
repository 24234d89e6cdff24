"""The consumer's side of the batch wire formats: parse a batch request, render one answer per item.

The three shapes are the proxy's (`meshbatch.batching.codecs`), seen from the upstream. Per item:
- `json-array` and `ndjson` carry only a body, so a failed item becomes the JSON object
  `{"status": 422, "error": <the ItemError body>}` in its place (its caller still gets HTTP 200; use the
  envelope codec when callers need their own status);
- `envelope` carries each item's status, headers and body.

JSON is read and written with msgspec, so numbers keep their value both ways: an integer beyond 64 bits reaches
the handler as an `int` (not a float rounded to 53 bits) and a handler may answer with one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from meshbatch.registry import Extensions


class WireError(Exception):
    """The batch request cannot be read (answered 400 with this reason)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Reply:
    """One item's normalised answer."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class Wire(Protocol):
    name: str
    content_type: bytes

    def parse(self, body: bytes) -> tuple[list[Any], list[str]]:
        """(item bodies, item ids) of a batch request; raises WireError."""
        ...

    def render(self, replies: Sequence[Reply], ids: Sequence[str]) -> bytes: ...


WIRES: Extensions[type[Wire]] = Extensions("consumer codec")


def _loads(body: bytes, what: str) -> Any:
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise WireError("invalid_json", f"{what} is not JSON ({str(exc).splitlines()[0][:200]})") from None
    except RecursionError:
        raise WireError("invalid_json", f"{what} nests too deeply to be read") from None


dumps = msgspec.json.encode


def _plain(reply: Reply) -> Any:
    return reply.body if reply.status < 400 else {"status": reply.status, "error": reply.body}


@WIRES.register("json-array")
class JsonArrayWire:
    name = "json-array"
    content_type = b"application/json"

    def parse(self, body: bytes) -> tuple[list[Any], list[str]]:
        items = _loads(body, "the batch")
        if not isinstance(items, list):
            raise WireError("not_an_array", "a json-array batch is a JSON array")
        return items, [str(i) for i in range(1, len(items) + 1)]

    def render(self, replies: Sequence[Reply], ids: Sequence[str]) -> bytes:
        return dumps([_plain(reply) for reply in replies])


@WIRES.register("ndjson")
class NdjsonWire:
    name = "ndjson"
    content_type = b"application/x-ndjson"

    def parse(self, body: bytes) -> tuple[list[Any], list[str]]:
        lines = [line for line in (raw.strip() for raw in body.split(b"\n")) if line]
        items = [_loads(line, f"line {number}") for number, line in enumerate(lines, 1)]
        return items, [str(i) for i in range(1, len(items) + 1)]

    def render(self, replies: Sequence[Reply], ids: Sequence[str]) -> bytes:
        return b"".join(dumps(_plain(reply)) + b"\n" for reply in replies)


@WIRES.register("envelope")
class EnvelopeWire:
    name = "envelope"
    content_type = b"application/json"

    def parse(self, body: bytes) -> tuple[list[Any], list[str]]:
        data = _loads(body, "the batch")
        requests = data.get("requests") if isinstance(data, dict) else None
        if not isinstance(requests, list):
            raise WireError("not_an_envelope", 'an envelope batch is {"requests": [...]}')
        items: list[Any] = []
        ids: list[str] = []
        for number, request in enumerate(requests, 1):
            if not isinstance(request, dict) or "id" not in request:
                raise WireError("missing_id", f"request {number} of the envelope has no id")
            ids.append(str(request["id"]))
            items.append(request.get("body"))
        return items, ids

    def render(self, replies: Sequence[Reply], ids: Sequence[str]) -> bytes:
        responses = []
        for item_id, reply in zip(ids, replies, strict=True):
            entry: dict[str, Any] = {"id": item_id, "status": reply.status}
            if reply.headers:
                entry["headers"] = reply.headers
            if reply.body is not None:
                entry["body"] = reply.body
            responses.append(entry)
        return dumps({"responses": responses})


__all__ = ["WIRES", "EnvelopeWire", "JsonArrayWire", "NdjsonWire", "Reply", "Wire", "WireError", "dumps"]
