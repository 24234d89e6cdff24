"""The SDK over gRPC: the same `handle(items)` served as `/meshbatch.batch.v1.Batch/Process`, the envelope a
`batch.codec: grpc` route without descriptors sends (src/meshbatch/grpc/meshbatch_batch.proto).

    from meshbatch.consumer import serve_grpc, each, ItemError

    async def handle(requests: list) -> list:        # what the HTTP codecs call, too
        return [await lookup(r) for r in requests]

    server = await serve_grpc(handle, "[::]:50051", decode=GetRequest.FromString)
    await server.wait_for_termination()

Items reach `handle` as their payload bytes, or as `decode(payload)` (a protobuf `FromString`, `json.loads`...);
with `full=True` as `GrpcItem`s that also carry the caller's method and metadata. Results are bytes, protobuf
messages (serialized), or `encode(result)`; per item, an `ItemError(status, body)` (or a per-item exception under
`each`) is that caller's gRPC status (google.rpc.Code's table: 404 NOT_FOUND, 422 INVALID_ARGUMENT, 503
UNAVAILABLE, other 5xx INTERNAL), with the body as its message, and never fails its neighbours: an item whose
payload cannot be decoded gets INVALID_ARGUMENT and is not passed to `handle`, a result that cannot be encoded
INTERNAL. A handler that raises, or returns a list of the wrong length, is isolated as over HTTP
(consumer/core.py): the batch is split until the item at fault is alone (INTERNAL for it, results for the
others); when every part fails, the batch call fails (INTERNAL) and the proxy gives every caller that status, as
it does for an `ItemError` the handler raises (its status). grpcio comes with the `grpc` extra and is imported
only here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshbatch import extras
from meshbatch.consumer.core import HandleAny, HandlerFailed, Handling
from meshbatch.consumer.items import ItemError
from meshbatch.consumer.wire import Reply, dumps
from meshbatch.grpc import envelope, mapping
from meshbatch.grpc.status import GrpcStatus
from meshbatch.grpc.wire import MalformedMessage

log = logging.getLogger("meshbatch.consumer")
SERVICE, METHOD = "meshbatch.batch.v1.Batch", "Process"
_FEATURE = "the consumer SDK's gRPC server"


@dataclass(slots=True)
class GrpcItem:
    """One caller's call, with `full=True`: its (decoded) request, method path, metadata and id in the batch."""

    value: Any
    method: str
    metadata: dict[str, str]
    id: str


