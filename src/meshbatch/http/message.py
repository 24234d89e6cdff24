"""The request and response objects every layer sees, and the type of an async request handler (the admin API).

Header names are lower-case bytes (HTTP/1.1 names are case-insensitive); values are raw bytes. Bodies are
buffered up to the listener's limit: meshbatch serves many small RPC-style calls and batches them, and a
buffered body can be replayed, retried and split.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshbatch.http.stream import BodyStream
    from meshbatch.http.upload import Upload

Headers = list[tuple[bytes, bytes]]

# Methods whose request may be sent again when a connection died before any byte of its answer.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})


class Request:
    __slots__ = (
        "body",
        "client",
        "headers",
        "host",
        "identity",
        "keep_alive",
        "method",
        "path",
        "peer",
        "query",
        "received_at",
        "request_id",
        "route",
        "scheme",
        "target",
        "trailers",
        "upload",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        body: bytes = b"",
        *,
        host: bytes = b"",
        version: bytes = b"1.1",
        keep_alive: bool = True,
        client: str = "",
        peer: str | None = None,
        scheme: bytes = b"http",
        request_id: bytes = b"",
        received_at: float = 0.0,
    ) -> None:
        self.method = method
        self.target = target
        if 63 in target:  # '?' (a byte looked for natively; most targets have no query)
            path, _, query = target.partition(b"?")
            self.path = path
            self.query = query
        else:
            self.path = target
            self.query = b""
        self.headers = headers
        self.body = body
        self.host = host
        self.version = version
        self.keep_alive = keep_alive
        self.client = client  # the trusted client address (http/forwarded.py): what policies and logs use
        self.peer = client if peer is None else peer  # the TCP peer: what is appended to x-forwarded-for
        self.scheme = scheme
        self.request_id = request_id
        self.received_at = received_at
        self.route = ""  # the name of the route that serves it (for logs and metrics), once matched
        self.identity: str | None = None  # the peer's SPIFFE ID, verified in the mTLS handshake (its connection's)
        self.trailers: Headers | None = None  # trailing fields (HTTP/2, chunked HTTP/1.1): gRPC metadata
        # The body as it arrives (an HTTP/2 caller's, still arriving when the request was dispatched: `body` is then
        # empty): streamed upstream by a plain route, else read whole first (http/upload.py)
        self.upload: Upload | None = None

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (name in lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"<Request {self.method.decode()} {self.target.decode(errors='replace')} id={self.request_id.decode()}>"


class Response:
    __slots__ = ("body", "flag", "head_block", "head_fields", "headers", "reason", "status", "stream", "trailers",
                 "upstream")

    def __init__(self, status: int, headers: Headers | None = None, body: bytes = b"") -> None:
        self.status = status
        self.headers: Headers = headers if headers is not None else []
        self.body = body
        self.flag = "-"
        self.reason = ""
        self.upstream = ""
        # A plain route's answer larger than the listener's buffer limit: its body follows through this
        # stream (http/stream.py) after the head; `body` is then empty.
        self.stream: BodyStream | None = None
        # Trailing fields after the body (gRPC's grpc-status and grpc-message): sent as HTTP/2 trailers, or as
        # a chunked HTTP/1.1 body's trailer section; None: none.
        self.trailers: Headers | None = None
        # An upstream's answer: the fields its head came with (shared tuples) and those fields as HTTP/1.1 header
        # lines, encoded once per distinct head (http/answer_head.py). The head to the caller uses the lines as
        # long as `headers` still begins with those very tuples.
        self.head_fields: tuple[tuple[bytes, bytes], ...] = ()
        self.head_block = b""

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)}B>"


Handler = Callable[[Request], Awaitable[Response]]

__all__ = ["IDEMPOTENT", "Handler", "Headers", "Request", "Response"]
