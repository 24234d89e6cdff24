"""What both gRPC batch codecs share: how their callers are answered, how a caller's message is read, and the
results the proxy makes when a batch answer cannot be split.

A gRPC item's `ItemResult` keeps the batching core's conventions: its `status` is an HTTP status (200 for OK,
else the one google.rpc.Code names for the gRPC status: 503 for UNAVAILABLE, 400 for INVALID_ARGUMENT...), which
is what retry conditions and batch isolation read; its headers carry `grpc-status` and `grpc-message` when it
failed; its body is the caller's response message, unframed. `GrpcReplies.answer` turns it into the caller's gRPC
answer: a unary answer (the message framed, grpc-status 0 and the batch's headers as trailing metadata) or a
trailers-only answer with the item's status.
"""

from __future__ import annotations

import orjson

from meshbatch.batching.codecs.base import ItemRequest, ItemResult, Refusal
from meshbatch.errors import ProxyError
from meshbatch.grpc import framing, mapping
from meshbatch.grpc import timeout as grpc_timeout
from meshbatch.grpc.replies import (
    CONTENT_TYPE,
    GRPC_TYPE,
    MESSAGE,
    STATUS,
    error_reply,
    status_fields,
    status_of,
    trailers_only,
    unary,
)
from meshbatch.grpc.status import GrpcStatus
from meshbatch.http.message import Headers, Response

ENCODING = b"grpc-encoding"
_OWN = frozenset({b"content-type", STATUS, MESSAGE})  # set by the answer itself, never copied from a result


def header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def defined(code: int, message: str) -> tuple[int, str]:
    """A status code gRPC defines, with its message; any other is UNKNOWN to a client, said so here."""
    if 0 < code <= 16:
        return code, message
    return int(GrpcStatus.UNKNOWN), f"status code {code}: {message}" if message else f"status code {code}"


def grpc_result(code: GrpcStatus | int, message: str = "", extra: Headers | None = None) -> ItemResult:
    """An item's gRPC status as a result (the upstream's own: no proxy reason)."""
    code, message = defined(int(code), message)
    headers = status_fields(code, message)
    if extra:
        headers.extend(extra)
    return ItemResult(mapping.to_http(code), b"", headers)


def grpc_failure(reason: str, detail: str, code: GrpcStatus = GrpcStatus.INTERNAL) -> ItemResult:
    """A result the proxy makes when the batch answer cannot be split (a 502 to the batching core: a bad
    upstream answer), INTERNAL to the caller unless `code` says otherwise."""
    return ItemResult(502, b"", status_fields(code, detail), reason)


def deadline(timeout: float) -> Headers:
    """The batch call's `grpc-timeout`: the upstream knows when its callers stop waiting."""
    return [(grpc_timeout.HEADER, grpc_timeout.format(timeout))]


def caller_message(item: ItemRequest, max_size: int) -> bytes:
    """The caller's one request message, unframed and decompressed (raises framing.FramingError)."""
    return framing.unary(item.body, header(item.headers, ENCODING), max_size)


def check_caller(item: ItemRequest, max_size: int, proto_only: bool) -> Refusal | None:
    """Why a caller's request cannot be an item: not gRPC, not one message, too large, an unknown encoding."""
    content_type = header(item.headers, b"content-type") or b""
    media = content_type if content_type == CONTENT_TYPE else content_type.split(b";", 1)[0].strip().lower()
    if media != CONTENT_TYPE and not media.startswith(CONTENT_TYPE + b"+"):
        return Refusal("a gRPC batch route takes content-type application/grpc", "grpc_bad_message")
    if proto_only and media not in (CONTENT_TYPE, CONTENT_TYPE + b"+proto"):
        return Refusal(f"{media.decode('latin-1')} messages cannot be batched with protobuf descriptors",
                       "grpc_bad_message")
    try:
        framing.check_unary(item.body, header(item.headers, ENCODING), max_size)
    except framing.FramingError as exc:
        reason = {GrpcStatus.RESOURCE_EXHAUSTED: "grpc_message_too_large",
                  GrpcStatus.UNIMPLEMENTED: "grpc_encoding_unsupported"}.get(exc.status, "grpc_bad_message")
        return Refusal(exc.message, reason)
    return None


def _detail(result: ItemResult) -> str:
    """The detail of a proxy-made JSON result (codecs/failures.py), as a grpc-message."""
    try:
        payload = orjson.loads(result.body) if result.body[:1] == b"{" else None
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        return f"{result.reason}: {payload['detail']}"
    return result.reason


class GrpcReplies:
    __slots__ = ()

    def answer(self, result: ItemResult, trailing: Headers) -> Response:
        code: int | None = None
        for name, value in result.headers:
            if name == STATUS:
                code = int(value) if value.isdigit() and len(value) <= 9 else int(GrpcStatus.UNKNOWN)
                break
        others = [(name, value) for name, value in result.headers if name not in _OWN]
        if code is None and 200 <= result.status < 300:
            code = 0
        if code == 0:
            return unary(result.body, others, trailing)
        if code is None:  # a result made by the shared batching code (codecs/failures.py): JSON, an HTTP status
            status = mapping.for_reason(result.reason, result.status) if result.reason \
                else mapping.from_http(result.status)
            response = trailers_only(status, _detail(result), [*others, *trailing])
        else:
            message = header(result.headers, MESSAGE)
            response = Response(200, [GRPC_TYPE, *status_fields(code), *([(MESSAGE, message)] if message else []),
                                      *others, *trailing])
        if result.reason:
            response.reason = result.reason
            response.flag = "UPE"
        return response

    def refuse(self, error: ProxyError, extra: Headers | None = None) -> Response:
        return error_reply(error, extra)

    def upstream(self, response: Response) -> Response:
        """A batch refused with a gRPC status (HTTP 200, grpc-status not 0) reads as the status's HTTP
        equivalent, with the gRPC status and message in its head: retries and isolation see it as they see an
        HTTP refusal, and an item isolated alone gets the upstream's own status."""
        found = status_of(response) if response.status == 200 else None
        if found is None or found[0] == 0:
            return response
        code, message = defined(*found)
        refused = Response(mapping.to_http(code), [GRPC_TYPE, *status_fields(code, message)])
        refused.upstream = response.upstream
        return refused


GRPC_REPLIES = GrpcReplies()

__all__ = ["ENCODING", "GRPC_REPLIES", "GrpcReplies", "caller_message", "check_caller", "deadline", "defined",
           "grpc_failure", "grpc_result", "header"]
