"""`ndjson`: one JSON document per line both ways (`application/x-ndjson`)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from meshbatch.batching.codecs.base import CODECS, ItemRequest, ItemResult
from meshbatch.batching.codecs.failures import JSON_HEADERS, failure, for_all, json_error, upstream_status
from meshbatch.batching.codecs.json_array import check_json
from meshbatch.http.message import Headers


def _one_line(body: bytes) -> bytes:
    # A pretty-printed body would break the framing; newlines in valid JSON are whitespace only.
    if b"\n" in body or b"\r" in body:
        return orjson.dumps(orjson.loads(body))
    return body


@CODECS.register("ndjson")
class NdjsonCodec:
    name = "ndjson"
    content_type = b"application/x-ndjson"
    forwards_headers = False

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
                orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                return for_all(failure("upstream_not_json",
                                       f"line {number} of the batch answer is not JSON ({json_error(exc)})"), n)
        if len(lines) != n:
            return for_all(failure("upstream_result_count",
                                   f"the batch had {n} items and the answer {len(lines)} lines"), n)
        return [ItemResult(200, line, JSON_HEADERS) for line in lines]


__all__ = ["NdjsonCodec"]
