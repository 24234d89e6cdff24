"""gRPC callers and answers for the batcher's tests: a caller's request as the HTTP/2 server hands it over, an
upstream's gRPC answer, and reading a caller's gRPC answer back."""

from __future__ import annotations

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


__all__ = ["GRPC", "Answer", "grpc_answer", "grpc_call", "trailers_only"]
