"""One exchange with an upstream endpoint: the only place a request, a batch, a mirrored copy or an ingest delivery
leaves the proxy for an upstream.

    pick -> admit -> account -> send -> observe

- pick: the target's choice (a breaker's due probe, else the balancer's pick, avoiding the endpoints this request
  already failed on); none left: 503 `no_healthy_upstream`, or `circuit_open` when breakers hold them all;
- admit: the cluster's thresholds, through the target's guard (when the route has one: circuit breakers, retries);
- account: requests in flight on the endpoint and through the guard, one request counted;
- send: one request over a keep-alive connection of the endpoint's pool (a stream of a shared one for HTTP/2);
- observe: the outcome, once, to the endpoint (load estimate, passive health), the guard's breaker, and the
  cluster's error counts; an exchange abandoned by its caller tells nothing about the endpoint.

Two ways to send, with the same accounting. `send` is a coroutine: it may connect, wait for a free connection,
and replay an idempotent request once when a reused connection was already dead. `start` is the fast path of
plain forwarding: over an idle connection only (`FastExchange`; HTTP/2: a free stream, `FastStream`), driven by
callbacks (no task, no coroutine frames), and it reports `None` to its caller when the request must be replayed
on the general path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final

from meshbatch.errors import CircuitOpen, ProxyError, Unavailable, UpstreamReset
from meshbatch.http.client import UpstreamConnection
from meshbatch.http.message import Headers, Response
from meshbatch.http.pool import IDEMPOTENT
from meshbatch.http.serialize import encode_request, encode_upload_head, local_reply
from meshbatch.http.upload import Upload
from meshbatch.http2.headers import TE_TRAILERS
from meshbatch.http2.replay import unprocessed
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.guard import BREAKER_OPEN
from meshbatch.upstream.outcome import error_status
from meshbatch.upstream.target import Target

if TYPE_CHECKING:  # HTTP/2 (and the h2 library) is imported by the first endpoint with `protocol: http2`
    from meshbatch.http2.client import MultiplexedConnection
    from meshbatch.http2.client_stream import ClientStream
    from meshbatch.http2.pool import StreamPool

# Final: the compiled build keeps it in a C static, not looked up in the module's dict at every call.
perf_counter: Final = time.perf_counter

# Called once with the answer, or with None: "replay this request on the general path".
Respond = Callable[[Response | None], None]


class Attempt:
    """The attempts of one request (or one batch): how many were made, where, and to which target."""

    __slots__ = ("number", "target", "tried", "units")

    def __init__(self, units: int = 1) -> None:
        self.number = 0  # 0: the first attempt; n: the n-th retry
        self.target: Target | None = None  # chosen once (a split), kept for the retries
        self.tried: list[Endpoint] = []
        self.units = units  # what the first attempt deposits in the retry budget (items of a batch)

    def __repr__(self) -> str:
        return f"<Attempt {self.number} tried={[e.address for e in self.tried]}>"


# The attempt of the batch being sent: set by the batcher's retry loop around the route's sender, whose call
# signature wrappers (such as `compress`) keep as it is.
ATTEMPT: ContextVar[Attempt | None] = ContextVar("meshbatch_attempt", default=None)
# A batch sender in this context reads an answer larger than this as a stream (0: always whole); set by a
# batching route with `batch.stream_results` around its call (batching/upstream_call.py).
STREAM_LIMIT: ContextVar[int] = ContextVar("meshbatch_stream_limit", default=0)


def pick(target: Target, key: bytes | None, tried: Sequence[Endpoint], now: float) -> Endpoint:
    """The endpoint of the next exchange with `target`, admitted by its guard; raises the 503 to answer."""
    endpoint = target.pick(key, tried, now)
    if endpoint is None:
        if any(e.down == BREAKER_OPEN for e in target.members()):
            raise CircuitOpen("circuit_open", f"{target.label}: every available endpoint's breaker is open")
        raise Unavailable("no_healthy_upstream", f"{target.label} has no healthy endpoint")
    guard = target.guard
    if guard is not None:
        try:
            guard.admit(endpoint, target.cluster.hosts.all)
        except CircuitOpen:
            guard.record(endpoint, 0, now)  # no verdict: a probe picked for this request is given back
            raise
    return endpoint


# accounting: the same for `send` and `start` ---------------------------------------------------------------

def _begin(target: Target, endpoint: Endpoint) -> float:
    endpoint.active += 1
    endpoint.requests += 1
    if target.guard is not None:
        target.guard.active += 1
    return perf_counter()  # for the duration only: time points are the loop's (clock.py)


def _answered(target: Target, endpoint: Endpoint, response: Response, started: float, now: float) -> None:
    endpoint.active -= 1
    endpoint.observe(response.status, perf_counter() - started, now)  # load estimate, passive health
    guard = target.guard
    if guard is not None:
        guard.active -= 1
        guard.record(endpoint, response.status, now)
    response.upstream = endpoint.address


def _failed(target: Target, endpoint: Endpoint, error: ProxyError, started: float, now: float) -> None:
    endpoint.active -= 1
    endpoint.errors += 1
    errors = target.cluster.upstream_errors
    errors[error.reason] = errors.get(error.reason, 0) + 1
    status = error_status(error)
    if status:
        endpoint.observe(status, perf_counter() - started, now)
    guard = target.guard
    if guard is not None:
        guard.active -= 1
        guard.record(endpoint, status, now)


def _abandoned(target: Target, endpoint: Endpoint, now: float) -> None:
    """The caller went away: no verdict on the endpoint (a probe it carried is given back)."""
    endpoint.active -= 1
    guard = target.guard
    if guard is not None:
        guard.active -= 1
        guard.record(endpoint, 0, now)


def _for_caller(response: Response, headers: Headers, via: bytes) -> Response:
    """An answer as its caller gets it: trailers only for one that said `TE: trailers` (in the `headers` sent
    upstream), and `via` when given."""
    if response.trailers is not None and TE_TRAILERS not in headers:
        response.trailers = None
    if via:
        response.headers.append((b"via", via))
    return response


def _failure(target: Target, endpoint: Endpoint, error: BaseException, started: float, now: float) -> Response:
    """A fast exchange's failure, counted, as the local reply its caller gets."""
    if not isinstance(error, ProxyError):
        error = ProxyError("internal_error", str(error))
    _failed(target, endpoint, error, started, now)
    return local_reply(error)


