"""`json-array`: the batch is a JSON array of the callers' bodies; the answer, an array of as many results.

Both ways the bytes travel as written: item bodies are spliced into the array unchanged, and each caller gets
exactly the bytes of its element of the answer (msgspec's `Raw` marks where each one starts and ends, without
parsing it into Python values): integers beyond 64 bits, `1.0` against `1`, `-0.0` and `\\u` escapes reach the
caller as the upstream wrote them, never re-serialised.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec
import orjson

from meshbatch.batching.codecs.answers import HTTP_REPLIES, NO_HEADERS
from meshbatch.batching.codecs.base import CODECS, ItemRequest, ItemResult, Refusal
from meshbatch.batching.codecs.failures import JSON_HEADERS, failure, for_all, json_error, upstream_status
from meshbatch.batching.codecs.nesting import MAX_DEPTH, nesting_exceeds
from meshbatch.http.message import Headers

if TYPE_CHECKING:
    from meshbatch.config.plain import Batch as BatchConfig

_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])
_GOT = re.compile(r"got `(\w+)`")


def check_json(item: ItemRequest) -> str | None:
    """Why the item body cannot travel as JSON in a batch, or None."""
    body = item.body
    # The bracket count inline (a call less per request): at most MAX_DEPTH of them cannot nest deeper.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and nesting_exceeds(body):
        return Refusal(f"the body nests arrays and objects more than {MAX_DEPTH} levels deep", "json_too_deep")
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"the body is not valid JSON ({json_error(exc)})"
    return None


def utf8(body: bytes) -> bool:
    """Whether an answer is UTF-8, as JSON must be (raw values are passed on unparsed, so this is checked here)."""
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def not_json(exc: Exception, what: str = "the batch answer") -> str:
    if isinstance(exc, RecursionError):
        return f"{what} is not JSON the proxy can read (nested too deeply)"
    return f"{what} is not JSON ({json_error(exc)})"


def json_kind(exc: msgspec.ValidationError) -> str:
    """`object`, `string`... from msgspec's 'Expected `array`, got `object`'."""
    match = _GOT.search(str(exc))
    return match.group(1) if match else "value"


@CODECS.register("json-array")
class JsonArrayCodec:
    name = "json-array"
    content_type = b"application/json"
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
        # Bodies were checked to be JSON on admission: splice them, never parse and re-serialise.
        return b"[" + b",".join([item.body for item in items]) + b"]"

    def decode(self, status: int, headers: Headers, body: bytes, items: Sequence[ItemRequest]) -> list[ItemResult]:
        n = len(items)
        if not 200 <= status < 300:
            return for_all(upstream_status(status, headers), n)
        try:
            elements = _ELEMENTS.decode(body)
        except msgspec.ValidationError as exc:  # JSON, but not an array
            return for_all(failure("upstream_not_array",
                                   f"the batch answer is a JSON {json_kind(exc)}, not an array"), n)
        except (msgspec.DecodeError, RecursionError) as exc:
            return for_all(failure("upstream_not_json", not_json(exc)), n)
        if not utf8(body):
            return for_all(failure("upstream_not_json", "the batch answer is not UTF-8"), n)
        if len(elements) != n:
            return for_all(failure("upstream_result_count",
                                   f"the batch had {n} items and the answer {len(elements)} results"), n)
        return [ItemResult(200, bytes(raw), JSON_HEADERS) for raw in elements]


__all__ = ["JsonArrayCodec", "check_json", "json_kind", "not_json", "utf8"]
