"""`envelope`: the JSON batching shape of Microsoft Graph / OData, with a status, headers and body per item.

    request  {"requests":  [{"id": "1", "method": "POST", "url": "/orders", "headers": {...}, "body": ...}]}
    answer   {"responses": [{"id": "1", "status": 201, "headers": {...}, "body": ...}]}

Answers are matched by id in any order. An item body that is JSON travels as JSON, whatever its content type,
as every codec reads it: `curl -d '{"sku": "A1"}'` labels its body `application/x-www-form-urlencoded`, and the
upstream gets the object `{"sku": "A1"}` (labelled `application/json` in the entry's headers, since that is what
the entry's body now is), not the string `"{\"sku\": \"A1\"}"`. A body with a JSON content type must be JSON
(else 400); any other body that is not JSON (a form `a=1&b=2`, plain text) travels as a JSON string with its own
content type, so it must be UTF-8 text. An answer missing for one id fails only
that caller (502 `missing_item_result`), and so does a response with a status that is not a final one (200-599,
`bad_item_status`) or headers that are not safe to write (`bad_item_headers`); a non-2xx or unreadable batch
answer fails every caller.

Bodies travel as written: a JSON item body is spliced into its request entry unchanged, and a JSON response body
reaches its caller as the exact bytes the upstream wrote (each entry's `body` is decoded as msgspec's `Raw`);
only a JSON string sent with a non-JSON content type is unquoted into its text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from meshbatch.batching.codecs.answers import HTTP_REPLIES, NO_HEADERS
from meshbatch.batching.codecs.base import CODECS, ItemRequest, ItemResult
from meshbatch.batching.codecs.failures import JSON_HEADERS, failure, for_all, upstream_status
from meshbatch.batching.codecs.json_array import check_json, not_json, utf8
from meshbatch.http.message import Headers

if TYPE_CHECKING:
    from meshbatch.config.plain import Batch as BatchConfig

# Headers that describe one hop or the proxy's own controls: never copied into or out of an envelope item.
HOP_HEADERS = frozenset({
    b"connection", b"content-length", b"expect", b"host", b"keep-alive", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
_HOP_NAMES = frozenset(name.decode() for name in HOP_HEADERS)


def end_to_end(headers: Headers) -> Headers:
    """The caller's headers worth forwarding inside an envelope item."""
    return [(n, v) for n, v in headers if n not in HOP_HEADERS and not n.startswith(b"x-meshbatch-")]


def _is_json_type(content_type: bytes | str | None) -> bool:
    if content_type is None:
        return True
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "" or media.endswith("/json") or media.endswith("+json")


def _content_type(headers: Headers) -> bytes | None:
    for name, value in headers:
        if name == b"content-type":
            return value
    return None


_JSON_TYPE = b"application/json"


def _labelled_json(headers: Headers) -> None:
    """Relabel an item whose body travels as JSON: its entry's content type says what its body is."""
    for index, (name, _) in enumerate(headers):
        if name == b"content-type":
            headers[index] = (name, _JSON_TYPE)


def _header_object(headers: Headers) -> bytes:
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return orjson.dumps(out)


def _encode_item(item: ItemRequest) -> bytes:
    head = b'{"id":' + orjson.dumps(item.id) + b',"method":' + orjson.dumps(item.method.decode("latin-1")) \
        + b',"url":' + orjson.dumps(item.path.decode("latin-1")) + b',"headers":' + _header_object(item.headers)
    if not item.body:
        return head + b"}"
    if _is_json_type(_content_type(item.headers)):
        return head + b',"body":' + item.body + b"}"
    return head + b',"body":' + orjson.dumps(item.body.decode("utf-8")) + b"}"


class _EnvelopeAnswer(msgspec.Struct):
    responses: list[msgspec.Raw]


class _Entry(msgspec.Struct):
    """One response of the answer. Loosely typed on purpose: a bad status or headers fail only its own caller."""

    id: Any = msgspec.UNSET
    status: Any = None
    headers: Any = None
    body: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_ANSWER = msgspec.json.Decoder(_EnvelopeAnswer)
_ENTRY = msgspec.json.Decoder(_Entry)
_NULL = b"null"


