"""Request bodies of a downstream HTTP/2 connection that are forwarded as they arrive (http/upload.py).

A stream whose head came without END_STREAM and whose body is not whole at the end of the read that brought the
head is dispatched then, with an `Upload` as `request.upload` (a request whose body arrives in the same read as
its head, a unary gRPC call, is dispatched whole at its end as before: nothing changes for it). What its route
does with the upload decides the rest:

- `collect` (a route that reads bodies whole): the stream keeps reading as before (credit at once, within the
  connection's cap; 413 beyond `limits.max_body_bytes`), and at its end the body goes into the request and the
  route goes on;
- otherwise the body goes to the upload; what had arrived with the head goes first. Its stream's window is
  credited back only as the upstream takes the bytes, so no more than a stream window is held per upload; the
  connection's window is credited as they arrive (h2 credits both together: http2/credit.py's
  `credit_connection` and `credit_stream` split that), so an upstream that stalls one upload never stalls the
  connection's other streams (Envoy's model: per-stream buffers; a connection holds at most its streams'
  windows). `limits.max_body_bytes` still bounds the whole body (413 while unanswered, else the stream is reset:
  after the answer's head, a bidi call's). The end (with the caller's trailers) ends the upload; a reset from the
  caller fails it (and cancels the exchange, as for any request). The upload stays open after the answer's head
  went out (a bidi call's next messages follow it), until the upstream's answer ends.
"""

from __future__ import annotations

from typing import Protocol

from h2.connection import H2Connection

from meshbatch.errors import PayloadTooLarge, ProxyError
from meshbatch.http.message import Request, Response
from meshbatch.http.serialize import local_reply
from meshbatch.http.upload import Upload
from meshbatch.http2.credit import credit_connection
from meshbatch.http2.streams import H2Stream


class UploadServer(Protocol):
    """What this module asks of the server connection (http2/server.py)."""

    def _dispatch(self, stream: H2Stream, request: Request) -> None: ...
    def _release(self, stream: H2Stream) -> None: ...
    def _answer(self, stream: H2Stream, response: Response) -> None: ...
    def stream_failed(self, stream: H2Stream, error: ProxyError) -> None: ...


def dispatch_early(server: UploadServer, stream: H2Stream) -> None:
    """Dispatch a stream whose body is still arriving, with its upload (see the module docstring)."""
    request = stream.request
    if request is None or stream.ended or stream.responded or stream.closed or stream.pending is not None:
        return
    length = request.header(b"content-length")
    upload = stream.upload = request.upload = Upload(stream, int(length) if length and length.isdigit() else -1)
    server._dispatch(stream, request)
    if upload.collecting or stream.closed or stream.responded:
        return
    for piece in stream.body:  # (credited already, as they came)
        upload.feed(piece, 0)
    server._release(stream)
    stream.body = []


def upload_data(server: UploadServer, conn: H2Connection, stream: H2Stream, upload: Upload, data: bytes,
                credit: int, limit: int) -> None:
    """A DATA frame of a stream whose body goes upstream as it arrives."""
    if credit:
        credit_connection(conn, credit)
    stream.body_len += len(data)
    if stream.body_len > limit:
        error = PayloadTooLarge("body_too_large", f"body exceeds {limit} bytes")
        pending, stream.pending = stream.pending, None
        if pending is not None:
            pending.cancel()  # the upstream request is given up (its stream reset, its connection closed)
        upload.fail(error)
        if stream.responded:  # no status can follow an answer's head (a bidi call's): the stream is reset
            server.stream_failed(stream, error)
        else:
            server._answer(stream, local_reply(error))
        return
    upload.feed(data, credit)


__all__ = ["UploadServer", "dispatch_early", "upload_data"]
