"""Access logs: one JSON line per answered request, sampled, buffered and written on a timer.

The server calls its listener's observer once per answer. With access logs on, that observer is an
`AccessObserver`: the request counters as before, then a sampling decision, and for a logged request one tuple
of references appended to a list. Nothing is formatted on the request path. A timer (`flush_ms`) hands the
buffered entries to a worker thread that formats them with orjson and writes them in one call, so neither a large
buffer nor a slow disk stalls the event loop for long. A full buffer drops entries and counts them
(`meshbatch_access_log_dropped_total`). With access logs off (no `access_log` key) the observer is the plain
counters: no cost at all.

A line (keys always present, null when unknown):
    {"time", "listener", "route", "method", "path", "host", "status", "duration_ms", "response_flags", "reason",
     "upstream", "request_id", "client", "bytes_in", "bytes_out", "batch_id", "batch_size", "queue_ms", "flush",
     "trace_id", "user_agent", "grpc_status"}
`grpc_status` is the grpc-status number of a gRPC call's answer (null for other requests). A streamed answer is
logged when it is over (its duration is the whole answer's, its status the one its trailers brought).
`response_flags` follows Envoy's: `-` for none, `UO` overflow (queue or pool full), `UT` upstream timeout, `UF`
connect failure, `UH` no healthy upstream, `NR` no route, `DX` deadline exceeded, `RL` rate limited, ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO

import orjson

from meshbatch.config import plain
from meshbatch.http.message import Headers, Request, Response
from meshbatch.telemetry.metrics import Registry
from meshbatch.telemetry.requests import grpc_status

log = logging.getLogger("meshbatch.access_log")

Observer = Callable[[Request, Response, float], None]
# (wall time, listener, route, method, target, host, client, request id, request headers, bytes in,
#  status, flag, reason, upstream, response headers, bytes out, seconds, grpc-status)
Entry = tuple[float, str, str, bytes, bytes, bytes, str, bytes, Headers, int, int, str, str, str, Headers, int,
              float, int | None]

_BATCH_HEADERS = {b"x-meshbatch-batch-id": "batch_id", b"x-meshbatch-batch-size": "batch_size",
                  b"x-meshbatch-queue-ms": "queue_ms", b"x-meshbatch-flush": "flush"}


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def format_entry(entry: Entry) -> bytes:
    """One JSON line (with its newline) for a buffered entry."""
    (at, listener, route, method, target, host, client, request_id, req_headers, bytes_in, status, flag, reason,
     upstream, resp_headers, bytes_out, seconds, grpc) = entry
    batch: dict[str, object] = {"batch_id": None, "batch_size": None, "queue_ms": None, "flush": None}
    for name, value in resp_headers:
        key = _BATCH_HEADERS.get(name)
        if key is not None:
            text = _text(value)
            batch[key] = int(text) if key == "batch_size" and text.isdigit() else \
                _float(text) if key == "queue_ms" else text
    traceparent = _header(req_headers, b"traceparent")
    trace_id = _text(traceparent.split(b"-")[1]) if traceparent is not None and traceparent.count(b"-") >= 3 else None
    agent = _header(req_headers, b"user-agent")
    line = {
        "time": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "listener": listener,
        "route": route or None,
        "method": _text(method),
        "path": _text(target),
        "host": _text(host) or None,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "response_flags": flag or "-",
        "reason": reason or None,
        "upstream": upstream or None,
        "request_id": _text(request_id) or None,
        "client": client or None,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        **batch,
        "trace_id": trace_id,
        "user_agent": _text(agent) if agent is not None else None,
        "grpc_status": grpc,
    }
    return orjson.dumps(line) + b"\n"


def _float(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


class AccessLog:
    """The buffer, the sampling decision and the writer of one access-log destination."""

    def __init__(self, config: plain.AccessLog, metrics: Registry, *, out: IO[bytes] | None = None,
                 rng: Callable[[], float] | None = None) -> None:
        self.config = config
        self.sample = config.sample
        self.everything = config.sample >= 1.0
        self.errors = config.always_errors
        self.max_buffer = config.max_buffer
        self.random = rng or random.Random().random
        self.buffer: list[Entry] = []
        self._out = out
        self._owns_out = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._soon = False
        self._writing: asyncio.Future[None] | None = None
        self._closed = False
        self.lines = metrics.counter("meshbatch_access_log_lines_total", "Access-log lines written.", [])
        self.dropped = metrics.counter("meshbatch_access_log_dropped_total",
                                       "Access-log lines dropped because the buffer was full.", [])

    # -- the request path -----------------------------------------------------------------------------------

    def observer(self, listener: str, stats: Observer) -> Observer:
        return AccessObserver(self, listener, stats)

    def wants(self, response: Response) -> bool:
        if self.everything:
            return True
        if self.errors and (response.status >= 400 or response.flag != "-"):
            return True
        return self.random() < self.sample

    def add(self, listener: str, request: Request, response: Response, seconds: float) -> None:
        buffer = self.buffer
        if len(buffer) >= self.max_buffer:
            self.dropped.inc(())
            return
        upload = request.upload  # (a body forwarded as it arrives: what arrived by the answer)
        buffer.append((time.time(), listener, request.route, request.method, request.target, request.host,
                       request.client, request.request_id, request.headers,
                       len(request.body) if upload is None else upload.received, response.status,
                       response.flag, response.reason, response.upstream, response.headers,
                       len(response.body) if response.stream is None else response.stream.fed,
                       seconds, grpc_status(response) if request.version == b"2" else None))
        if len(buffer) == self.max_buffer // 2 and self._loop is not None and not self._soon:
            self._soon = True
            self._loop.call_soon(self._tick, False)

    # -- flushing -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the destination and start the flush timer (in the running loop)."""
        self._loop = asyncio.get_running_loop()
        if self._out is None:
            if self.config.path == "-":
                self._out = sys.stdout.buffer
            else:
                self._out = open(self.config.path, "ab")  # noqa: SIM115 (closed by close())
                self._owns_out = True
        self._arm()

    def _arm(self) -> None:
        assert self._loop is not None
        if not self._closed:
            self._timer = self._loop.call_later(self.config.flush_ms / 1000, self._tick, True)

    def _tick(self, rearm: bool) -> None:
        if rearm:
            self._timer = None
        else:
            self._soon = False
        if self.buffer and (self._writing is None or self._writing.done()):
            entries, self.buffer = self.buffer, []
            assert self._loop is not None
            self._writing = self._loop.run_in_executor(None, self._flush, entries)
        if rearm:
            self._arm()

    def take(self) -> bytes:
        """Format and clear the buffer: the bytes to write."""
        entries, self.buffer = self.buffer, []
        return self.render(entries)

    def render(self, entries: list[Entry]) -> bytes:
        chunks = []
        for entry in entries:
            try:
                chunks.append(format_entry(entry))
            except Exception:  # one odd entry must not lose the others
                log.exception("could not format an access-log entry")
        self.lines.inc((), len(chunks))
        return b"".join(chunks)

    def _flush(self, entries: list[Entry]) -> None:
        """In a worker thread: format and write."""
        self._write(self.render(entries))

    def _write(self, data: bytes) -> None:
        out = self._out
        if out is None or not data:
            return
        try:
            out.write(data)
            out.flush()
        except (OSError, ValueError) as exc:
            log.error("access log: write failed: %s", exc)

    async def close(self) -> None:
        """Stop the timer and write everything buffered."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        data = self.take()
        if data and self._loop is not None:
            await self._loop.run_in_executor(None, self._write, data)
        elif data:
            self._write(data)
        if self._owns_out and self._out is not None:
            self._out.close()
        self._out = None


class AccessObserver:
    """A listener's observer with access logs on: its counters, then the access log's sampling."""

    __slots__ = ("access", "listener", "stats")

    def __init__(self, access: AccessLog, listener: str, stats: Observer) -> None:
        self.access = access
        self.listener = listener
        self.stats = stats

    def __call__(self, request: Request, response: Response, seconds: float) -> None:
        self.stats(request, response, seconds)
        access = self.access
        if access.wants(response) or (access.errors and request.version == b"2" and
                                      grpc_status(response) not in (None, 0)):  # a gRPC error is an error too
            access.add(self.listener, request, response, seconds)


__all__ = ["AccessLog", "AccessObserver", "Entry", "format_entry"]
