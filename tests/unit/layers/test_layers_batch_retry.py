"""Item-level retries in the batcher: only the items that failed go again, within budget and deadlines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
from layers_support import cluster, draws, target

sys.path.insert(0, str(Path(__file__).parents[1] / "batching"))
from batching_support import Upstream, request, settle, submit

from meshbatch.batching.handler import BatchHandler
from meshbatch.config.model import Batch, Retry
from meshbatch.errors import ConnectFailed
from meshbatch.http.message import Headers, Response
from meshbatch.layers.metrics import LayerMetrics
from meshbatch.layers.retry import RetryPolicy
from meshbatch.telemetry.metrics import Registry
from meshbatch.upstream.exchange import ATTEMPT
from meshbatch.upstream.target import Target


class Routed(Upstream):
    """The scripted upstream, behind a sender that plays the guarded sender's part: it fixes the target."""

    def __init__(self, chosen: Target) -> None:
        super().__init__()
        self.chosen = chosen
        self.attempts: list[int] = []

    async def __call__(self, method: bytes, path: bytes, headers: Headers, body: bytes, timeout: float,
                       key: tuple[bytes, ...]) -> Response:
        attempt = ATTEMPT.get()
        assert attempt is not None
        attempt.target = self.chosen
        self.attempts.append(attempt.number)
        return await super().__call__(method, path, headers, body, timeout, key)


async def make(registry: Registry | None = None, budget: dict[str, Any] | None = None, timeout: float = 2.0,
               **config: Any) -> tuple[BatchHandler, Routed, RetryPolicy]:
    registry = registry or Registry()
    breakers: dict[str, Any] = {} if budget is None else {"retry_budget": budget}
    upstream = Routed(target(cluster(), **breakers))
    rules = RetryPolicy("orders", Retry(retry_on=["5xx"], num_retries=2, backoff={"base_ms": 1}),
                        LayerMetrics.of(registry), draws(0.0))
    handler = BatchHandler("orders", Batch(**config), upstream, timeout=timeout, metrics=registry, retry=rules)
    return handler, upstream, rules


async def test_a_refused_batch_is_sent_again_whole() -> None:
    handler, upstream, rules = await make()
    tasks = [submit(handler, request({"n": i})) for i in range(3)]
    await settle()
    upstream.calls[0].reply(503)
    await settle(20)
    assert len(upstream.calls) == 2 and upstream.calls[1].items == [{"n": 0}, {"n": 1}, {"n": 2}]
    upstream.calls[1].echo()
    answers = [await t for t in tasks]
    assert [a.status for a in answers] == [200, 200, 200]
    assert upstream.attempts == [0, 1]
    assert rules.metrics is not None and rules.metrics.attempts.get(("orders", "retry")) == 3  # in items


async def test_only_failed_items_of_an_envelope_go_again() -> None:
    handler, upstream, _ = await make(codec="envelope")
    tasks = [submit(handler, request({"n": i})) for i in range(3)]
    await settle()
    sent = orjson.loads(upstream.calls[0].body)["requests"]
    upstream.calls[0].reply_json({"responses": [
        {"id": sent[0]["id"], "status": 201, "body": "a"},
        {"id": sent[1]["id"], "status": 503, "body": "busy"},
        {"id": sent[2]["id"], "status": 409, "body": "conflict"},  # not a retry condition
    ]})
    await settle(20)
    again = orjson.loads(upstream.calls[1].body)["requests"]
    assert [r["id"] for r in again] == [sent[1]["id"]] and again[0]["body"] == {"n": 1}
    upstream.calls[1].reply_json({"responses": [{"id": again[0]["id"], "status": 200, "body": "ok"}]})
    assert [(await t).status for t in tasks] == [201, 200, 409]


async def test_retries_run_out_and_the_last_answer_stands() -> None:
    handler, upstream, rules = await make()
    task = submit(handler, request({"n": 1}))
    for round_ in range(3):
        await settle(20)
        upstream.calls[round_].reply(503)
    response = await task
    assert response.status == 502 and response.reason == "upstream_status_503"
    assert len(upstream.calls) == 3
    assert rules.metrics is not None and rules.metrics.retries_denied.get(("orders", "exhausted")) == 1


async def test_errors_without_an_answer_are_retried() -> None:
    handler, upstream, _ = await make()
    task = submit(handler, request({"n": 1}))
    await settle()
    upstream.calls[0].fail(ConnectFailed("upstream_connect_failed", "refused"))
    await settle(20)
    upstream.calls[1].echo()
    assert (await task).status == 200


async def test_the_budget_trims_a_retry_to_the_most_urgent_items() -> None:
    budget = {"budget_percent": 0, "min_retry_concurrency": 5, "min_retries_per_second": 0.1, "window_ms": 10_000}
    handler, upstream, rules = await make(budget=budget)  # 0.1/s x 10 s: one unit of retry
    late = submit(handler, request({"n": 0}))
    soon = submit(handler, request({"n": 1}, [(b"x-meshbatch-deadline-ms", b"1000")]))
    await settle()
    upstream.calls[0].reply(503)
    await settle(20)
    assert upstream.calls[1].items == [{"n": 1}]
    upstream.calls[1].echo()
    assert (await soon).status == 200 and (await late).status == 502
    assert rules.metrics is not None and rules.metrics.retries_denied.get(("orders", "budget")) == 1


async def test_items_nobody_waits_for_are_not_sent_again() -> None:
    handler, upstream, rules = await make()
    task = submit(handler, request({"n": 1}))
    await settle()
    task.cancel()
    await settle()
    upstream.calls[0].reply(503)
    await settle(20)
    assert len(upstream.calls) == 1
    assert rules.metrics is not None and rules.metrics.retries_denied.get(("orders", "no_caller")) == 1
