"""gRPC callers and answers for the batcher's tests: a caller's request as the HTTP/2 server hands it over, an
upstream's gRPC answer, and reading a caller's gRPC answer back."""

from __future__ import annotations

from typing import Any

from meshbatch.grpc.framing import frame, unary
from meshbatch.grpc.replies import decode_message
from meshbatch.http.message import Headers, Request, Response
from meshbatch.service import Call

GRPC: Headers = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]


def grpc_call(message: bytes, metadata: Headers | None = None, *, path: bytes = b"/inventory.Inventory/Get",
              raw: bytes | None = None, received_at: float = 0.0) -> Call:
    """A gRPC unary call: POST path, application/grpc, the message framed (or `raw` as the body)."""
    body = raw if raw is not None else frame(message)
    return Call(Request(b"POST", path, [*GRPC, *(metadata or [])], body, received_at=received_at))


def grpc_answer(message: bytes, status: int = 0, text: bytes = b"") -> Response:
    """An upstream's unary answer: the message framed, grpc-status in the trailers."""
    response = Response(200, [(b"content-type", b"application/grpc")], frame(message))
    response.trailers = [(b"grpc-status", str(status).encode()), *([(b"grpc-message", text)] if text else [])]
    return response


def trailers_only(status: int, text: bytes = b"") -> Response:
    return Response(200, [(b"content-type", b"application/grpc"), (b"grpc-status", str(status).encode()),
                          *([(b"grpc-message", text)] if text else [])])


class Answer:
    """A caller's gRPC answer, read: its status, message, metadata and trailing metadata."""

    def __init__(self, response: Response) -> None:
        assert response.status == 200, response
        self.headers = dict(response.headers)
        assert self.headers[b"content-type"] == b"application/grpc"
        self.trailers = dict(response.trailers or [])
        # trailers-only: the status is in the one header block
        fields = self.trailers if response.trailers is not None else self.headers
        self.status = int(fields[b"grpc-status"])
        self.text = decode_message(fields.get(b"grpc-message", b""))  # as a client reads it
        self.metadata = fields
        self.message = unary(response.body) if response.body else None
        self.response = response





class GrpcioSender:
    """A batcher's Sender that makes the batch call with a real grpcio client (the proxy's own HTTP/2 client
    stands in the real stack): the batch body's one message goes as the request, and the answer comes back as
    the HTTP/2 client would hand it over (the message framed, grpc-status and metadata in the trailers)."""

    def __init__(self, target: str) -> None:
        import grpc

        self.grpc = grpc
        self.channel = grpc.aio.insecure_channel(target)
        self.calls: list[tuple[bytes, Headers]] = []

    async def __call__(self, method: bytes, path: bytes, headers: Headers, body: bytes, timeout: float,
                       key: tuple[bytes, ...]) -> Response:
        self.calls.append((path, headers))
        call = self.channel.unary_unary(path.decode())(unary(body), timeout=timeout)
        try:
            message = await call
        except self.grpc.aio.AioRpcError as exc:
            return trailers_only(exc.code().value[0], exc.details().encode())
        response = Response(200, [(b"content-type", b"application/grpc")], frame(message))
        trailing = [(k.encode(), v.encode() if isinstance(v, str) else v)
                    for k, v in (await call.trailing_metadata() or ())]
        response.trailers = [(b"grpc-status", b"0"), *trailing]
        return response

    async def close(self) -> None:
        await self.channel.close()


def envelope_upstream(app: Any, received: list[int] | None = None) -> Any:
    """An ASGI app answering meshbatch's envelope over HTTP/1.1 with the consumer SDK's `GrpcBatchApp`: the gRPC
    status in the answer's head (the proxy reads it there as from trailers). `received` gets each batch's size."""
    from meshbatch.consumer.grpc_server import BatchFailed
    from meshbatch.grpc import envelope
    from meshbatch.grpc.replies import encode_message

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = unary(body)
        if received is not None:
            received.append(len(envelope.decode_request(request)))
        headers = [(b"content-type", b"application/grpc")]
        try:
            out = frame(await app.process(request))
            headers.append((b"grpc-status", b"0"))
        except BatchFailed as exc:
            out = b""
            headers += [(b"grpc-status", str(int(exc.status)).encode()), (b"grpc-message", encode_message(exc.message))]
        headers.append((b"content-length", str(len(out)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    return asgi


__all__ = ["GRPC", "Answer", "GrpcioSender", "envelope_upstream", "grpc_answer", "grpc_call", "trailers_only"]
