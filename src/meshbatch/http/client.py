"""One upstream HTTP/1.1 connection's I/O: an asyncio Protocol around a `ResponseReader` (the state machine of
http/client_machine.py), which decides how the answer is framed, when it ends and whether the connection may be
reused. This shell writes the request, feeds what it reads, keeps the exchange's deadline and hands the
outcome (or a `BodyStream` of a large body) to whoever waits.

Streaming: an exchange started with a `stream_limit` (a plain route's, the listener's buffer limit) reads an
answer whole only up to that many body bytes. A larger one (by its Content-Length, or by what arrived of a
chunked or close-delimited one) is delivered after the head with a `BodyStream` (http/stream.py) that carries
the rest of the body, with back-pressure: reading pauses (the connection's `Flow`, http/flow.py) while the
consumer cannot take more. The deadline bounds the whole exchange, body included; a failure mid-body fails the
stream (its consumer aborts). Without a `stream_limit` (batches, ingest, checks) answers are always read whole,
up to `max_response_bytes`, which bounds streamed answers as well.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from meshbatch.errors import ProxyError
from meshbatch.http.client_machine import DATA, ENDED, FAILED, IDLE, STARTED, UNASKED, ResponseReader
from meshbatch.http.flow import Flow
from meshbatch.http.message import Response
from meshbatch.http.stream import BodyStream
from meshbatch.http.upload import ChunkedWriter, Upload


class Completion(Protocol):
    """What receives an exchange's outcome: an asyncio future, or a callback object of the same shape."""

    def done(self) -> bool: ...
    def set_result(self, result: Response, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("_deadline", "_flow", "_loop", "_timer", "_timer_at", "closed", "max_response_bytes", "pooled",
                 "reader", "stream", "transport", "uses", "waiter", "writer")

    def __init__(self, loop: asyncio.AbstractEventLoop, max_response_bytes: int) -> None:
        self._loop = loop
        self.max_response_bytes = max_response_bytes
        self.reader = ResponseReader(max_response_bytes)
        self.transport: asyncio.Transport | None = None
        self._flow = Flow()
        self.waiter: Completion | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline = 0.0
        self.closed = False
        self.uses = 0
        self.pooled = False
        self.stream: BodyStream | None = None  # the body of the current answer, while it streams
        self.writer: ChunkedWriter | None = None  # the request's body, while it streams (http/upload.py)

    @property
    def keep_alive(self) -> bool:
        return self.reader.keep_alive

    @property
    def usable(self) -> bool:
        """Idle at a clean message boundary: safe to write the next request on."""
        reader = self.reader
        transport = self.transport
        return reader.state == IDLE and reader.keep_alive and not self.closed and transport is not None and \
            not transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._flow.transport = self.transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._event(self.reader.eof())
        self.reader.closed()

    # exchange ------------------------------------------------------------------------------------
    def send(self, data: bytes, *, head: bool, deadline: float, stream_limit: int = 0,
             upload: Upload | None = None) -> asyncio.Future[Response]:
        """Write one request; the future resolves with the response or fails with a ProxyError."""
        waiter: asyncio.Future[Response] = self._loop.create_future()
        self.start(data, head, deadline, waiter, stream_limit, upload)
        return waiter

    def start(self, data: bytes, head: bool, deadline: float, waiter: Completion, stream_limit: int = 0,
              upload: Upload | None = None) -> None:
        """Write one request; `waiter` (a future, or any object with its three methods) gets the outcome.
        With a `stream_limit`, an answer whose body exceeds it comes with a `stream` (see the module doc). With an
        `upload`, `data` is the head and the body follows as it arrives (http/upload.py)."""
        assert self.transport is not None and self.waiter is None and self.stream is None
        self.reader.start(head, stream_limit)
        self.uses += 1
        self.waiter = waiter
        self._deadline = deadline
        # One lazily re-armed timer per connection, not one per request (a libuv timer costs ~2 us).
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)
        self.transport.write(data)
        if upload is not None:
            writer = self.writer = ChunkedWriter(upload, self.transport, upload.length < 0)
            upload.attach(writer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.waiter is None and self.stream is None:
            return
        if self._loop.time() >= self._deadline:
            self._fail(self.reader.timeout_error())
        else:
            self._timer_at = self._deadline
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def _fail(self, error: ProxyError) -> None:
        self.reader.fail(error)
        waiter = self.waiter
        self.waiter = None
        stream = self.stream
        self.stream = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()
        if stream is not None:
            stream.fail(error)  # the head went out: the consumer aborts its connection

    # reading -------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if data:
            transport = self.transport
            reader = self.reader
            unsent = transport.get_write_buffer_size() if transport is not None else 0
            if self.writer is not None and self.writer.sending:
                unsent += 1  # an answer before the whole body: the connection is single-use
            event = reader.feed(data, unsent)
            if event == ENDED and self.stream is None:
                self._finish(reader.response())  # (the common case, first)
            elif event:
                self._event(event)

    def _event(self, event: int) -> None:
        """Act on what the reader reports."""
        reader = self.reader
        if event == ENDED:
            stream = self.stream
            if stream is None:
                self._finish(reader.response())
            else:
                self._end_stream(stream)
        elif event == DATA:
            stream = self.stream
            if stream is not None:
                stream.feed(reader.take_body())
        elif event == STARTED:
            self._start_stream()
        elif event == FAILED:
            error = reader.error
            assert error is not None
            self._fail(error)
        elif event == UNASKED:
            self.close()  # bytes nobody asked for: the upstream is out of step with us

    def _finish(self, response: Response) -> None:
        waiter = self.waiter
        self.waiter = None
        self._unwrite()
        if not self.reader.reusable:
            self.close()  # before the outcome goes out: whoever gets it may hand the connection back at once
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _start_stream(self) -> None:
        """The body outgrew the stream limit: deliver the head now, the body through a stream."""
        self._unwrite()
        reader = self.reader
        stream = self.stream = BodyStream(self, reader.length, reader.stream_limit)
        response = reader.head_response()
        response.stream = stream
        body = reader.take_body()
        waiter = self.waiter
        self.waiter = None
        if body:
            stream.feed(body)
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        else:
            stream.abandon()

    def _end_stream(self, stream: BodyStream) -> None:
        self.stream = None
        body = self.reader.take_body()
        if body:
            stream.feed(body)
        if not self.reader.keep_alive:
            self.close()
        else:
            self._flow.resume_reading()  # an idle connection must read, to notice a close or stray bytes
        stream.end(self.reader.trailers)

    def _unwrite(self) -> None:
        """The answer came: a request body still going is cut (the connection is single-use then)."""
        writer = self.writer
        if writer is not None:
            self.writer = None
            writer.gone()

    def pause_writing(self) -> None:
        if self.writer is not None:
            self.writer.pause()

    def resume_writing(self) -> None:
        if self.writer is not None:
            self.writer.resume()

    # flow control (the stream's source) ------------------------------------------------------------
    def pause_reading(self) -> None:
        if not self.closed:
            self._flow.pause_reading()

    def resume_reading(self) -> None:
        if not self.closed:
            self._flow.resume_reading()

    def abandon(self) -> None:
        """The caller stopped waiting (cancelled), or its client left mid-body: this connection is
        mid-exchange and cannot be reused."""
        self.reader.abandon()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.waiter = None
        self.stream = None
        self.close()

    def close(self) -> None:
        self.closed = True
        self._unwrite()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


__all__ = ["Completion", "UpstreamConnection"]
