"""Invariants of the batcher under random arrivals, cancellations, clock moves and upstream behaviour.

- every admitted request ends with exactly one response (no hang, no stray exception), cancelled ones too;
- a batch never mixes batch keys, never exceeds max_items, and dedup never adds items to it;
- an item whose caller left before its batch was sealed is never sent; nothing is sent after its deadline;
- a 200 always carries the caller's own answer;
- with a replay window (`dedup_window_ms`), a key that already got a 200 is answered from the window, never sent
  again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbatch.batching.accumulator import Accumulator
from meshbatch.batching.batch import QUEUED, REMOVED, Item, Waiter
from meshbatch.batching.dispatcher import Dispatcher
from meshbatch.batching.handler import BatchHandler
from meshbatch.clock import FakeClock
from meshbatch.config.model import Batch
from meshbatch.errors import GatewayTimeout
from meshbatch.http.message import Request, Response
from meshbatch.service import Call
from meshbatch.telemetry.metrics import Registry

MODES = ("ok", "ok", "ok", "wrong_length", "not_json", "status_500", "proxy_error", "crash", "drop_one")

arrive = st.tuples(st.just("arrive"), st.integers(0, 2), st.one_of(st.none(), st.integers(0, 2)),
                   st.integers(0, 2), st.one_of(st.none(), st.integers(1, 60)), st.booleans())
ops = st.one_of(
    arrive, arrive, arrive,
    st.tuples(st.just("cancel"), st.integers(0, 1000)),
    st.tuples(st.just("advance"), st.integers(0, 25)),
    st.tuples(st.just("answer"), st.integers(0, 1000), st.sampled_from(MODES)),
)
configs = st.fixed_dictionaries({
    "max_items": st.integers(1, 5),
    "max_in_flight": st.integers(1, 3),
    "min_wait_ms": st.sampled_from([0, 0, 2, 5]),
    "max_queue": st.integers(2, 20),
    "codec": st.sampled_from(["json-array", "ndjson", "envelope"]),
    "dedup": st.booleans(),
    "dedup_window_ms": st.sampled_from([0, 10_000]),  # 10 s: longer than any script, nothing expires
    "key": st.just(["header:x-k"]),
})


class _Handle:
    def cancel(self) -> None:
        return None


@dataclass
class Sent:
    at: float
    key: tuple[bytes, ...]
    bodies: list[Any]
    future: asyncio.Future[Response]
    codec: str
    ids: list[str] = field(default_factory=list)


class Upstream:
    def __init__(self, clock: FakeClock, codec: str) -> None:
        self.clock, self.codec = clock, codec
        self.calls: list[Sent] = []

    async def __call__(self, method: bytes, path: bytes, headers: Any, body: bytes, timeout: float,
                       key: tuple[bytes, ...]) -> Response:
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        if self.codec == "envelope":
            requests = orjson.loads(body)["requests"]
            sent = Sent(self.clock.now(), key, [r["body"] for r in requests], future, self.codec,
                        [r["id"] for r in requests])
        elif self.codec == "ndjson":
            sent = Sent(self.clock.now(), key, [orjson.loads(line) for line in body.splitlines()], future, self.codec)
        else:
            sent = Sent(self.clock.now(), key, orjson.loads(body), future, self.codec)
        self.calls.append(sent)
        return await future

    def answer(self, call: Sent, mode: str) -> None:
        echo = [{"echo": b} for b in call.bodies]
        if mode == "proxy_error":
            call.future.set_exception(GatewayTimeout())
        elif mode == "crash":
            call.future.set_exception(RuntimeError("sender bug"))
        elif mode == "status_500":
            call.future.set_result(Response(500, [], b"boom"))
        elif mode == "not_json":
            call.future.set_result(Response(200, [], b"<html>"))
        elif call.codec == "envelope":
            responses = [{"id": i, "status": 200, "body": e} for i, e in zip(call.ids, echo, strict=True)]
            if mode == "wrong_length" or mode == "drop_one":
                responses = responses[1:]
            call.future.set_result(Response(200, [], orjson.dumps({"responses": responses[::-1]})))
        else:
            if mode in ("wrong_length", "drop_one"):
                echo = echo[:-1] if len(echo) > 1 or mode == "drop_one" else [*echo, echo[0]]
            wire = orjson.dumps(echo) if call.codec == "json-array" else b"".join(
                orjson.dumps(e) + b"\n" for e in echo)
            call.future.set_result(Response(200, [], wire))


async def _settle() -> None:
    for _ in range(6):
        await asyncio.sleep(0)


async def scenario(config: dict[str, Any], script: list[tuple[Any, ...]]) -> None:
    if not config["dedup"]:
        config = {**config, "dedup_window_ms": 0}
    clock = FakeClock()
    upstream = Upstream(clock, config["codec"])
    handler = BatchHandler("p", Batch(**config), upstream, timeout=0.2, metrics=Registry(), clock=clock)
    # Timers are driven by the script (pump after each clock move), never by real time.
    handler.dispatcher._call_at = lambda *args: _Handle()  # type: ignore[method-assign,assignment,return-value]
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[Response]] = []
    meta: list[dict[str, Any]] = []
    never_sent: set[int] = set()

    def sent_ids() -> set[int]:
        return {b["id"] for call in upstream.calls for b in call.bodies if isinstance(b, dict) and "id" in b}

    for op in script:
        if op[0] == "arrive":
            _, key, idem, priority, deadline_ms, bad = op
            number = len(tasks)
            body: Any = {"k": key, "idem": idem} if idem is not None else {"k": key, "id": number}
            headers = [(b"x-k", str(key).encode()), (b"x-meshbatch-priority", (b"high", b"normal", b"low")[priority])]
            if idem is not None:
                headers.append((b"idempotency-key", str(idem).encode()))
            if deadline_ms is not None:
                headers.append((b"x-meshbatch-deadline-ms", str(deadline_ms).encode()))
            raw = b"{not json" if bad and number % 4 == 0 else orjson.dumps(body)
            budget = min(0.2, deadline_ms / 1000) if deadline_ms is not None else 0.2
            # answered 200 before this one arrived: with a replay window, this one must be a replay
            after_200 = idem is not None and any(
                t.done() and not t.cancelled() and t.result().status == 200 and meta[i]["body"] == body
                and not meta[i]["bad"] for i, t in enumerate(tasks))
            meta.append({"body": body, "deadline": clock.now() + budget, "bad": raw != orjson.dumps(body),
                         "after_200": after_200})
            req = Request(b"POST", b"/o", headers, raw, received_at=clock.now())
            tasks.append(loop.create_task(handler(Call(req))))
        elif op[0] == "cancel" and tasks:
            index = op[1] % len(tasks)
            task = tasks[index]
            if not task.done() and "id" in meta[index]["body"] and index not in sent_ids():
                never_sent.add(index)  # still queued (sealed batches are sent within a settle): must never go
            task.cancel()
        elif op[0] == "advance":
            clock.advance(op[1] / 1000)
            handler.dispatcher.pump()
        elif op[0] == "answer":
            pending = [c for c in upstream.calls if not c.future.done()]
            if pending:
                upstream.answer(pending[op[1] % len(pending)], op[2])
        await _settle()
        await _settle()
        assert not handler.dispatcher._kicked, "the end-of-tick flush keeps rescheduling itself"

    for _ in range(200):  # serve everything; time moves on so holds and deadlines resolve
        for call in upstream.calls:
            if not call.future.done():
                upstream.answer(call, "ok")
        await _settle()
        if all(task.done() for task in tasks):
            break
        clock.advance(0.005)
        handler.dispatcher.pump()
        await _settle()
    assert all(task.done() for task in tasks), "a request never got a response"

    for index, task in enumerate(tasks):
        if task.cancelled():
            continue
        response = task.result()
        assert isinstance(response, Response)
        if meta[index]["bad"]:  # refused before queueing: the body, or a full queue or a spent budget first
            assert response.status in (400, 429, 504) and response.status != 200
        if response.status == 200:
            assert orjson.loads(response.body) == {"echo": meta[index]["body"]}
        replayed = (b"idempotent-replayed", b"true") in response.headers
        if config["dedup_window_ms"] and meta[index]["after_200"] and not meta[index]["bad"]:
            assert response.status == 200 and replayed, "a key answered 200 in the window was not replayed"
        elif replayed:
            assert config["dedup_window_ms"] and response.status == 200
        assert response.status in (200, 400, 429, 500, 502, 503, 504), response.status

    sent_numbers: list[int] = []
    for call in upstream.calls:
        assert len(call.bodies) <= config["max_items"]
        assert {str(b["k"]).encode() for b in call.bodies} == {call.key[0]}
        if config["dedup"]:
            idems = [b["idem"] for b in call.bodies if b.get("idem") is not None]
            assert len(idems) == len(set(idems)), "dedup put one key twice into a batch"
        for b in call.bodies:
            if "id" in b:
                sent_numbers.append(b["id"])
                assert call.at < meta[b["id"]]["deadline"], "an item was sent after its deadline"
    assert len(sent_numbers) == len(set(sent_numbers)), "an item was sent twice"
    assert not never_sent & set(sent_numbers), "an item cancelled before sealing was sent"

    dispatcher: Dispatcher = handler.dispatcher
    assert handler.accumulator.queued == 0 and dispatcher.in_flight == 0 and not dispatcher.dedup
    assert not handler.accumulator.queues and not dispatcher.tasks
    await handler.drain(0.01)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs, st.lists(ops, min_size=10, max_size=60))
def test_every_request_gets_exactly_one_response_and_batches_stay_clean(config, script):
    asyncio.run(scenario(config, script))


# -- the pure accumulator ---------------------------------------------------------------------------------------

acc_ops = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 2), st.integers(1, 12), st.integers(1, 80)),
    st.tuples(st.just("remove"), st.integers(0, 1000)),
    st.tuples(st.just("drain"), st.integers(0, 3)),
    st.tuples(st.just("advance"), st.integers(0, 20)),
)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(4, 40), st.sampled_from([0.0, 0.003]), st.lists(acc_ops, max_size=60))
def test_accumulator_accounts_for_every_item(cap, max_bytes, hold, script):
    clock = FakeClock(0.0)
    acc = Accumulator(max_items=cap, max_bytes=max_bytes, hold=hold, expected=lambda n: 0.001 * n,
                      tail=lambda n: 0.002 * n)
    added: list[Item] = []
    batched: list[Item] = []
    removed: set[int] = set()
    expired: set[int] = set()
    for op in script:
        now = clock.now()
        if op[0] == "add":
            _, key, priority, size, budget_ms = op
            it = Item(b"x" * size, b"POST", b"/", [], key=(bytes([key]),), priority=priority, arrived=now,
                      deadline=now + budget_ms / 1000)
            it.waiters.append(Waiter(None, now, it.deadline, it))  # type: ignore[arg-type]
            added.append(it)
            acc.add(it, now)
        elif op[0] == "remove" and added:
            it = added[op[1] % len(added)]
            if acc.remove(it):
                removed.add(id(it))
        elif op[0] == "drain":
            for waiter in acc.expire(now):
                expired.add(id(waiter.item))
            batches, late = acc.drain_ready(now, op[1])
            assert len(batches) <= op[1]
            expired.update(id(w.item) for w in late)
            for batch in batches:
                assert batch.state == "sealed" and batch.reason in ("items", "bytes", "deadline", "wait")
                assert 1 <= batch.size <= cap
                assert batch.size == 1 or batch.bytes <= max_bytes
                assert {it.key for it in batch.items} == {batch.key}
                lanes = [it.priority for it in batch.items]
                assert lanes == sorted(lanes), "lower priority before higher in a batch"
                for it in batch.items:
                    assert it.deadline > now, "a late item was sealed"
                batched.extend(batch.items)
        elif op[0] == "advance":
            clock.advance(op[1] / 1000)
        live = [it for it in added if it.state == QUEUED]
        assert acc.queued == len(live)
        for key, queue in acc.queues.items():
            mine = [it for it in live if it.key == key]
            assert queue.count == len(mine) > 0 and queue.bytes == sum(it.size for it in mine)
    # every item is in exactly one place: queued, in one batch, removed, or expired
    batched_ids = [id(it) for it in batched]
    assert len(batched_ids) == len(set(batched_ids))
    for it in added:
        places = [it.state == QUEUED, id(it) in set(batched_ids), id(it) in removed,
                  id(it) in expired and it.state == REMOVED]
        assert sum(places) == 1, (it, places)
