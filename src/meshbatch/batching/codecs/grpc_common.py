"""The first half of reading a gRPC batch answer, the same for both gRPC codecs: its status, then its one
message. Either the message's bytes, or a result for every item (the batch was refused, or cannot be read)."""

from __future__ import annotations

from meshbatch.batching.codecs.base import ItemResult
from meshbatch.batching.codecs.failures import for_all, upstream_status
from meshbatch.batching.codecs.grpc_answers import ENCODING, grpc_failure, grpc_result, header
from meshbatch.grpc import framing
from meshbatch.grpc.replies import MESSAGE, STATUS, decode_message
from meshbatch.http.message import Headers


def _last(headers: Headers, name: bytes) -> bytes | None:
    """The last value of a field: the trailers' when both the head and the trailers have one."""
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found


def batch_message(status: int, headers: Headers, body: bytes, n: int, max_size: int) -> bytes | list[ItemResult]:
    if not 200 <= status < 300:
        code = _last(headers, STATUS)
        if code is not None:  # refused with a gRPC status (GrpcReplies.upstream made it an HTTP status)
            return for_all(ItemResult(status, b"", [(k, v) for k, v in headers if k in (STATUS, MESSAGE)]), n)
        return for_all(upstream_status(status, headers), n)
    code = _last(headers, STATUS)
    if code is None:
        return for_all(grpc_failure("upstream_not_grpc", "the batch answer has no grpc-status"), n)
    if code != b"0":
        number = int(code) if code.isdigit() and len(code) <= 9 else 2
        message = _last(headers, MESSAGE)
        return for_all(grpc_result(number, decode_message(message) if message else ""), n)
    try:
        return framing.unary(body, header(headers, ENCODING), max_size)
    except framing.FramingError as exc:
        return for_all(grpc_failure("upstream_bad_message", f"the batch answer: {exc.message}"), n)


def count_failure(n: int, found: int, what: str = "results") -> list[ItemResult]:
    return for_all(grpc_failure("upstream_result_count", f"the batch had {n} items and the answer {found} {what}"),
                   n)


__all__ = ["batch_message", "count_failure"]