# RFC 9110: a field name is a token; a field value has no CR, LF, NUL or other controls but HTAB. An item's
# headers come from JSON, not from a parsed HTTP head, so they are checked here: written as they are, a CR LF
# in a value would let an upstream add headers to (or split) the caller's response.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _item_headers(entry: _Entry, raw_headers: dict[Any, Any]) -> Headers | ItemResult:
    headers: Headers = []
    for raw_name, raw_value in raw_headers.items():
        name = str(raw_name)
        if not _TOKEN.fullmatch(name):
            return failure("bad_item_headers", f"response {entry.id!r} has a header named {name!r}")
        if isinstance(raw_value, str):
            value = raw_value
        elif isinstance(raw_value, int | float) and not isinstance(raw_value, bool):
            value = str(raw_value)
        else:
            return failure("bad_item_headers",
                           f"response {entry.id!r} has header {name!r} that is not a string")
        if _BAD_VALUE.search(value):
            return failure("bad_item_headers",
                           f"response {entry.id!r} has header {name!r} with a control character")
        lower = name.lower()
        if lower in _HOP_NAMES or lower.startswith("x-meshbatch-"):  # hop-by-hop, or the proxy's own
            continue
        headers.append((lower.encode("ascii"), value.strip(" \t").encode("latin-1", "replace")))
    return headers


def _result(entry: _Entry) -> ItemResult:
    status = entry.status
    # 1xx is never a final answer: sent to the caller as one, it would wait for another that never comes.
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        return failure("bad_item_status", f"response {entry.id!r} has status {status!r}")
    raw_headers = entry.headers
    if raw_headers is None:
        raw_headers = {}
    if not isinstance(raw_headers, dict):
        return failure("bad_item_headers", f"response {entry.id!r} has headers that are not an object")
    headers = _item_headers(entry, raw_headers)
    if isinstance(headers, ItemResult):
        return headers
    raw = entry.body
    if isinstance(raw, msgspec.UnsetType):
        return ItemResult(status, b"", headers)
    body = bytes(raw)
    if body == _NULL:
        return ItemResult(status, b"", headers)
    content_type = _content_type(headers)
    if body[:1] == b'"' and not _is_json_type(content_type):  # text carried as a JSON string: its text
        return ItemResult(status, msgspec.json.decode(body, type=str).encode("utf-8"), headers)
    if content_type is None:
        headers.extend(JSON_HEADERS)
    return ItemResult(status, body, headers)


@CODECS.register("envelope")
class EnvelopeCodec:
    name = "envelope"
    content_type = b"application/json"
    forwards_headers = True
    request_headers: Headers = []
    replies = HTTP_REPLIES

    def __init__(self, config: BatchConfig | None = None) -> None:
        """No settings of its own: the same for every route."""

    def call_headers(self, timeout: float) -> Headers:
        return NO_HEADERS

    def check_item(self, item: ItemRequest) -> str | None:
        """As the other codecs: a JSON body is JSON whatever its label (relabelled `application/json` in the
        item's headers, a list of its own); a JSON-labelled body must be JSON; other text travels as a string."""
        if not item.body:
            return None
        if _is_json_type(_content_type(item.headers)):
            return check_json(item)
        try:
            orjson.loads(item.body)
        except orjson.JSONDecodeError:  # text: travels as a JSON string
            try:
                item.body.decode("utf-8")
            except UnicodeDecodeError:
                return "a non-JSON body must be UTF-8 text to travel in an envelope"
            return None
        problem = check_json(item)  # JSON under another label: the same bounds as any JSON body
        if problem is None:
            _labelled_json(item.headers)
        return problem

    def encode(self, items: Sequence[ItemRequest]) -> bytes:
        return b'{"requests":[' + b",".join([_encode_item(item) for item in items]) + b"]}"

    def decode(self, status: int, headers: Headers, body: bytes, items: Sequence[ItemRequest]) -> list[ItemResult]:
        n = len(items)
        if not 200 <= status < 300:
            return for_all(upstream_status(status, headers), n)
        try:
            answer = _ANSWER.decode(body)
        except msgspec.ValidationError:  # JSON, but not an object with a "responses" array
            return for_all(failure("upstream_not_envelope", 'the batch answer has no "responses" array'), n)
        except (msgspec.DecodeError, RecursionError) as exc:
            return for_all(failure("upstream_not_json", not_json(exc)), n)
        if not utf8(body):
            return for_all(failure("upstream_not_json", "the batch answer is not UTF-8"), n)
        by_id: dict[str, _Entry] = {}
        for raw in answer.responses:
            try:
                entry = _ENTRY.decode(raw)
            except (msgspec.DecodeError, RecursionError):  # not an object (or a number out of range): skipped
                continue
            if not isinstance(entry.id, msgspec.UnsetType):
                by_id.setdefault(str(entry.id), entry)
        out: list[ItemResult] = []
        for item in items:
            found = by_id.get(item.id)
            if found is None:
                out.append(failure("missing_item_result", f"the batch answer has no response with id {item.id!r}"))
            else:
                out.append(_result(found))
        return out


__all__ = ["HOP_HEADERS", "EnvelopeCodec", "end_to_end"]
