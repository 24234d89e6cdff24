"""`jetstream`: the durable log as a NATS JetStream stream, shared by every proxy replica of a route.

The stream (work-queue retention, file storage, `max_events`/`max_bytes` with new messages refused when full)
holds accepted events; one durable pull consumer per route hands each event to one replica at a time. An
append is acknowledged when JetStream has stored the message (on a quorum of `replicas` in a cluster; how
often the server fsyncs is its own `sync_interval`). Publishes carry `Nats-Msg-Id` = event id, so a retried
append within the stream's duplicate window is stored once.

On a cluster, `url` lists every node (comma-separated); the client reconnects to a live one at once when its
node goes away, and an append that fails meanwhile (or while the stream elects a new leader) is tried again
until the caller's deadline (jetstream_retry.py). Delivered events are acked; failed ones nak'd with
the backoff as delay (their delivery count is their attempts); dead letters go to a second stream
(`STREAM_DEAD`, subject `meshbatch.dead.ROUTE`) and are replayed from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, BadRequestError, NotFoundError

from meshbatch.clock import Clock
from meshbatch.config.plain import IngestLog
from meshbatch.ingest.logs.base import DELIVERY, LOGS, LogError, LogFull
from meshbatch.ingest.logs.jetstream_retry import transient, within_deadline
from meshbatch.ingest.record import Record

FETCH_WAIT = 0.5
REFRESH = 1.0
APPEND_TIMEOUT = 5.0  # an append's deadline when its caller gives none
OPEN_TIMEOUT = 10.0
# Reconnecting: try the next node at once (a node is tried again no sooner than RECONNECT_WAIT after its last
# attempt); a connection that stops answering pings (a cut link rather than a dead process) is given up after
# PING_INTERVAL * MAX_PINGS seconds.
RECONNECT_WAIT = 0.1
PING_INTERVAL = 2
MAX_PINGS = 2
ERROR_LOG_EVERY = 5.0
log = logging.getLogger("meshbatch.ingest")
FULL_CODES = {10077, 10078, 10047}  # maximum messages / bytes exceeded, insufficient resources


def servers(url: str) -> list[str]:
    """The node URLs of `url`: one, or several separated by commas (`${NAME}` was expanded at load)."""
    out = [part.strip() for part in url.split(",") if part.strip()]
    if not out:
        raise LogError("the jetstream log's url names no server")
    return out


def _token(route: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in route)


class JetStreamLog:
    name = "jetstream"
    local = False

    def __init__(self, config: IngestLog, route: str, clock: Clock) -> None:
        token = _token(route)
        self.servers = servers(config.url)
        self.url = ",".join(self.servers)
        self.stream = config.stream or f"MESHBATCH_{token.upper()}"
        self.subject = config.subject or f"meshbatch.ingest.{token}"
        self.dead_stream = f"{self.stream}_DEAD"
        self.dead_subject = f"meshbatch.dead.{token}" if config.subject is None else f"{self.subject}.dead"
        self.durable = f"meshbatch-{token}"
        self.config = config
        self.clock = clock
        self.nc: Any = None
        self.js: Any = None
        self.sub: Any = None
        self._left: list[Record] = []
        self._leased = 0
        self._naked = 0
        self._state: dict[str, Any] = {"messages": 0, "bytes": 0, "oldest": None, "dead": 0, "pending": 0}
        self._refresher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._error_logged = -ERROR_LOG_EVERY

    async def open(self) -> None:
        try:
            self.nc = await nats.connect(self.servers, name=f"meshbatch-{self.stream}", connect_timeout=2,
                                         max_reconnect_attempts=-1, reconnect_time_wait=RECONNECT_WAIT,
                                         ping_interval=PING_INTERVAL, max_outstanding_pings=MAX_PINGS,
                                         error_cb=self._connection_error, reconnected_cb=self._reconnected)
            self.js = self.nc.jetstream(timeout=5)
            cfg = self.config
            await self._ensure(StreamConfig(
                name=self.stream, subjects=[self.subject], retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE, max_msgs=cfg.max_events, max_bytes=cfg.max_bytes,
                discard=DiscardPolicy.NEW, num_replicas=cfg.replicas, duplicate_window=120.0))
            await self._ensure(StreamConfig(
                name=self.dead_stream, subjects=[self.dead_subject], retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE, num_replicas=cfg.replicas))
            self.sub = await self.js.pull_subscribe(
                self.subject, durable=self.durable, stream=self.stream,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=cfg.ack_wait_ms / 1000,
                                      max_deliver=-1, max_ack_pending=-1))
            await self._refresh()
        except (OSError, NatsError, APIError) as exc:
            await self.close()
            raise LogError(f"cannot open JetStream stream {self.stream} at {self.url}: {exc}") from exc
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def _connection_error(self, exc: Exception) -> None:
        """A failed (re)connection attempt: one line, at most every ERROR_LOG_EVERY seconds (while a cluster is
        down, the client tries a node every RECONNECT_WAIT)."""
        now = self.clock.now()
        if now - self._error_logged >= ERROR_LOG_EVERY:
            self._error_logged = now
            log.warning("jetstream log %s: NATS connection: %s: %s", self.stream, type(exc).__name__, exc)

    async def _reconnected(self) -> None:
        url = self.nc.connected_url if self.nc is not None else None
        log.info("jetstream log %s: reconnected to %s", self.stream, url.netloc if url else "?")

    async def _ensure(self, config: StreamConfig) -> None:
        """Create the stream, or bring an existing one to this configuration; tried again while the cluster
        has no JetStream leader yet (a cluster starting, or electing), for up to OPEN_TIMEOUT."""

        async def attempt(timeout: float) -> None:
            try:
                await self.js.add_stream(config)
            except BadRequestError:  # exists with another configuration: bring it to this one
                await self.js.update_stream(config)

        await within_deadline(attempt, self.clock.now() + OPEN_TIMEOUT, self.clock, asyncio.sleep)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self.nc is not None:  # acks and naks are published messages: flush them out, then close
            nc, self.nc = self.nc, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.flush(), 2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2.0)

    async def _refresh(self) -> None:
        """The stream's size (what its limits count) and the consumer's backlog: events not yet delivered and
        acknowledged. The two differ when the stream keeps messages its consumer has acknowledged, as a
        nats-server 2.9 work-queue stream can after a replica's restart (docs/ingestion.md)."""
        info = await self.js.stream_info(self.stream)
        dead = await self.js.stream_info(self.dead_stream)
        consumer = await self.sub.consumer_info()
        pending = int(consumer.num_pending or 0) + int(consumer.num_ack_pending or 0)
        oldest = None
        if pending:
            floor = consumer.ack_floor.stream_seq if consumer.ack_floor is not None else 0
            with contextlib.suppress(NotFoundError):
                first = await self.js.get_msg(self.stream, max(info.state.first_seq, (floor or 0) + 1))
                oldest = float((first.headers or {}).get("Meshbatch-Received") or 0) or None
        self._state = {"messages": info.state.messages, "bytes": info.state.bytes, "oldest": oldest,
                       "dead": dead.state.messages, "pending": pending}

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            with contextlib.suppress(Exception):
                await self._refresh()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- producers ------------------------------------------------------------------------------------------

    def has_room(self, count: int, size: int) -> bool:
        s = self._state
        return bool(s["messages"] + count <= self.config.max_events and s["bytes"] + size <= self.config.max_bytes)

    async def wait_room(self, count: int, size: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()  # the one clock (clock.py): the loop's
        deadline = loop.time() + timeout
        while not self.has_room(count, size):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
            with contextlib.suppress(Exception):
                await self._refresh()
        return True

    async def _publish(self, record: Record, deadline: float) -> None:
        headers = {"Nats-Msg-Id": record.id, "Meshbatch-Id": record.id, "Meshbatch-Received": repr(record.received)}
        if record.trace is not None:
            headers["Meshbatch-Traceparent"] = record.trace.decode("latin-1")

        async def attempt(timeout: float) -> Any:
            return await self.js.publish(self.subject, record.body, timeout=timeout, headers=dict(headers))

        try:
            await within_deadline(attempt, deadline, self.clock, asyncio.sleep)
        except APIError as exc:
            if exc.err_code in FULL_CODES:
                raise LogFull("ingest_log_full", f"JetStream stream {self.stream} is full ({exc.description})",
                              retry_after=1.0) from None
            raise LogError(f"JetStream publish failed: {exc}") from exc
        except (NatsError, OSError) as exc:
            notes = "".join(f" ({n})" for n in getattr(exc, "__notes__", ()))
            raise LogError(f"JetStream publish failed: {type(exc).__name__}: {exc}{notes}") from exc

    def append(self, records: Sequence[Record], deadline: float | None = None) -> Awaitable[None]:
        self._state["messages"] += len(records)
        self._state["pending"] += len(records)
        self._state["bytes"] += sum(len(r.body) for r in records)
        until = deadline if deadline is not None else self.clock.now() + APPEND_TIMEOUT

        async def publish_all() -> None:
            results = await asyncio.gather(*(self._publish(r, until) for r in records), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

        task = self._spawn(publish_all())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    # -- the flusher ----------------------------------------------------------------------------------------

    async def take(self, max_items: int, max_bytes: int) -> list[Record]:
        records, self._left = self._left, []
        if not records:
            try:
                msgs = await self.sub.fetch(batch=max_items, timeout=FETCH_WAIT)
            except (NatsTimeout, TimeoutError):  # nats-py raises either when the long poll ends empty
                return []
            except Exception as exc:  # a failover (the consumer's leader or this client's node went away)
                if not transient(exc):
                    raise
                await asyncio.sleep(FETCH_WAIT)
                return []
            records = [self._record(m) for m in msgs]
        size, cut = 0, len(records)
        for i, record in enumerate(records):
            size += len(record.body)
            if i and (size > max_bytes or i >= max_items):
                cut = i
                break
        records, self._left = records[:cut], records[cut:]
        self._leased += len(records)
        return records

    def _record(self, msg: Any) -> Record:
        headers = msg.headers or {}
        event_id = headers.get("Meshbatch-Id") or f"{self.stream}-{msg.metadata.sequence.stream}"
        received = float(headers.get("Meshbatch-Received") or time.time())
        attempts = max(0, int(msg.metadata.num_delivered) - 1)
        trace = headers.get("Meshbatch-Traceparent")
        return Record(event_id, msg.data, received, attempts, int(msg.metadata.sequence.stream), msg,
                      trace=trace.encode("latin-1") if trace else None)

    async def wait(self, timeout: float) -> None:
        return None  # `take` itself waits for messages (a long-poll fetch)

    def ack(self, records: Sequence[Record]) -> Awaitable[None]:
        self._leased -= len(records)
        return self._spawn(asyncio.gather(*(r.ref.ack() for r in records if r.ref is not None)))

    def retry(self, records: Sequence[Record], delay: float, count_attempt: bool,
              at: float | None = None) -> Awaitable[None]:  # `at`: the stream redelivers in its own order
        self._leased -= len(records)
        self._naked += len(records)
        for record in records:
            if count_attempt:
                record.attempts += 1
        return self._spawn(asyncio.gather(*(r.ref.nak(delay=delay) for r in records if r.ref is not None)))

    def dead(self, records: Sequence[Record], reason: str, stage: str = DELIVERY) -> Awaitable[None]:
        leased = [r for r in records if r.ref is not None]
        self._leased -= len(leased)

        async def park() -> None:
            for record in records:
                headers = {"Meshbatch-Id": record.id, "Meshbatch-Reason": reason[:1000],
                           "Meshbatch-Attempts": str(record.attempts), "Meshbatch-Received": repr(record.received),
                           "Meshbatch-Failed-At": repr(time.time()), "Meshbatch-Stage": stage}
                await self.js.publish(self.dead_subject, record.body, headers=headers)
                if record.ref is not None:
                    await record.ref.ack()

        return self._spawn(park())

    # -- operators ------------------------------------------------------------------------------------------

    async def _dead_messages(self, limit: int) -> list[Any]:
        info = await self.js.stream_info(self.dead_stream)
        out: list[Any] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if len(out) >= limit:
                break
            with contextlib.suppress(NotFoundError):
                out.append(await self.js.get_msg(self.dead_stream, seq))
        return out

    async def dead_letters(self, limit: int, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        wanted = set(ids) if ids is not None else None
        out: list[dict[str, Any]] = []
        for msg in await self._dead_messages(limit if wanted is None else 100_000):
            h = msg.headers or {}
            if (wanted is not None and h.get("Meshbatch-Id", "") not in wanted) or len(out) >= limit:
                continue
            out.append({"id": h.get("Meshbatch-Id", ""), "body": msg.data.decode("utf-8", errors="replace"),
                        "received": float(h.get("Meshbatch-Received") or 0), "reason": h.get("Meshbatch-Reason", ""),
                        "attempts": int(h.get("Meshbatch-Attempts") or 0), "stage": h.get("Meshbatch-Stage"),
                        "failed_at": float(h.get("Meshbatch-Failed-At") or 0)})
        return out

    async def replay(self, ids: Sequence[str] | None, limit: int,
                     bodies: Mapping[str, bytes | None] | None = None) -> int:
        wanted = set(bodies) if bodies is not None else set(ids) if ids is not None else None
        moved = 0
        for msg in await self._dead_messages(limit if wanted is None else 100_000):
            h = msg.headers or {}
            event_id = h.get("Meshbatch-Id", "")
            if (wanted is not None and event_id not in wanted) or moved >= limit:
                continue
            data = msg.data if bodies is None else bodies[event_id]
            if data is not None:
                headers = {"Nats-Msg-Id": f"{event_id}#replay{msg.seq}", "Meshbatch-Id": event_id,
                           "Meshbatch-Received": h.get("Meshbatch-Received") or repr(time.time())}
                await self.js.publish(self.subject, data, headers=headers)
                moved += 1
            await self.js.delete_msg(self.dead_stream, msg.seq)
        with contextlib.suppress(Exception):
            await self._refresh()
        return moved

    def stats(self) -> dict[str, Any]:
        s = self._state
        oldest = s.get("oldest")
        age = max(0.0, time.time() - oldest) if oldest is not None and s["pending"] else 0.0
        return {"backend": self.name, "stream": self.stream, "subject": self.subject, "backlog": s["pending"],
                "stream_messages": s["messages"], "bytes": s["bytes"], "oldest_age_s": round(age, 3),
                "leased": self._leased + len(self._left), "retried": self._naked, "dead_letters": s["dead"],
                "connected": bool(self.nc and self.nc.is_connected)}


@LOGS.register("jetstream")
def _factory(config: IngestLog, route: str, clock: Clock) -> JetStreamLog:
    return JetStreamLog(config, route, clock)


__all__ = ["JetStreamLog"]
