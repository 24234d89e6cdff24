"""`json-array`: the batch is a JSON array of the callers' bodies; the answer, an array of as many results."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from meshbatch.batching.codecs.base import CODECS, ItemRequest, ItemResult
from meshbatch.batching.codecs.failures import JSON_HEADERS, failure, for_all, json_error, upstream_status
from meshbatch.http.message import Headers


def check_json(item: ItemRequest) -> str | None:
    try:
        orjson.loads(item.body)
    except orjson.JSONDecodeError as exc:
        return f"the body is not valid JSON ({json_error(exc)})"
    return None


@CODECS.register("json-array")
class JsonArrayCodec:
    name = "json-array"
    content_type = b"application/json"
    forwards_headers = False

    def check_item(self, item: ItemRequest) -> str | None:
        return check_json(item)

    def encode(self, items: Sequence[ItemRequest]) -> bytes:
        # Bodies were checked to be JSON on admission: splice them, never parse and re-serialise.
        return b"[" + b",".join([item.body for item in items]) + b"]"

    def decode(self, status: int, headers: Headers, body: bytes, items: Sequence[ItemRequest]) -> list[ItemResult]:
        n = len(items)
        if not 200 <= status < 300:
            return for_all(upstream_status(status, headers), n)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return for_all(failure("upstream_not_json", f"the batch answer is not JSON ({json_error(exc)})"), n)
        if not isinstance(data, list):
            return for_all(failure("upstream_not_array",
                                   f"the batch answer is a JSON {type(data).__name__}, not an array"), n)
        if len(data) != n:
            return for_all(failure("upstream_result_count",
                                   f"the batch had {n} items and the answer {len(data)} results"), n)
        dumps = orjson.dumps
        return [ItemResult(200, dumps(value), JSON_HEADERS) for value in data]


__all__ = ["JsonArrayCodec", "check_json"]
