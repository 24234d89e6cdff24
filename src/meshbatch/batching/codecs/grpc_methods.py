"""`grpc` with descriptors: the callers' messages go into the service's own batch method (AIP-231's BatchGet).

    encode  the batch method's request with `items_field` = the callers' messages, in order: each caller's bytes
            spliced in as one length-delimited field, never decoded and re-encoded (other fields stay empty)
    decode  the response's `results_field` elements, one per item, each caller's message as the upstream wrote
            it; with `statuses_field` (repeated google.rpc.Status) one status per item: a non-zero code is that
            caller's status (with its details as grpc-status-details-bin), and the results are then either one
            per item or one per OK item, in order

A wrong count fails every caller of the batch with INTERNAL, naming the counts; a malformed answer (a truncated
field, a wrong wire type, a Status that is not one) too. A result's own bytes are opaque: the caller's client
reads them as it reads any answer of its method.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from meshbatch.batching.codecs.base import ItemRequest, ItemResult, Refusal
from meshbatch.batching.codecs.failures import for_all
from meshbatch.batching.codecs.grpc_answers import (
    GRPC_REPLIES,
    caller_message,
    check_caller,
    deadline,
    grpc_failure,
    grpc_result,
)
from meshbatch.batching.codecs.grpc_common import batch_message, count_failure
from meshbatch.grpc import descriptors, framing
from meshbatch.grpc.descriptors import BatchShape
from meshbatch.grpc.wire import LEN, MalformedMessage, as_bytes, as_int32, as_text, fields, tag, varint
from meshbatch.http.message import Headers

DETAILS = b"grpc-status-details-bin"  # the rich error model: a google.rpc.Status, base64
MAX_CHECKED_PATHS = 1024  # callers' methods whose check is kept (a path_prefix route may see any path)


def parse_status(data: bytes) -> tuple[int, str, bool]:
    """(code, message, has details) of a google.rpc.Status; MalformedMessage when malformed."""
    code, message, details = 0, "", False
    for number, wire_type, value in fields(data):
        if number == 1:
            code = as_int32(number, wire_type, value)
        elif number == 2:
            message = as_text(number, wire_type, value)
        elif number == 3:
            as_bytes(number, wire_type, value)
            details = True
    return code, message, details


def _status_result(code: int, message: str, raw: bytes, details: bool) -> ItemResult:
    return grpc_result(code, message, [(DETAILS, base64.b64encode(raw).rstrip(b"="))] if details else None)


class GrpcMethodCodec:
    name = "grpc"
    content_type = b"application/grpc"
    forwards_headers = True  # for grpc-encoding: a compressed caller message is read before it is spliced in
    request_headers: Headers = [(b"te", b"trailers")]
    replies = GRPC_REPLIES

    def __init__(self, shape: BatchShape, max_size: int) -> None:
        self.shape = shape
        self.max_size = max_size
        self._tag = tag(shape.items, LEN)  # the items field's key; each item's length and bytes follow
        self._checked: dict[bytes, str | None] = {}

    @classmethod
    def load(cls, descriptor_set: str, batch_method: str, items_field: str, results_field: str,
             statuses_field: str | None, max_size: int) -> GrpcMethodCodec:
        return cls(descriptors.load(descriptor_set, batch_method, items_field, results_field, statuses_field),
                   max_size)

    def _method_problem(self, path: bytes) -> str | None:
        checked = self._checked
        if path in checked:
            return checked[path]
        problem = self.shape.unary_problem(path.decode("latin-1"))
        if len(checked) < MAX_CHECKED_PATHS:
            checked[path] = problem
        return problem

    def call_headers(self, timeout: float) -> Headers:
        return deadline(timeout)

    def check_item(self, item: ItemRequest) -> str | None:
        problem = self._method_problem(item.path)
        if problem is not None:
            return Refusal(problem, "grpc_method_not_batched")
        return check_caller(item, self.max_size, proto_only=True)

    def encode(self, items: Sequence[ItemRequest]) -> bytes:
        key = self._tag
        parts = []
        for item in items:
            message = caller_message(item, self.max_size)
            parts.append(key + varint(len(message)) + message)
        return framing.frame(b"".join(parts))

    def decode(self, status: int, headers: Headers, body: bytes, items: Sequence[ItemRequest]) -> list[ItemResult]:
        n = len(items)
        message = batch_message(status, headers, body, n, self.max_size * max(n, 1) + 1024)
        if isinstance(message, list):
            return message
        shape = self.shape
        results: list[bytes] = []
        statuses: list[ItemResult | None] = []
        try:
            for number, wire_type, value in fields(message):
                if number == shape.results:
                    results.append(as_bytes(number, wire_type, value))
                elif number == shape.statuses:
                    raw = as_bytes(number, wire_type, value)
                    code, text, details = parse_status(raw)
                    statuses.append(None if code == 0 else _status_result(code, text, raw, details))
        except MalformedMessage as exc:
            return for_all(grpc_failure("upstream_bad_message", f"the batch answer cannot be read ({exc})"), n)
        if shape.statuses is None or not statuses:
            if len(results) != n:
                return count_failure(n, len(results))
            return [ItemResult(200, result) for result in results]
        if len(statuses) != n:
            return count_failure(n, len(statuses), "statuses")
        ok = sum(1 for found in statuses if found is None)
        if len(results) == n:
            return [found or ItemResult(200, result) for found, result in zip(statuses, results, strict=True)]
        if len(results) != ok:
            return count_failure(n, len(results), f"results ({ok} items have status OK)")
        it = iter(results)
        return [found or ItemResult(200, next(it)) for found in statuses]


__all__ = ["DETAILS", "GrpcMethodCodec", "parse_status"]
