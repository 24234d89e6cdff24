"""`grpc` without descriptors: the callers' messages travel in meshbatch's envelope (grpc/meshbatch_batch.proto)
to `/meshbatch.batch.v1.Batch/Process`, each with its method, custom metadata and id; the answer has one Result
per item, in order, each with its own code, message, payload and metadata. The consumer SDK serves it."""

from __future__ import annotations

import re
from collections.abc import Sequence

from meshbatch.batching.codecs.base import ItemRequest, ItemResult
from meshbatch.batching.codecs.grpc_answers import (
    GRPC_REPLIES,
    caller_message,
    check_caller,
    deadline,
    grpc_failure,
    grpc_result,
)
from meshbatch.batching.codecs.grpc_common import batch_message, count_failure
from meshbatch.config.plain import GrpcBatch
from meshbatch.grpc import envelope, framing
from meshbatch.grpc.wire import MalformedMessage
from meshbatch.http.message import Headers

MAX_METHODS = 1024  # caller methods whose Item.method field is kept (a path_prefix route may see any path)
# Not the caller's custom metadata: the call's own fields, which the batch call has its own of.
_NOT_METADATA = frozenset({b"content-type", b"te", b"user-agent", b"grpc-timeout", b"grpc-encoding",
                           b"grpc-accept-encoding", b"grpc-message-type"})
# Metadata an upstream gives a caller (doc/PROTOCOL-HTTP2.md): a key of 0-9 a-z _ . -, an ASCII value of
# printable characters (a `-bin` key's value is base64). Reserved keys (grpc-*, the proxy's x-meshbatch-*,
# fields of the HTTP exchange itself) are the proxy's to write: dropped, as the envelope codec drops them.
_KEY = re.compile(r"[0-9a-z_.\-]+")
_VALUE = re.compile(r"[\x20-\x7e]*")
_RESERVED = frozenset({"content-type", "te", "connection", "transfer-encoding", "content-length", "trailer",
                       "keep-alive", "upgrade", "host", "user-agent"})


def _utf8(value: bytes) -> bytes:
    """A header's bytes as the UTF-8 a proto string must be (a non-ASCII byte is read as Latin-1, as HTTP does)."""
    return value if value.isascii() else value.decode("latin-1").encode("utf-8")


def metadata(headers: Headers) -> list[tuple[bytes, bytes]]:
    """The caller's custom metadata, UTF-8; a key sent several times has its values joined with ", "."""
    out: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _NOT_METADATA or name.startswith(b"grpc-") or name.startswith(b":"):
            continue
        value = _utf8(value)
        out[name] = out[name] + b", " + value if name in out else value
    return [(_utf8(name), value) for name, value in out.items()]


def _result_metadata(pairs: envelope.Metadata) -> Headers | str:
    """A result's metadata for its caller, or what is wrong with it."""
    fields: Headers = []
    for key, value in pairs:
        if not _KEY.fullmatch(key):
            return f"metadata key {key[:64]!r} is not a gRPC metadata key"
        if not _VALUE.fullmatch(value):
            return f"metadata {key!r} has a character outside printable ASCII"
        if key.startswith("grpc-") or key.startswith("x-meshbatch-") or key in _RESERVED:
            continue
        fields.append((key.encode("ascii"), value.encode("ascii")))
    return fields


def _result(found: envelope.EnvelopeResult) -> ItemResult:
    fields = _result_metadata(found.metadata) if found.metadata else []
    if isinstance(fields, str):
        return grpc_failure("bad_item_metadata", f"a result of the batch answer: {fields}")
    if found.code == 0:
        return ItemResult(200, found.payload, fields)
    return grpc_result(found.code, found.message, fields)


class GrpcEnvelopeCodec:
    name = "grpc"
    content_type = b"application/grpc"
    forwards_headers = True  # the items' metadata travel in the envelope
    request_headers: Headers = [(b"te", b"trailers")]
    replies = GRPC_REPLIES

    def __init__(self, config: GrpcBatch | None = None) -> None:
        self.max_size = (config or GrpcBatch()).max_message_bytes
        self._methods: dict[bytes, bytes] = {}  # caller path -> its Item.method field (bounded)

    def _method(self, path: bytes) -> bytes:
        found = self._methods.get(path)
        if found is None:
            found = envelope.method_field(_utf8(path))
            if len(self._methods) < MAX_METHODS:
                self._methods[path] = found
        return found

    def call_headers(self, timeout: float) -> Headers:
        return deadline(timeout)

    def check_item(self, item: ItemRequest) -> str | None:
        return check_caller(item, self.max_size, proto_only=False)

    def encode(self, items: Sequence[ItemRequest]) -> bytes:
        max_size = self.max_size
        method = self._method
        return framing.frame(b"".join([
            envelope.encode_raw_item(caller_message(item, max_size), b"", metadata(item.headers), item.id.encode(),
                                     method(item.path)) for item in items]))

    def decode(self, status: int, headers: Headers, body: bytes, items: Sequence[ItemRequest]) -> list[ItemResult]:
        n = len(items)
        message = batch_message(status, headers, body, n, self.max_size * max(n, 1) + 1024)
        if isinstance(message, list):
            return message
        try:
            results = envelope.decode_response(message)
        except MalformedMessage as exc:
            return [grpc_failure("upstream_not_envelope", f"the batch answer is not a BatchResponse ({exc})")] * n
        if len(results) != n:
            return count_failure(n, len(results))
        return [_result(found) for found in results]


__all__ = ["GrpcEnvelopeCodec", "metadata"]
