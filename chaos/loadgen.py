"""Bounded load on loopback with exact accounting: every request has an id, and its fate is recorded.

A `LoadGen` runs its own event loop (uvloop) on a thread, so the scenario can kill processes, send signals and
read databases on the main thread without stalling the load. Each `Stream` is one kind of request (a route):
open loop at `rate` requests a second (send times fixed in advance; a request that waits for a free connection
is charged from its scheduled time), or closed loop (`rate=None`: each connection sends its next request as soon
as the previous one is answered). Requests go over `connections` keep-alive HTTP/1.1 connections, one request at
a time per connection; a connection that fails is replaced, and the request it carried is never re-sent (its
fate is recorded instead). `resend(ids)` sends chosen ids again, with the same id (a producer's retry).

Each request carries its id as `x-request-id`, `idempotency-key` and in its JSON body `{"id": ID}`; the answer
must carry the same id back (the upstream echoes it), so an answer delivered to the wrong caller is caught. Bytes
that arrive on an idle connection are an answer nobody asked for, counted as `unsolicited`.

Outcomes: `response` (a complete answer, any status), `refused` / `connect_error` (no connection: never sent),
`closed_before_response` (the request was written, the connection closed with no byte of answer),
`closed_mid_response`, `timeout` (no answer within the client timeout), `aborted` (the client hung up on
purpose), `mismatch` (an answer carrying another id).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from meshbatch.ingest.record import key_of

PENDING, RESPONSE, REFUSED, CONNECT_ERROR, CLOSED_BEFORE, CLOSED_MID, TIMEOUT, ABORTED, MISMATCH = range(9)
OUTCOMES = ("pending", "response", "refused", "connect_error", "closed_before_response", "closed_mid_response",
            "timeout", "aborted", "mismatch")
NOT_SENT = (REFUSED, CONNECT_ERROR)
UNANSWERED = (CLOSED_BEFORE, CLOSED_MID, TIMEOUT)


@dataclass
class StreamSpec:
    name: str  # the stream's name in figures
    route: str  # the proxy route it exercises (for the proxy's own counters)
    path: str
    tag: str  # id prefix, unique per load generator
    connections: int = 8
    rate: float | None = 100.0  # requests/s (open loop); None: closed loop
    host: str = "service"
    headers: tuple[tuple[str, str], ...] = ()
    abort_share: float = 0.0  # share of requests the client abandons mid-request
    abort_max_ms: float = 40.0  # an abandoned request is dropped within this time after it was written
    timeout: float = 10.0  # the client's own limit per request
    id_field: str = "id"  # where the answer carries the id: "id" (plain), "item.id" (json-array), "event.key"
    #                       (ingest: the idempotency key inside the event id, meshbatch.ingest.record.key_of)
    phases: tuple[tuple[float, float], ...] = ()  # (seconds, rate) one after the other; then nothing more


class _Closed(Exception):
    def __init__(self, got: int) -> None:
        super().__init__(got)
        self.got = got  # bytes of answer received before the close


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_ANCILLARY = socket.CMSG_SPACE(16)
_LINGER_RESET = struct.pack("ii", 1, 0)


class _Connection:
    """One client connection on a non-blocking socket read with recvmsg: buffers bytes, completes a waiter when one
    whole answer (Content-Length framed) is in. The kernel stamps every received segment (SO_TIMESTAMPNS,
    CLOCK_REALTIME): `first_byte_ns` is when the answer's first bytes reached this socket, whatever this process's
    own event loop was busy with, so service latency is measured free of the load generator's scheduling."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.buffer = bytearray()
        self.closed = False
        self.first_byte_ns = 0
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop.add_reader(sock.fileno(), self._readable)

    def write(self, data: bytes) -> None:
        try:
            sent = self.sock.send(data)
            if sent < len(data):  # a small request on a fresh loopback socket: never in practice
                self.sock.setblocking(True)
                self.sock.sendall(data[sent:])
                self.sock.setblocking(False)
        except OSError:
            self._gone()

    def _readable(self) -> None:
        try:
            data, ancillary, _flags, _addr = self.sock.recvmsg(262144, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._gone()
            return
        if not data:
            self._gone()
            return
        if not self.buffer:
            stamp = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                    seconds, nanos = struct.unpack("qq", payload[:16])
                    stamp = seconds * 1_000_000_000 + nanos
            self.first_byte_ns = stamp or time.time_ns()
        self.buffer += data
        self._check()

    def _gone(self) -> None:
        self.closed = True
        self._detach()
        self._check()

    def _detach(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())

    def _check(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        buf = self.buffer
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            status = int(head[0].split(" ", 2)[1])
            length = 0
            close = False
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and "close" in value.lower():
                    close = True
            if len(buf) >= end + 4 + length:
                body = bytes(buf[end + 4:end + 4 + length])
                del buf[:end + 4 + length]
                waiter.set_result((status, body, close))
                return
        if self.closed:
            waiter.set_exception(_Closed(len(buf)))

    def close(self, reset: bool = False) -> None:
        """Close: a FIN, or with `reset` a RST (SO_LINGER 0)."""
        if self.sock.fileno() < 0:
            return
        self.closed = True
        self._detach()
        if reset:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.sock.close()


class Stream:
    """One stream's requests: per id (its sequence number), the scheduled, sent and done times, status, outcome."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.rate = spec.rate
        self.sched = array("d")
        self.sent = array("d")
        self.done = array("d")
        self.status = array("h")
        self.outcome = array("b")
        self.reason = array("h")  # index into `reasons`
        self.service = array("d")  # kernel receive time of the answer's first byte - time of the write (s)
        self.reasons: list[str] = [""]
        self._reason_index: dict[str, int] = {"": 0}
        self.unsolicited = 0  # answers that arrived while no request was outstanding
        self.answered = 0
        self.ok = 0
        self.outstanding = 0
        self.connects = 0
        self.queue: deque[int] = deque()
        self.alias: dict[int, str] = {}  # requests re-sent under an earlier id (`LoadGen.resend`)

    def new(self, at: float, ident: str | None = None) -> int:
        seq = len(self.sched)
        if ident is not None:
            self.alias[seq] = ident
        self.sched.append(at)
        self.sent.append(0.0)
        self.done.append(0.0)
        self.status.append(0)
        self.service.append(0.0)
        self.outcome.append(PENDING)
        self.reason.append(0)
        return seq

    def id(self, seq: int) -> str:
        alias = self.alias.get(seq) if self.alias else None
        return alias if alias is not None else f"{self.spec.tag}{seq}"

    def finish(self, seq: int, outcome: int, status: int = 0, reason: str = "") -> None:
        self.done[seq] = time.monotonic()
        self.outcome[seq] = outcome
        self.status[seq] = status
        if reason:
            index = self._reason_index.get(reason)
            if index is None:
                index = self._reason_index[reason] = len(self.reasons)
                self.reasons.append(reason)
            self.reason[seq] = index
        if outcome == RESPONSE:
            self.answered += 1
            if 200 <= status < 300:
                self.ok += 1

    # figures -------------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.sched)

    def ids_with(self, *outcomes: int) -> list[str]:
        wanted = set(outcomes)
        return [self.id(i) for i, o in enumerate(self.outcome) if o in wanted]

    def ids_with_status(self, predicate: Any) -> list[str]:
        return [self.id(i) for i, (o, s) in enumerate(zip(self.outcome, self.status, strict=True))
                if o == RESPONSE and predicate(s)]

    def outcome_counts(self) -> dict[str, int]:
        counts = Counter(OUTCOMES[o] for o in self.outcome)
        return {name: counts[name] for name in OUTCOMES if counts[name]}

    def failures(self) -> dict[str, int]:
        """Everything that was not a 2xx answer, by reason: `STATUS reason` for answers, the outcome otherwise."""
        out: Counter[str] = Counter()
        for o, s, r in zip(self.outcome, self.status, self.reason, strict=True):
            if o == RESPONSE:
                if not 200 <= s < 300:
                    out[f"{s} {self.reasons[r]}".strip()] += 1
            elif o != PENDING:
                out[OUTCOMES[o]] += 1
        return dict(out.most_common())

    def latencies(self, lo: float = 0.0, hi: float = float("inf"), *, status: Any = None,
                  from_sent: bool = False) -> list[float]:
        """Latencies (s) of answers whose scheduled time is in [lo, hi), optionally of chosen statuses."""
        out: list[float] = []
        start = self.sent if from_sent else self.sched
        for i, o in enumerate(self.outcome):
            if o != RESPONSE or not lo <= self.sched[i] < hi:
                continue
            if status is not None and not status(self.status[i]):
                continue
            out.append(self.done[i] - start[i])
        return out


class LoadGen:
    """`LoadGen(address, [StreamSpec...]).start()`, then `set_rate`, `resend`, `stop()` and `wait_idle()`."""

    def __init__(self, address: tuple[str, int], specs: Iterable[StreamSpec], seed: int = 7) -> None:
        self.address = address
        self.streams = {spec.name: Stream(spec) for spec in specs}
        self._random = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._started = threading.Event()
        self._finished = threading.Event()
        self._wake: dict[str, asyncio.Event] = {}
        self._conns: set[_Connection] = set()
        self.started_at = 0.0
        self.lag_max = 0.0  # the load generator's own event-loop lag, to judge its measurements
        self.lag_samples: list[float] = []

    # control from the scenario's thread ----------------------------------------------------------
    def start(self) -> LoadGen:
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the load generator did not start")
        return self

    def _call(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    def set_rate(self, name: str, rate: float | None) -> None:
        def apply() -> None:
            self.streams[name].rate = rate
            self._wake[name].set()

        self._call(apply)

    def resend(self, name: str, ids: Iterable[str]) -> None:
        """Send these ids on stream `name` (again: same id, same idempotency key) as soon as a connection is
        free. Each is a new request of the stream that carries the given id."""
        stream = self.streams[name]
        idents = list(ids)

        def apply() -> None:
            now = time.monotonic()
            for ident in idents:
                stream.queue.append(stream.new(now, ident))
            self._wake[name].set()

        self._call(apply)

    def stop(self) -> None:
        """Stop scheduling new requests (what is queued or in flight still completes)."""

        def apply() -> None:
            self._stopping = True
            for event in self._wake.values():
                event.set()

        self._call(apply)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """After `stop()`: wait until every request has its outcome and the connections are closed."""
        ok = self._finished.wait(timeout)
        if self._thread is not None:
            self._thread.join(5)
        return ok

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0

    def answered(self, name: str | None = None) -> int:
        streams = [self.streams[name]] if name else list(self.streams.values())
        return sum(s.answered for s in streams)

    def settled(self, name: str | None = None) -> int:
        """Requests with an outcome (answered or failed)."""
        streams = [self.streams[name]] if name else list(self.streams.values())
        return sum(s.total - s.outstanding - len(s.queue) for s in streams)

    def totals(self) -> dict[str, int]:
        sent = sum(s.total for s in self.streams.values())
        answered = self.answered()
        ok = sum(s.ok for s in self.streams.values())
        return {"sent": sent, "answered": answered, "ok": ok, "failed": self.settled() - ok}

    # the loop thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        import uvloop

        uvloop.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = {name: asyncio.Event() for name in self.streams}
        self.started_at = time.monotonic()
        lag = asyncio.ensure_future(self._sample_lag())
        tasks = []
        for stream in self.streams.values():
            if stream.rate is not None:
                tasks.append(asyncio.ensure_future(self._pace(stream)))
            tasks += [asyncio.ensure_future(self._worker(stream)) for _ in range(stream.spec.connections)]
        self._started.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            lag.cancel()
            for conn in list(self._conns):
                conn.close()
            self._finished.set()

    async def _sample_lag(self) -> None:
        while True:
            expected = time.monotonic() + 0.1
            await asyncio.sleep(0.1)
            late = max(0.0, time.monotonic() - expected)
            self.lag_samples.append(late)
            self.lag_max = max(self.lag_max, late)

    async def _pace(self, stream: Stream) -> None:
        """Open loop: put requests on the queue at their scheduled times."""
        wake = self._wake[stream.spec.name]
        next_at = time.monotonic()
        bounds: list[tuple[float, float]] = []  # (end time, rate) of each phase
        end = next_at
        for seconds, phase_rate in stream.spec.phases:
            end += seconds
            bounds.append((end, phase_rate))
        while not self._stopping:
            if bounds:
                while bounds and next_at >= bounds[0][0]:
                    bounds.pop(0)
                if not bounds:
                    return
                stream.rate = bounds[0][1]
            rate = stream.rate
            if not rate:
                wake.clear()
                await wake.wait()
                next_at = time.monotonic()
                continue
            now = time.monotonic()
            if next_at <= now:
                while next_at <= now and (not bounds or next_at < bounds[0][0]):
                    stream.queue.append(stream.new(next_at))
                    next_at += 1.0 / rate
                wake.set()
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _next(self, stream: Stream) -> int | None:
        wake = self._wake[stream.spec.name]
        while True:
            if stream.queue:
                seq = stream.queue.popleft()
                if stream.queue:
                    wake.set()  # more for the other workers
                return seq
            if stream.rate is None and not self._stopping:  # closed loop: the next request now
                return stream.new(time.monotonic())
            if self._stopping:
                return None
            wake.clear()
            await wake.wait()

    async def _connect(self, stream: Stream) -> _Connection | int:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, self.address)
        except ConnectionRefusedError:
            sock.close()
            return REFUSED
        except OSError:
            sock.close()
            return CONNECT_ERROR
        conn = _Connection(loop, sock)
        stream.connects += 1
        self._conns.add(conn)
        return conn

    def _request(self, stream: Stream, ident: str) -> bytes:
        spec = stream.spec
        body = orjson.dumps({"id": ident})
        extra = "".join(f"{k}: {v}\r\n" for k, v in spec.headers)
        head = (f"POST {spec.path} HTTP/1.1\r\nhost: {spec.host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nx-request-id: {ident}\r\nidempotency-key: {ident}\r\n{extra}\r\n")
        return head.encode() + body

    @staticmethod
    def _carried_id(spec: StreamSpec, body: bytes) -> str | None:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
        if spec.id_field == "item.id":
            item = doc.get("item")
            return item.get("id") if isinstance(item, dict) else None
        value = doc.get("id")
        if spec.id_field == "event.key":
            return key_of(value) if isinstance(value, str) else None
        return value if isinstance(value, str) else None

    async def _worker(self, stream: Stream) -> None:
        conn: _Connection | None = None
        try:
            while True:
                seq = await self._next(stream)
                if seq is None:
                    return
                stream.outstanding += 1
                try:
                    conn = await self._one(stream, seq, conn)
                finally:
                    stream.outstanding -= 1
        finally:
            if conn is not None:
                conn.close()
                self._conns.discard(conn)

    async def _one(self, stream: Stream, seq: int, conn: _Connection | None) -> _Connection | None:
        """Send request `seq` on `conn` (or a new connection); record its outcome; return the connection to
        use next (None when it was closed)."""
        spec = stream.spec
        if conn is not None and (conn.closed or conn.buffer):
            if conn.buffer:  # bytes nobody asked for: an answer given twice
                stream.unsolicited += 1
            conn.close()
            self._conns.discard(conn)
            conn = None
        if conn is None:
            made = await self._connect(stream)
            if isinstance(made, int):
                stream.sent[seq] = time.monotonic()
                stream.finish(seq, made)
                return None
            conn = made
        ident = stream.id(seq)
        data = self._request(stream, ident)
        loop = asyncio.get_running_loop()
        conn.waiter = waiter = loop.create_future()
        abort_after: float | None = None
        if spec.abort_share and self._random.random() < spec.abort_share:
            if self._random.random() < 0.3:  # hang up in the middle of the body
                conn.write(data[:len(data) - 3])
                stream.sent[seq] = time.monotonic()
                await asyncio.sleep(self._random.random() * spec.abort_max_ms / 1000 / 4)
                self._hang_up(conn)
                stream.finish(seq, ABORTED)
                return None
            abort_after = self._random.random() * spec.abort_max_ms / 1000
        stream.sent[seq] = time.monotonic()
        sent_ns = time.time_ns()
        conn.write(data)
        conn._check()  # (the connection may have closed while idle)
        limit = abort_after if abort_after is not None else spec.timeout
        try:
            async with asyncio.timeout(limit):
                status, body, close = await waiter
        except TimeoutError:
            conn.waiter = None
            if abort_after is not None:
                self._hang_up(conn)
                stream.finish(seq, ABORTED)
            else:
                conn.close(reset=True)
                stream.finish(seq, TIMEOUT)
            self._conns.discard(conn)
            return None
        except _Closed as closed:
            conn.waiter = None
            stream.finish(seq, CLOSED_MID if closed.got else CLOSED_BEFORE)
            conn.close()
            self._conns.discard(conn)
            return None
        conn.waiter = None
        stream.service[seq] = max(0.0, (conn.first_byte_ns - sent_ns) / 1e9)
        carried = self._carried_id(spec, body) if 200 <= status < 300 else None
        if 200 <= status < 300 and carried != ident:
            stream.finish(seq, MISMATCH, status, f"carried {carried!r}")
        else:
            reason = ""
            if not 200 <= status < 300:
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    doc = orjson.loads(body)
                    reason = str(doc.get("reason", "")) if isinstance(doc, dict) else ""
            stream.finish(seq, RESPONSE, status, reason)
        if close:
            conn.close()
            self._conns.discard(conn)
            return None
        return conn

    def _hang_up(self, conn: _Connection) -> None:
        """A client going away: half with a plain close (FIN), half with a reset (RST)."""
        conn.close(reset=self._random.random() < 0.5)
        self._conns.discard(conn)


__all__ = ["ABORTED", "CLOSED_BEFORE", "CLOSED_MID", "CONNECT_ERROR", "MISMATCH", "NOT_SENT", "OUTCOMES", "PENDING",
           "REFUSED", "RESPONSE", "TIMEOUT", "UNANSWERED", "LoadGen", "Stream", "StreamSpec"]