# the general path ----------------------------------------------------------------------------------------

async def send(target: Target, method: bytes, path: bytes, headers: Headers, body: bytes, deadline: float,
               key: bytes | None, loop: asyncio.AbstractEventLoop, attempt: Attempt | None = None,
               endpoint: Endpoint | None = None, stream_limit: int = 0, upload: Upload | None = None,
               trailers: Headers | None = None) -> Response:
    """One exchange with `endpoint` (already picked, e.g. by the fast path), or one picked here; raises ProxyError
    on failure. With a `stream_limit`, an answer larger than that comes with its body as a stream. With an
    `upload`, the body goes as it arrives (http/upload.py), chunked to an HTTP/1.1 upstream without a length.
    `trailers` (the request's, after a whole body) go to an HTTP/2 upstream; HTTP/1.1 requests carry none."""
    if endpoint is None:
        endpoint = pick(target, key, attempt.tried if attempt is not None else (), loop.time())
    if attempt is not None:
        attempt.tried.append(endpoint)
    pool = endpoint.pool
    streams = pool.streams
    data = b""
    if streams is None:
        data = encode_request(method, path, headers, body) if upload is None else \
            encode_upload_head(method, path, headers, upload.length)
    started = _begin(target, endpoint)
    try:
        if streams is None:
            response = await pool.request(method, data, deadline, stream_limit, upload)
        else:  # HTTP/2: a stream of one of the endpoint's few shared connections (http2/pool.py)
            response = await streams.request(method, path, headers, body, deadline, stream_limit, upload,
                                             trailers)
    except ProxyError as error:
        _failed(target, endpoint, error, started, loop.time())
        raise
    except BaseException:
        _abandoned(target, endpoint, loop.time())
        raise
    _answered(target, endpoint, response, started, loop.time())
    return _for_caller(response, headers, b"")


# the fast path -------------------------------------------------------------------------------------------

class FastExchange:
    """One request in flight over an idle connection; has the shape of a future for `UpstreamConnection.start`.

    The outcome arrives once the connection has read the whole chunk that completed the answer (never inside a
    parser callback), so handing the connection back here sees the final reuse decision. An answer with its body
    as a stream hands its connection back when the stream is over."""

    __slots__ = ("_done", "conn", "endpoint", "headers", "loop", "method", "respond", "started", "target", "via")

    def __init__(self, target: Target, endpoint: Endpoint, conn: UpstreamConnection, method: bytes,
                 respond: Respond, via: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.target = target
        self.endpoint = endpoint
        self.conn = conn
        self.method = method
        self.respond = respond
        self.via = via
        self.loop = loop
        self.started = 0.0
        self.headers: Headers = []  # as sent (they say whether the caller takes trailers)
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, response: Response, /) -> None:
        self._done = True
        endpoint = self.endpoint
        stream = response.stream
        if stream is None:
            endpoint.pool.release(self.conn)
        else:
            stream.when_closed(self._release)
        _answered(self.target, endpoint, response, self.started, self.loop.time())
        self.respond(_for_caller(response, self.headers, self.via))

    def set_exception(self, error: BaseException, /) -> None:
        self._done = True
        endpoint = self.endpoint
        endpoint.pool.discard(self.conn)
        if isinstance(error, UpstreamReset) and self.conn.uses > 1 and self.method in IDEMPOTENT:
            _abandoned(self.target, endpoint, self.loop.time())
            self.respond(None)  # a reused connection died under us: the general path replays it
            return
        self.respond(_failure(self.target, endpoint, error, self.started, self.loop.time()))

    def _release(self) -> None:
        self.endpoint.pool.release(self.conn)

    def cancel(self) -> None:
        """The caller went away: drop the connection mid-exchange."""
        if not self._done:
            self._done = True
            self.conn.abandon()
            self.endpoint.pool.discard(self.conn)
            _abandoned(self.target, self.endpoint, self.loop.time())


