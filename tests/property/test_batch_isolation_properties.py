"""Invariants of isolating the items at fault of a refused batch, under random poison, budgets, deadlines, clock
moves and upstream faults (a fake clock; the upstream refuses any batch holding a poisoned item):

- every caller gets exactly one response;
- a 200 carries the caller's own answer; only a poisoned caller ever gets the upstream's refusal, and a clean one
  is never blamed (at worst it gets the proxy's 502 when the budget ran out, or 504 at its deadline);
- the calls beyond the first stay within the budget, one at a time (the batch's one slot);
- nothing is sent after its caller's deadline;
- with the default budget, no deadlines and no faults, one or two poisoned items are always isolated.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbatch.batching.handler import BatchHandler
from meshbatch.clock import FakeClock
from meshbatch.config.model import Batch
from meshbatch.http.message import Request, Response
from meshbatch.service import Call
from meshbatch.telemetry.metrics import Registry

REFUSAL = b'{"error": "poisoned batch"}'


class Upstream:
    def __init__(self, clock: FakeClock, codec: str) -> None:
        self.clock, self.codec = clock, codec
        self.calls: list[tuple[float, list[Any], asyncio.Future[Response]]] = []
        self.ids: list[list[str]] = []
        self.open = 0
        self.most_open = 0

    async def __call__(self, method: bytes, path: bytes, headers: Any, body: bytes, timeout: float,
                       key: tuple[bytes, ...]) -> Response:
        ids: list[str] = []
        if self.codec == "envelope":
            requests = orjson.loads(body)["requests"]
            bodies, ids = [r["body"] for r in requests], [r["id"] for r in requests]
        elif self.codec == "ndjson":
            bodies = [orjson.loads(line) for line in body.splitlines()]
        else:
            bodies = orjson.loads(body)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.calls.append((self.clock.now(), bodies, future))
        self.ids.append(ids)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            return await future
        finally:
            self.open -= 1

    def answer(self, index: int, fault: bool) -> None:
        _, bodies, future = self.calls[index]
        if fault:
            future.set_result(Response(503, [], b"busy"))
        elif any(b.get("poison") for b in bodies):
            future.set_result(Response(400, [(b"content-type", b"application/json")], REFUSAL))
        elif self.codec == "envelope":
            responses = [{"id": id_, "status": 200, "body": {"echo": b}}
                         for id_, b in zip(self.ids[index], bodies, strict=True)]
            future.set_result(Response(200, [], orjson.dumps({"responses": responses})))
        elif self.codec == "ndjson":
            future.set_result(Response(200, [], b"".join(orjson.dumps({"echo": b}) + b"\n" for b in bodies)))
        else:
            future.set_result(Response(200, [], orjson.dumps([{"echo": b} for b in bodies])))


class _Handle:
    def cancel(self) -> None:
        return None


async def _settle() -> None:
    for _ in range(8):
        await asyncio.sleep(0)


async def scenario(n: int, poison: set[int], codec: str, max_calls: int | None, deadlines: list[int | None],
                   steps: list[tuple[int, bool]]) -> None:
    clock = FakeClock()
    upstream = Upstream(clock, codec)
    isolate: dict[str, Any] = {} if max_calls is None else {"max_calls": max_calls}
    handler = BatchHandler("p", Batch(codec=codec, max_items=n, max_in_flight=1, isolate=isolate), upstream,
                           timeout=10.0, metrics=Registry(), clock=clock)
    # Timers are driven here (the in-flight watch fired by hand after each clock move), never by real time.
    handler.dispatcher._call_at = lambda *args: _Handle()  # type: ignore[method-assign,assignment,return-value]
    loop = asyncio.get_running_loop()
    tasks, bodies, ends = [], [], []
    for i in range(n):
        body = {"n": i, "poison": True} if i in poison else {"n": i}
        headers = [] if deadlines[i] is None else [(b"x-meshbatch-deadline-ms", str(deadlines[i]).encode())]
        bodies.append(body)
        ends.append(clock.now() + (deadlines[i] if deadlines[i] is not None else 10_000) / 1000)
        tasks.append(loop.create_task(handler(Call(Request(b"POST", b"/o", headers, orjson.dumps(body),
                                                           received_at=clock.now())))))
    await _settle()
    answered = 0
    for _ in range(400):
        if all(task.done() for task in tasks):
            break
        pending = [i for i, (_, _, f) in enumerate(upstream.calls) if not f.done()]
        if pending:
            advance, fault = steps[answered % len(steps)] if steps else (0, False)
            clock.advance(advance / 1000)
            handler.dispatcher._expire_in_flight(next(iter(handler.dispatcher.tasks.values())))
            upstream.answer(pending[0], fault)
            answered += 1
        else:
            clock.advance(0.005)
            handler.dispatcher.pump()
        await _settle()
    assert all(task.done() for task in tasks), "a caller never got a response"

    budget = max_calls if max_calls is not None else (4 * math.ceil(math.log2(n)) if n > 1 else 0)
    assert len(upstream.calls) - 1 <= budget, "more calls than the isolation budget"
    assert upstream.most_open == 1, "a batch's parts went out at the same time"
    for at, sent, _ in upstream.calls:
        for body in sent:
            assert at < ends[body["n"]], "an item was sent after its caller's deadline"
    for i, task in enumerate(tasks):
        response = task.result()
        if response.status in (200, 201):
            assert orjson.loads(response.body) == {"echo": bodies[i]}
        if response.body == REFUSAL:
            assert i in poison and response.status == 400, "a clean caller was blamed"
        assert response.status in (200, 400, 502, 504), response.status
    if not any(steps_fault for _, steps_fault in steps) and all(d is None for d in deadlines) and \
            max_calls is None and len(poison) <= 2:
        assert [t.result().status == 400 for t in tasks] == [i in poison for i in range(n)]
    assert handler.dispatcher.in_flight == 0 and not handler.dispatcher.tasks


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 16).flatmap(lambda n: st.tuples(
    st.just(n), st.sets(st.integers(0, n - 1), max_size=min(n, 4)), st.sampled_from(["json-array", "ndjson",
                                                                                        "envelope"]),
    st.one_of(st.none(), st.integers(0, 12)), st.lists(st.one_of(st.none(), st.integers(1, 40)), min_size=n,
                                                       max_size=n),
    st.lists(st.tuples(st.integers(0, 10), st.sampled_from([False, False, False, True])), max_size=6))))
def test_isolation_keeps_every_caller_answered_and_never_blames_a_clean_one(case):
    asyncio.run(scenario(*case))
