"""One upstream HTTP/1.1 connection: write a request, read one response into a `Response`.

The response carries end-to-end headers only: hop-by-hop ones (and those named in Connection) are dropped
while reading, so callers never see framing headers.

Responses are framed by Content-Length, chunked encoding, or the connection closing. A malformed response
fails the exchange with 502; a connection that closes before any byte of the answer is a reset (the pool
may replay an idempotent request on a fresh connection when the old one was reused).

Reuse (as Envoy and nginx decide it): an answer that is complete must leave the connection exactly at a
message boundary, or the connection is closed and never reused. Bytes after the answer (the head of a second
response, garbage, even blank lines), an answer that began before our request was all written, an interim
answer other than 100, a close-delimited answer, an answer to HEAD, `Connection: close`: each makes the
connection single-use. The outcome is delivered only once the whole chunk that completed the answer was
parsed (never from inside a parser callback), so the decision has seen every byte that arrived with it; a
byte that arrives later, while the connection is idle, closes it.

Streaming: an exchange started with a `stream_limit` (a plain route's, the listener's buffer limit) reads an
answer whole only up to that many body bytes. A larger one (by its Content-Length, or by what arrived of a
chunked or close-delimited one) is delivered after the head with a `BodyStream` (http/stream.py) that carries
the rest of the body, with back-pressure: reading pauses while the consumer cannot take more. The deadline
bounds the whole exchange, body included; a failure mid-body fails the stream (its consumer aborts). Without
a `stream_limit` (batches, ingest, checks) answers are always read whole, up to `max_response_bytes`, which
bounds streamed answers as well.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import httptools

from meshbatch.errors import BadGateway, GatewayTimeout, ProxyError, UpstreamReset
from meshbatch.http.message import Headers, Response
from meshbatch.http.serialize import HOP_BY_HOP, connection_tokens
from meshbatch.http.stream import BodyStream

MAX_HEADER_BYTES = 65_536
_BLANK = (13, 10)  # CR, LF: what llhttp skips, silently, before a status line


class Completion(Protocol):
    """What receives an exchange's outcome: an asyncio future, or a callback object of the same shape."""

    def done(self) -> bool: ...
    def set_result(self, result: Response, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_len",
        "_chunked",
        "_complete",
        "_deadline",
        "_dirty",
        "_error",
        "_framed",
        "_head",
        "_head_buf",
        "_head_total",
        "_headers",
        "_in_head",
        "_length",
        "_loop",
        "_named",
        "_parser",
        "_paused",
        "_prev",
        "_received",
        "_rx",
        "_status",
        "_stream_limit",
        "_streaming",
        "_timer",
        "_timer_at",
        "closed",
        "keep_alive",
        "max_response_bytes",
        "pooled",
        "stream",
        "transport",
        "uses",
        "waiter",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, max_response_bytes: int) -> None:
        self._loop = loop
        self.max_response_bytes = max_response_bytes
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: Completion | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline = 0.0
        self.closed = False
        self.keep_alive = True
        self.uses = 0
        self.pooled = False
        self.stream: BodyStream | None = None  # the body of the current answer, while it streams
        self._paused = False
        self._stream_limit = 0
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._body_len = 0
        self._received = False
        self._head = False
        self._head_buf = b""
        self._in_head = True
        self._error: ProxyError | None = None
        self._framed = False
        self._chunked = False
        self._named = b""
        self._length = -1  # the answer's Content-Length, when it has one
        self._streaming = False  # the body goes through a BodyStream (it outgrew the stream limit)
        self._complete = False  # the answer ended (its outcome goes out once the current chunk is parsed)
        self._dirty = False  # something makes this connection single-use (see the module docstring)
        self._rx = 0  # bytes received for this exchange
        self._head_total = 0  # bytes of the answer's heads (interim ones included) from its first byte
        self._prev = b""  # the previous chunk of a chunked answer (its tail may end the message)

    @property
    def usable(self) -> bool:
        """Idle at a clean message boundary: safe to write the next request on."""
        return not self.closed and self.keep_alive and self.waiter is None and self.stream is None and \
            (self._complete or self.uses == 0) and not self._dirty and \
            self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.stream is not None:
            if self._close_delimited():
                self.keep_alive = False
                self._end_stream()
            else:
                self._fail(UpstreamReset("upstream_reset", "connection closed mid-body"))
        elif self.waiter is not None and not self.waiter.done():
            if self._status >= 200 and not self._in_head and self._close_delimited():
                self.keep_alive = False
                self._finish()
            elif not self._received:
                self._fail(UpstreamReset("upstream_reset", "connection closed before any response"))
            else:
                self._fail(UpstreamReset("upstream_reset", "connection closed mid-response"))

    # exchange ------------------------------------------------------------------------------------
    def send(self, data: bytes, *, head: bool, deadline: float, stream_limit: int = 0) -> asyncio.Future[Response]:
        """Write one request; the future resolves with the response or fails with a ProxyError."""
        waiter: asyncio.Future[Response] = self._loop.create_future()
        self.start(data, head, deadline, waiter, stream_limit)
        return waiter

    def start(self, data: bytes, head: bool, deadline: float, waiter: Completion, stream_limit: int = 0) -> None:
        """Write one request; `waiter` (a future, or any object with its three methods) gets the outcome.
        With a `stream_limit`, an answer whose body exceeds it comes with a `stream` (see the module doc)."""
        assert self.transport is not None and self.waiter is None and self.stream is None
        self._reset()
        self._head = head
        self._stream_limit = stream_limit
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

    def _on_timer(self) -> None:
        self._timer = None
        if self.waiter is None and self.stream is None:
            return
        if self._loop.time() >= self._deadline:
            self._fail(GatewayTimeout("upstream_timeout", "the answer did not end before the timeout"
                                      if self.stream is not None else "no response before the timeout"))
        else:
            self._timer_at = self._deadline
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def _fail(self, error: ProxyError) -> None:
        self.keep_alive = False
        waiter = self.waiter
        self.waiter = None
        stream = self.stream
        self.stream = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()
        if stream is not None:
            stream.fail(error)  # the head went out: the consumer aborts its connection

    def _finish(self) -> None:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        headers = self._headers
        if self._named:  # headers named in Connection are hop-by-hop too
            named = connection_tokens([(b"connection", self._named)])
            headers = [h for h in headers if h[0] not in named]
        response = Response(self._status, headers, body)
        waiter = self.waiter
        self.waiter = None
        if not self.keep_alive:
            self.close()  # before the outcome goes out: whoever gets it may hand the connection back at once
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _start_stream(self) -> None:
        """The body outgrew the stream limit: deliver the head now, the body through a stream."""
        headers = self._headers
        if self._named:
            named = connection_tokens([(b"connection", self._named)])
            headers = [h for h in headers if h[0] not in named]
        stream = self.stream = BodyStream(self, self._length, self._stream_limit)
        response = Response(self._status, headers)
        response.stream = stream
        body = self._body
        self._body = []
        waiter = self.waiter
        self.waiter = None
        if body:
            stream.feed(body[0] if len(body) == 1 else b"".join(body))
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        else:
            stream.abandon()

    def _end_stream(self) -> None:
        stream = self.stream
        assert stream is not None
        self.stream = None
        body = self._body
        if body:
            self._body = []
            stream.feed(body[0] if len(body) == 1 else b"".join(body))
        if not self.keep_alive:
            self.close()
        elif self._paused:
            self.resume_reading()  # an idle connection must read, to notice a close or stray bytes
        stream.end()

    # flow control (the stream's source) ------------------------------------------------------------
    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def abandon(self) -> None:
        """The caller stopped waiting (cancelled), or its client left mid-body: this connection is
        mid-exchange and cannot be reused."""
        self.keep_alive = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.waiter = None
        self.stream = None
        self.close()

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # reading -------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if not data:
            return
        if self.waiter is None and self.stream is None:
            # Bytes nobody asked for: the upstream is out of step with us; never reuse this connection.
            self.keep_alive = False
            self.close()
            return
        if not self._received:
            self._received = True
            transport = self.transport
            if transport is not None and transport.get_write_buffer_size():
                # The answer began before our request was all written: the upstream may still be reading our
                # body, and would take the rest of it for a new request.
                self._dirty = True
        self._rx += len(data)
        if self._in_head:
            head = self._head_buf = self._head_buf + data if self._head_buf else data
            if len(head) > MAX_HEADER_BYTES and head.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES) < 0:
                self._fail(BadGateway("upstream_headers_too_large"))
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = self._error or exc.__context__
            self._fail(cause if isinstance(cause, ProxyError) else BadGateway("bad_upstream_response", str(exc)))
            return
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self._complete:
                self._fail(BadGateway("bad_upstream_response", str(exc).split(": ", 1)[-1]))
                return
            self._dirty = True  # bytes after the answer that are not even a message: the answer stands
        if self._complete:
            if not self._at_boundary(data):
                self._dirty = True
            if self._dirty:
                self.keep_alive = False
            if self.stream is not None:
                self._end_stream()
            else:
                self._finish()  # (an answer that outgrew the limit but arrived whole in this chunk too)
            return
        if self._chunked:
            self._prev = data if len(data) >= 5 else (self._prev + data)[-5:]
        if self._streaming:
            stream = self.stream
            if stream is None:
                self._start_stream()
            elif self._body:
                body = self._body
                self._body = []
                stream.feed(body[0] if len(body) == 1 else b"".join(body))

    def _at_boundary(self, data: bytes) -> bool:
        """Whether the answer ended exactly at the end of `data` (no byte after it)."""
        if self._head:
            return False  # an answer to HEAD is cut at its head whatever its framing says: never reused
        if not self._chunked:  # Content-Length or no body: the count is exact
            return self._rx == self._head_total + self._body_len
        # Chunked: the framing bytes are not counted, but the message's last five bytes are always a non-blank
        # byte then CRLF CRLF (the last chunk's size or extension, or a trailer); any blank line after them (the
        # only bytes llhttp swallows without a callback) breaks that pattern. Other bytes began a message.
        tail = data[-5:] if len(data) >= 5 else (self._prev + data)[-5:]
        return tail[1:] == b"\r\n\r\n" and len(tail) == 5 and tail[0] not in _BLANK

    def on_message_begin(self) -> None:
        if self._complete:
            self._dirty = True  # a second message after the answer: never reuse the connection

    def on_headers_complete(self) -> None:
        if self._complete:
            return  # the head of a message after the answer (already marked)
        # Headers are cut from the buffered head in one pass (llhttp has validated its syntax): much cheaper
        # than a Python callback per header. Blank lines before a status line are skipped, as llhttp does.
        buf = self._head_buf
        if buf and buf[0] in _BLANK:
            buf = buf.lstrip(b"\r\n")
        end = buf.find(b"\r\n\r\n")
        start = buf.find(b"\r\n") + 2
        self._head_buf = b""
        self._in_head = False
        self._head_total = self._rx - len(buf) + end + 4
        status = self._status = self._parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:  # we never ask for an upgrade: whatever follows is not HTTP we can frame
                self._error = BadGateway("bad_upstream_response", "101 Switching Protocols was not asked for")
                raise self._error
            if status != 100:
                self._dirty = True  # 102, 103 or an unknown interim answer: skipped, the connection not reused
            self._head_buf = buf[end + 4:]  # the final answer's head follows in the same bytes
            self._in_head = True
            return
        if start < end:
            self._take_headers(buf[start:end].split(b"\r\n"))
            if status == 204 or status == 304:
                self._chunked = False  # no body whatever the framing headers say: the message ends with its head
                self._length = -1
        if self._length > self.max_response_bytes and not self._head:
            self._error = BadGateway("upstream_response_too_large",
                                     f"response of {self._length} bytes exceeds {self.max_response_bytes}")
            raise self._error
        if self._stream_limit and self._length > self._stream_limit and not self._head:
            self._streaming = True  # too large to hold: the head goes out once this chunk is read
        if self._head:
            # A HEAD answer has no body whatever its framing headers say; httptools cannot be told so,
            # so it ends here and the connection is not reused.
            self._complete = True
            self.keep_alive = False

    def _take_headers(self, lines: list[bytes]) -> None:
        headers = self._headers
        for line in lines:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name in HOP_BY_HOP:  # the answer carries end-to-end headers only
                if name == b"content-length":
                    self._framed = True
                    self._length = int(value)  # llhttp has checked it is one run of digits
                elif name == b"transfer-encoding":
                    # chunked last: chunked framing; any other coding last: the answer ends when the connection
                    # closes (RFC 9112 6.3), as llhttp reads it
                    self._chunked = self._framed = value.rstrip(b" \t").lower().endswith(b"chunked")
                elif name == b"connection":
                    value = value.strip(b" \t").lower()
                    if value not in (b"keep-alive", b"close"):
                        self._named = value
                continue
            headers.append((name, value.strip(b" \t")))

    def _close_delimited(self) -> bool:
        """A response with neither Content-Length nor chunked framing ends when the connection closes."""
        return not self._framed and self._status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return  # the body of an answer to HEAD, or of a message after the answer
        self._body_len += len(body)
        if self._body_len > self.max_response_bytes:
            # Kept on the connection: the parser wraps what a callback raises, and a compiled build may not
            # chain it as the wrapper's context.
            self._error = BadGateway("upstream_response_too_large",
                                     f"response exceeds {self.max_response_bytes} bytes")
            raise self._error
        self._body.append(body)
        if self._stream_limit and self._body_len > self._stream_limit:
            self._streaming = True  # (one of unknown length that outgrew the limit)

    def on_message_complete(self) -> None:
        if self._complete:
            return
        if 100 <= self._status < 200:
            self._status = 0  # an interim answer ended; the final one follows
            return
        self._complete = True
        if not self._parser.should_keep_alive():
            self.keep_alive = False


__all__ = ["Completion", "UpstreamConnection"]