class FastStream:
    """The fast path's HTTP/2 form: one request on a free stream of one of the endpoint's connections, told of its
    answer by the stream as it resolves the answer's future (no task, no coroutine frames, and no further turn of
    the loop between the upstream's last frame and the caller's answer). A stream the upstream refused
    unprocessed, or an idempotent request whose reused connection died before any byte of its answer, goes back
    to the general path (`respond(None)`), which replays it as it replays its own."""

    __slots__ = ("conn", "endpoint", "headers", "loop", "method", "respond", "started", "stream", "target", "via")

    def __init__(self, target: Target, endpoint: Endpoint, conn: MultiplexedConnection, method: bytes,
                 headers: Headers, respond: Respond, via: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.target = target
        self.endpoint = endpoint
        self.conn = conn
        self.method = method
        self.headers = headers  # as sent (they say whether the caller takes trailers)
        self.respond = respond
        self.via = via
        self.loop = loop
        self.started = 0.0
        self.stream: ClientStream | None = None

    def done(self, waiter: asyncio.Future[Response]) -> None:
        stream = self.stream
        if waiter.cancelled() or stream is None:
            return
        self.stream = None
        error = waiter.exception()
        if error is None:
            response = waiter.result()
            _answered(self.target, self.endpoint, response, self.started, self.loop.time())
            self.respond(_for_caller(response, self.headers, self.via))
        elif unprocessed(error, stream, self.conn, self.method):
            _abandoned(self.target, self.endpoint, self.loop.time())
            self.respond(None)  # replayed on the general path (its own limits on replays apply there)
        else:
            self.respond(_failure(self.target, self.endpoint, error, self.started, self.loop.time()))

    def cancel(self) -> None:
        """The caller went away: RST_STREAM CANCEL; the connection and its other streams go on."""
        stream, self.stream = self.stream, None
        if stream is not None:
            self.conn.cancel(stream)
            _abandoned(self.target, self.endpoint, self.loop.time())


def _start_stream(target: Target, endpoint: Endpoint, streams: StreamPool, method: bytes, path: bytes,
                  headers: Headers, body: bytes, deadline: float, respond: Respond, loop: asyncio.AbstractEventLoop,
                  via: bytes, stream_limit: int) -> FastStream | None:
    conn = streams.free_connection() if not streams.pending else None  # (callers waiting go first)
    if conn is None:
        return None
    exchange = FastStream(target, endpoint, conn, method, headers, respond, via, loop)
    exchange.started = _begin(target, endpoint)
    stream = exchange.stream = conn.request(method, path, headers, body, deadline, stream_limit)
    if stream.waiter.done():  # (refused at once: answered on the next turn, after this call returned)
        stream.waiter.add_done_callback(exchange.done)
    else:
        stream.on_done = exchange.done  # (answered within the upstream's read that ends it)
    return exchange


def start(target: Target, endpoint: Endpoint, method: bytes, path: bytes, headers: Headers, body: bytes,
          deadline: float, respond: Respond, loop: asyncio.AbstractEventLoop, via: bytes = b"",
          stream_limit: int = 0) -> FastExchange | FastStream | None:
    """The exchange with `endpoint` (from `pick`) under way over one of its idle connections (HTTP/2: a free
    stream of one of its connections), or None when it has none (the caller then `send`s to the same endpoint:
    picking again would skip one, round robin)."""
    pool = endpoint.pool
    if pool.streams is not None:
        return _start_stream(target, endpoint, pool.streams, method, path, headers, body, deadline, respond, loop,
                             via, stream_limit)
    conn = pool.take_idle()
    if conn is None:
        return None
    exchange = FastExchange(target, endpoint, conn, method, respond, via, loop)
    exchange.started = _begin(target, endpoint)
    exchange.headers = headers
    conn.start(encode_request(method, path, headers, body), method == b"HEAD", deadline, exchange, stream_limit)
    return exchange


__all__ = ["ATTEMPT", "STREAM_LIMIT", "Attempt", "FastExchange", "FastStream", "Respond", "pick", "send", "start"]
