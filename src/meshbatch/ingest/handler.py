"""The accepting side of an ingest route: request -> pipeline -> events -> durable log -> 202.

The answer waits for the configured acknowledgement: `memory` (appended to the log's next group commit),
`fsync` (that commit is on disk: one fsync for everything appended meanwhile), `delivered` (the sink stored
it). The body is `{"id": ID, "status": "accepted"|"delivered"}` for a request of one event, `{"ids": [...], ...}`
for a request of several (NDJSON, split arrays: whatever the pipeline then filtered or parked), with a `dropped`
count when the pipeline filtered some, and `dead_lettered` (a count) with `dead_letters` (`[{"id", "reason"}]`)
when `validate` parked some; the header `x-meshbatch-event-id` holds the (first) id. A request none of whose
events was accepted because `validate` parked them (the rest, if any, filtered out) is answered 422
`events_dead_lettered` with the same `dead_lettered` and `dead_letters`: nothing of it will be delivered. A full
log answers 429 with Retry-After (`on_full: reject`), or waits for room up to `block_timeout_ms` first
(`on_full: block`).

Ids (meshbatch.ingest.record): a request without `idempotency-key` gets fresh random ids; with one, the ids are
derived from the key and the caller's scope (`ingest.idempotency_scope`), so a producer's retry names the same
events and no other producer's key can name them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from meshbatch.clock import Clock
from meshbatch.errors import BadRequest, Draining, GatewayTimeout, ProxyError, Unavailable
from meshbatch.http.message import Request, Response
from meshbatch.ingest.logs.base import LogError, LogFull
from meshbatch.ingest.record import Record, keyed_id, valid_key
from meshbatch.ingest.refusals import EventsDeadLettered, letters_listed
from meshbatch.layers.timeout import route_deadline
from meshbatch.security.scope import IdempotencyScope
from meshbatch.service import Call

if TYPE_CHECKING:
    from meshbatch.config.plain import Ingest
    from meshbatch.ingest.flusher import Flusher
    from meshbatch.ingest.logs.base import EventLog
    from meshbatch.ingest.record import EventIds
    from meshbatch.ingest.waiters import Waiters
    from meshbatch.pipeline import Pipeline


class AcceptingRoute(Protocol):
    """What the handler needs of its ingest route (ingest/route.py's `IngestRoute`)."""

    @property
    def config(self) -> Ingest: ...

    @property
    def timeout(self) -> float: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def serving(self) -> bool: ...

    @property
    def pipeline(self) -> Pipeline | None: ...

    @property
    def log(self) -> EventLog: ...

    @property
    def flusher(self) -> Flusher: ...

    @property
    def waiters(self) -> Waiters | None: ...

    @property
    def new_id(self) -> EventIds: ...

    async def wait_started(self) -> None: ...

    def retry_after(self) -> float: ...

    def accepted(self, n: int) -> None: ...

    def refused(self, n: int) -> None:
        """`n` events of a request were parked in dead letters by the pipeline."""
        ...

IDEMPOTENCY = b"idempotency-key"
JSON = (b"content-type", b"application/json")
EVENT_ID = b"x-meshbatch-event-id"
ID = attrgetter("id")


def check_json(body: bytes) -> str | None:
    if not body:
        return "the body is empty; an event is a JSON document"
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"the body is not valid JSON ({exc.msg} at offset {exc.pos})"
    return None


class IngestHandler:
    def __init__(self, route: AcceptingRoute, check: Callable[[bytes], str | None] = check_json) -> None:
        self.route = route
        self.check = check
        self.ack = route.config.ack
        self.block = route.config.log.on_full == "block"
        self.block_timeout = route.config.log.block_timeout_ms / 1000
        self.timeout = route.timeout
        self.scope = IdempotencyScope(route.config.idempotency_scope)

    async def __call__(self, call: Call) -> Response:
        request = call.request
        route = self.route
        if not route.serving:
            await route.wait_started()
        log = route.log
        if not self.block and not log.has_room(1, 1):  # full now: refused before its pipeline runs for nothing
            raise self._full()
        bodies, dead, dropped = await self._events(request)
        several = len(bodies) + len(dead) + dropped > 1
        key = request.header(IDEMPOTENCY)
        scope = self.scope.digest(request, call.principal).hex() if key is not None else ""
        records = self._records(bodies, key, scope)
        if route.flusher.tracing is not None:  # the delivery span links back to this request's span
            trace = request.header(b"traceparent")
            for record in records:
                record.trace = trace
        letters: list[tuple[str, str]] = []
        if dead:  # refused by `validate` with on_invalid: dead_letter: parked at once, each with its reason
            dead_records = self._records([body for body, _, _ in dead], key, scope, offset=len(bodies),
                                         prefix="dead")
            parked = []
            for record, (_, reason, stage) in zip(dead_records, dead, strict=True):
                parked.append(log.dead([record], reason, stage))
                letters.append((record.id, reason))
            route.refused(len(dead))
            if not records:
                if self.ack != "memory":  # the 422 says the events are parked: at this ack level, durably
                    try:
                        await asyncio.gather(*parked)
                    except LogError as exc:
                        raise Unavailable("ingest_log_unavailable", str(exc)) from None
                raise EventsDeadLettered(letters, dropped)
        if not records:
            return self._answer(records, several, dropped, letters, "accepted")
        size = sum(len(r.body) for r in records)
        if not log.has_room(len(records), size) and not (
                self.block and await log.wait_room(len(records), size, self.block_timeout)):
            raise self._full()
        durable = log.append(records, route_deadline(call, self.timeout, route.clock.now()))
        route.accepted(len(records))
        if self.ack == "memory":
            return self._answer(records, several, dropped, letters, "accepted")
        try:
            await durable
        except LogError as exc:
            raise Unavailable("ingest_log_unavailable", str(exc)) from None
        if self.ack != "delivered":
            return self._answer(records, several, dropped, letters, "accepted")
        await self._delivered(records, request)
        return self._answer(records, several, dropped, letters, "delivered")

    def _full(self) -> LogFull:
        """429: the log has no room (before the pipeline runs, or for this request's events)."""
        return LogFull("ingest_log_full", "the ingest log is full", retry_after=self.route.retry_after())

    async def _events(self, request: Request) -> tuple[list[bytes], list[tuple[bytes, str, str]], int]:
        """The request's events (JSON-encoded), its dead letters, and how many the pipeline dropped. The
        pipeline's run is awaited: a heavy one happens in a worker process, off the event loop."""
        pipeline = self.route.pipeline
        if pipeline is None:
            problem = self.check(request.body)
            if problem is not None:
                raise BadRequest("invalid_body", problem)
            return [request.body], [], 0
        result = await pipeline.process(request)
        dead = result.dead
        dropped = result.dropped + result.failed - len(dead)
        if result.events is None:
            problem = self.check(result.body)
            if problem is not None:
                raise BadRequest("invalid_body", problem)
            return [result.body], dead, dropped
        return result.events, dead, dropped

    def _records(self, bodies: list[bytes], key: bytes | None, scope: str, offset: int = 0,
                 prefix: str = "") -> list[Record]:
        """The events' records; `scope` is the caller's `scope_digest` (used with a key only)."""
        received = time.time()
        if key is None:  # a loop the compiled build runs with direct calls of Record (map would call the type)
            ids = self.route.new_id.many(len(bodies), received)
            return [Record(event_id, body, received) for event_id, body in zip(ids, bodies, strict=True)]
        base = valid_key(key)
        if base is None:
            raise BadRequest("bad_idempotency_key", "an idempotency-key is 1 to 200 printable ASCII characters")
        if len(bodies) == 1 and not offset and not prefix:
            return [Record(keyed_id(scope, base), bodies[0], received)]
        return [Record(keyed_id(scope, base, f"{prefix}{offset + i}"), body, received)
                for i, body in enumerate(bodies)]

    async def _delivered(self, records: list[Record], request: Request) -> None:
        waiters = self.route.waiters
        assert waiters is not None
        ids = [r.id for r in records]
        futures = waiters.add(ids)
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.gather(*futures)
        except TimeoutError:
            raise GatewayTimeout("ingest_delivery_timeout", "the event is stored and will be delivered; the "
                                 "sink did not confirm it in time") from None
        finally:
            waiters.discard(ids, futures)

    def _answer(self, records: list[Record], several: bool, dropped: int, letters: list[tuple[str, str]],
                status: str) -> Response:
        if records and not letters and not dropped:  # the usual answer, joined from its pieces (ids are plain
            first = records[0].id.encode()          # ASCII without quotes or backslashes: see record.py)
            if several:
                body = b'{"ids":["%s"],"status":"%s"}' % ('","'.join(map(ID, records)).encode(), status.encode())
            else:
                body = b'{"id":"%s","status":"%s"}' % (first, status.encode())
            return Response(202, [JSON, (EVENT_ID, first)], body)
        payload: dict[str, Any] = ({"ids": [r.id for r in records]} if several or not records
                                   else {"id": records[0].id})
        payload["status"] = status
        payload.update(letters_listed(letters, dropped))
        headers = [JSON]
        if records:
            headers.append((EVENT_ID, records[0].id.encode()))
        return Response(202, headers, orjson.dumps(payload))


def closed_error() -> ProxyError:
    return Draining("draining", "this ingest route is closed")


__all__ = ["AcceptingRoute", "EventsDeadLettered", "IngestHandler", "check_json", "closed_error"]
