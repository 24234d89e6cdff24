"""One upstream HTTP/1.1 connection: write a request, read one response into a `Response`.

The response carries end-to-end headers only: hop-by-hop ones (and those named in Connection) are dropped
while reading, so callers never see framing headers.

Responses are framed by Content-Length, chunked encoding, or the connection closing. A malformed response
fails the exchange with 502; a connection that closes before any byte of the answer is a reset (the pool
may replay an idempotent request on a fresh connection when the old one was reused).
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import httptools

from meshbatch.errors import BadGateway, GatewayTimeout, ProxyError, UpstreamReset
from meshbatch.http.message import Headers, Response
from meshbatch.http.serialize import HOP_BY_HOP, connection_tokens

MAX_HEADER_BYTES = 65_536


class Completion(Protocol):
    """What receives an exchange's outcome: an asyncio future, or a callback object of the same shape."""

    def done(self) -> bool: ...
    def set_result(self, result: Response, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_len",
        "_deadline",
        "_error",
        "_framed",
        "_head",
        "_head_buf",
        "_headers",
        "_in_head",
        "_loop",
        "_named",
        "_parser",
        "_received",
        "_status",
        "_timer",
        "_timer_at",
        "closed",
        "keep_alive",
        "max_response_bytes",
        "pooled",
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
        self._named = b""

    @property
    def usable(self) -> bool:
        return not self.closed and self.keep_alive and self.waiter is None and \
            self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self._status >= 200 and self._close_delimited():
                self._finish()
            elif not self._received:
                self._fail(UpstreamReset("upstream_reset", "connection closed before any response"))
            else:
                self._fail(UpstreamReset("upstream_reset", "connection closed mid-response"))

    # exchange ------------------------------------------------------------------------------------
    def send(self, data: bytes, *, head: bool, deadline: float) -> asyncio.Future[Response]:
        """Write one request; the future resolves with the response or fails with a ProxyError."""
        waiter: asyncio.Future[Response] = self._loop.create_future()
        self.start(data, head, deadline, waiter)
        return waiter

    def start(self, data: bytes, head: bool, deadline: float, waiter: Completion) -> None:
        """Write one request; `waiter` (a future, or any object with its three methods) gets the outcome."""
        assert self.transport is not None and self.waiter is None
        self._reset()
        self._head = head
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
        if self.waiter is None:
            return
        if self._loop.time() >= self._deadline:
            self._fail(GatewayTimeout("upstream_timeout", "no response before the timeout"))
        else:
            self._timer_at = self._deadline
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def _fail(self, error: ProxyError) -> None:
        self.keep_alive = False
        waiter = self.waiter
        self.waiter = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def _finish(self) -> None:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        headers = self._headers
        if self._named:  # headers named in Connection are hop-by-hop too
            named = connection_tokens([(b"connection", self._named)])
            headers = [h for h in headers if h[0] not in named]
        response = Response(self._status, headers, body)
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def abandon(self) -> None:
        """The caller stopped waiting (cancelled): this connection is mid-exchange and cannot be reused."""
        self.keep_alive = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.waiter = None
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
        if self.waiter is None:
            # Bytes nobody asked for: the upstream is out of step with us; never reuse this connection.
            self.keep_alive = False
            self.close()
            return
        self._received = True
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
        except httptools.HttpParserError as exc:
            self._fail(BadGateway("bad_upstream_response", str(exc).split(": ", 1)[-1]))

    def on_headers_complete(self) -> None:
        # Headers are cut from the buffered head in one pass (llhttp has validated its syntax): much cheaper
        # than a Python callback per header.
        buf = self._head_buf
        end = buf.find(b"\r\n\r\n")
        start = buf.find(b"\r\n") + 2
        self._head_buf = b""
        self._in_head = False
        self._status = self._parser.get_status_code()
        if 100 <= self._status < 200:
            self._head_buf = buf[end + 4:]  # the final answer's head follows in the same bytes
            self._in_head = True
            return
        if start < end:
            self._take_headers(buf[start:end].split(b"\r\n"))
        if self._head:
            # A HEAD answer has no body whatever its framing headers say; httptools cannot be told so,
            # so finish now and do not reuse the connection.
            self.keep_alive = False
            self._finish()
            return

    def _take_headers(self, lines: list[bytes]) -> None:
        headers = self._headers
        for line in lines:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name in HOP_BY_HOP:  # the answer carries end-to-end headers only
                if name == b"content-length" or name == b"transfer-encoding":
                    self._framed = True
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
        self._body_len += len(body)
        if self._body_len > self.max_response_bytes:
            # Kept on the connection: the parser wraps what a callback raises, and a compiled build may not
            # chain it as the wrapper's context.
            self._error = BadGateway("upstream_response_too_large",
                                     f"response exceeds {self.max_response_bytes} bytes")
            raise self._error
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:
            head = self._head_buf
            self._reset()
            self._head_buf = head
            self._received = True
            return
        if self.waiter is None:
            return
        self.keep_alive = self._parser.should_keep_alive()
        self._finish()


__all__ = ["Completion", "UpstreamConnection"]
