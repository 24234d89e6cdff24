"""Test helpers for the batcher: a scripted upstream, requests, and a handler on a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from meshbatch.batching.batch import NORMAL, Item, Waiter
from meshbatch.batching.handler import BatchHandler
from meshbatch.clock import FakeClock
from meshbatch.config.model import Batch
from meshbatch.http.message import Headers, Request, Response
from meshbatch.service import Call as ServiceCall
from meshbatch.telemetry.metrics import Registry

JSON: Headers = [(b"content-type", b"application/json")]


class Call:
    def __init__(self, method: bytes, path: bytes, headers: Headers, body: bytes, timeout: float,
                 key: tuple[bytes, ...]) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body
        self.timeout, self.key = timeout, key
        self.future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

    @property
    def items(self) -> list[Any]:
        return orjson.loads(self.body)

    def reply(self, status: int = 200, body: bytes = b"", headers: Headers | None = None) -> None:
        self.future.set_result(Response(status, headers if headers is not None else list(JSON), body))

    def reply_json(self, value: Any, status: int = 200) -> None:
        self.reply(status, orjson.dumps(value))

    def echo(self) -> None:
        """Answer each json-array item with {"echo": item}."""
        self.reply_json([{"echo": item} for item in self.items])

    def fail(self, error: BaseException) -> None:
        self.future.set_exception(error)


class Upstream:
    """A Sender whose calls the test answers (or an automatic echo with `auto=True`)."""

    def __init__(self, auto: bool = False) -> None:
        self.calls: list[Call] = []
        self.auto = auto

    async def __call__(self, method: bytes, path: bytes, headers: Headers, body: bytes, timeout: float,
                       key: tuple[bytes, ...]) -> Response:
        call = Call(method, path, headers, body, timeout, key)
        self.calls.append(call)
        if self.auto:
            call.echo()
        return await call.future

    def pending(self) -> list[Call]:
        return [call for call in self.calls if not call.future.done()]


def request(body: Any = None, headers: Headers | None = None, *, target: bytes = b"/orders", raw: bytes | None = None,
            received_at: float = 0.0, method: bytes = b"POST") -> ServiceCall:
    """A caller's request, as the batcher receives it (a `Call`: the request and what its stack learnt)."""
    payload = raw if raw is not None else orjson.dumps(body)
    return ServiceCall(Request(method, target, list(headers or []), payload, received_at=received_at))


async def settle(rounds: int = 6) -> None:
    """Let admitted requests reach the queue and the end-of-tick flush run (no timers involved)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def make_handler(clock: FakeClock | None = None, upstream: Upstream | None = None, *, timeout: float = 2.0,
                 registry: Registry | None = None, **config: Any) -> tuple[BatchHandler, Upstream, FakeClock]:
    clock = clock or FakeClock()
    upstream = upstream or Upstream()
    handler = BatchHandler("orders", Batch(**config), upstream, timeout=timeout,
                           metrics=registry or Registry(), clock=clock)
    return handler, upstream, clock


def submit(handler: BatchHandler, req: ServiceCall) -> asyncio.Task[Response]:
    return asyncio.get_running_loop().create_task(handler(req))


def header(response: Response, name: bytes) -> bytes | None:
    for key, value in response.headers:
        if key == name:
            return value
    return None


def item(body: bytes = b"1", *, key: tuple[bytes, ...] = (), priority: int = NORMAL, arrived: float = 0.0,
         deadline: float = float("inf"), waiters: list[float] | None = None) -> Item:
    """A bare accumulator item; `waiters` lists the deadlines of callers to attach (futures are not used)."""
    it = Item(body, b"POST", b"/", [], key=key, priority=priority, arrived=arrived, deadline=deadline)
    for d in waiters or []:
        it.waiters.append(Waiter(None, arrived, d, it))  # type: ignore[arg-type]
    if waiters:
        it.deadline = min(waiters)
    return it