class BatchFailed(Exception):
    """The batch call as a whole fails with this status (the handler raised, or answered the wrong count)."""

    def __init__(self, status: GrpcStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _text(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    if isinstance(body, dict) and isinstance(body.get("reason"), str) and isinstance(body.get("detail"), str):
        return f"{body['reason']}: {body['detail']}"  # the SDK's own item failure
    try:
        return dumps(body).decode("utf-8")
    except (TypeError, ValueError):
        return repr(body)


def _encode(value: Any, encode: Callable[[Any], bytes] | None) -> bytes:
    if encode is not None:
        return encode(value)
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    serialize = getattr(value, "SerializeToString", None)  # a protobuf message
    if callable(serialize):
        data = serialize()
        if isinstance(data, bytes):
            return data
    raise TypeError(f"a result of type {type(value).__name__} is not bytes or a protobuf message (pass encode=)")


def _result(reply: Reply, encode: Callable[[Any], bytes] | None) -> envelope.EnvelopeResult:
    metadata = [(str(k).lower(), str(v)) for k, v in reply.headers.items()]
    if reply.status >= 400:
        return envelope.EnvelopeResult(int(mapping.from_item_http(reply.status)), _text(reply.body),
                                       metadata=metadata)
    try:
        return envelope.EnvelopeResult(payload=_encode(reply.body, encode), metadata=metadata)
    except Exception as exc:
        log.exception("a batch result could not be encoded")
        return envelope.EnvelopeResult(int(GrpcStatus.INTERNAL), f"the result could not be encoded: {exc}"[:300])


class GrpcBatchApp:
    """`handle(items) -> results` for one BatchRequest; the BatchResponse's bytes (no gRPC in here)."""

    def __init__(self, handle: HandleAny, decode: Callable[[bytes], Any] | None = None,
                 encode: Callable[[Any], bytes] | None = None, full: bool = False, isolate: bool = True) -> None:
        self.handling = Handling(handle, isolate)
        self.decode = decode
        self.encode = encode
        self.full = full

    def _value(self, item: envelope.EnvelopeItem) -> Any:
        value = item.payload if self.decode is None else self.decode(item.payload)
        if self.full:
            return GrpcItem(value, item.method, dict(item.metadata), item.id)
        return value

    async def process(self, request: bytes) -> bytes:
        """The answer to one BatchRequest; BatchFailed when the batch as a whole fails."""
        try:
            items = envelope.decode_request(request)
        except MalformedMessage as exc:
            raise BatchFailed(GrpcStatus.INVALID_ARGUMENT, f"not a BatchRequest ({exc})") from None
        results: list[envelope.EnvelopeResult | None] = [None] * len(items)
        values: list[Any] = []
        slots: list[int] = []
        for index, item in enumerate(items):
            try:
                values.append(self._value(item))
                slots.append(index)
            except Exception as exc:  # this item alone
                results[index] = envelope.EnvelopeResult(int(GrpcStatus.INVALID_ARGUMENT),
                                                         f"the request cannot be decoded ({type(exc).__name__})")
        if values:
            try:
                replies = await self.handling.replies(values)
            except ItemError as exc:
                raise BatchFailed(mapping.from_item_http(exc.status), _text(exc.body)) from None
            except HandlerFailed as exc:
                raise BatchFailed(GrpcStatus.INTERNAL, exc.detail) from None
            for index, reply in zip(slots, replies, strict=True):
                results[index] = _result(reply, self.encode)
        return envelope.encode_response(r or envelope.EnvelopeResult(int(GrpcStatus.INTERNAL)) for r in results)


def grpc_handler(handle: HandleAny, decode: Callable[[bytes], Any] | None = None,
                 encode: Callable[[Any], bytes] | None = None, full: bool = False, isolate: bool = True) -> Any:
    """A grpcio generic handler (a grpc.GenericRpcHandler: grpcio has no type stubs) serving
    `/meshbatch.batch.v1.Batch/Process`; add it to any grpc.aio server."""
    grpc_module = extras.import_module("grpc", "grpc", _FEATURE)
    app = GrpcBatchApp(handle, decode, encode, full, isolate)

    async def process(request: bytes, context: Any) -> bytes:
        try:
            return await app.process(request)
        except BatchFailed as exc:
            await context.abort(grpc_module.StatusCode[exc.status.name], exc.message)
            raise  # (abort raises)

    rpc = grpc_module.unary_unary_rpc_method_handler(process)  # no (de)serializer: the envelope's bytes
    return grpc_module.method_handlers_generic_handler(SERVICE, {METHOD: rpc})


async def serve_grpc(handle: HandleAny, address: str = "[::]:50051", *, decode: Callable[[bytes], Any] | None = None,
                     encode: Callable[[Any], bytes] | None = None, full: bool = False, isolate: bool = True,
                     server: Any = None) -> Any:
    """Start a grpc.aio.Server answering batches on `address` (plaintext h2c), or add the handler to `server`,
    one of yours (for TLS, or beside other services; you start it). Returns the server; `await
    server.wait_for_termination()` to serve on."""
    grpc_module = extras.import_module("grpc", "grpc", _FEATURE)
    serving = server if server is not None else grpc_module.aio.server()
    serving.add_generic_rpc_handlers((grpc_handler(handle, decode, encode, full, isolate),))
    if server is None:
        serving.add_insecure_port(address)
        await serving.start()
    return serving


__all__ = ["METHOD", "SERVICE", "BatchFailed", "GrpcBatchApp", "GrpcItem", "grpc_handler", "serve_grpc"]
