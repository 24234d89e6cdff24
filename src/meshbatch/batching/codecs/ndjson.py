"""`ndjson`: one JSON document per line both ways (`application/x-ndjson`).

With `batch.stream_results`, a chunked answer is read line by line and each caller answered as its line
arrives (`decode_line`, batching/streaming.py); lines are matched to items in order.

Bytes travel as written, as with `json-array`: a body on several lines (pretty-printed) is put on one by turning
its line breaks into spaces, which in valid JSON can only be whitespace between tokens (a string cannot hold a
raw line break), and each caller gets its answer line's bytes unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from meshbatch.batching.codecs.answers import HTTP_REPLIES, NO_HEADERS
from meshbatch.batching.codecs.base import CODECS, ItemRequest, ItemResult
from meshbatch.batching.codecs.failures import JSON_HEADERS, failure, for_all, upstream_status
from meshbatch.batching.codecs.json_array import check_json, not_json, utf8
from meshbatch.http.message import Headers

if TYPE_CHECKING:
    from meshbatch.config.plain import Batch as BatchConfig

_DOCUMENT = msgspec.json.Decoder(msgspec.Raw)  # checks one document's syntax without building Python values


def _one_line(body: bytes) -> bytes:
    if b"\n" in body or b"\r" in body:
        return body.replace(b"\r", b" ").replace(b"\n", b" ").strip()
    return body


@CODECS.register("ndjson")
class NdjsonCodec:
    name = "ndjson"
    content_type = b"application/x-ndjson"
    forwards_headers = False
    request_headers: Headers = []
    replies = HTTP_REPLIES

    def __init__(self, config: BatchConfig | None = None) -> None:
        """No settings of its own: the same for every route."""

    def call_headers(self, timeout: float) -> Headers:
        return NO_HEADERS

    def check_item(self, item: ItemRequest) -> str | None:
        return check_json(item)

    def encode(self, items: Sequence[ItemRequest]) -> bytes:
        return b"\n".join([_one_line(item.body) for item in items]) + b"\n"

    def decode(self, status: int, headers: Headers, body: bytes, items: Sequence[ItemRequest]) -> list[ItemResult]:
        n = len(items)
        if not 200 <= status < 300:
            return for_all(upstream_status(status, headers), n)
        lines = [line for line in (raw.strip() for raw in body.split(b"\n")) if line]
        for number, line in enumerate(lines, 1):
            try:
                _DOCUMENT.decode(line)
            except (msgspec.DecodeError, RecursionError) as exc:
                return for_all(failure("upstream_not_json", not_json(exc, f"line {number} of the batch answer")), n)
        if not utf8(body):
            return for_all(failure("upstream_not_json", "the batch answer is not UTF-8"), n)
        if len(lines) != n:
            return for_all(failure("upstream_result_count",
                                   f"the batch had {n} items and the answer {len(lines)} lines"), n)
        return [ItemResult(200, line, JSON_HEADERS) for line in lines]

    def decode_line(self, number: int, line: bytes) -> ItemResult:
        """One line of a streamed answer (batching/streaming.py): its result, or a 502 for that item alone."""
        try:
            _DOCUMENT.decode(line)
        except (msgspec.DecodeError, RecursionError) as exc:
            return failure("upstream_not_json", not_json(exc, f"line {number} of the batch answer"))
        if not utf8(line):
            return failure("upstream_not_json", f"line {number} of the batch answer is not UTF-8")
        return ItemResult(200, line, JSON_HEADERS)


__all__ = ["NdjsonCodec"]
