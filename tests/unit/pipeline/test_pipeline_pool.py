"""The pipeline's worker processes, real ones: results and counters as inline, the CPU budget, a worker killed
mid-request, a worker that hangs, a full queue, a queue that waits too long, workers that cannot start, close."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from meshbatch.clock import FakeClock
from meshbatch.config.model import Route
from meshbatch.config.plain import of
from meshbatch.errors import Draining
from meshbatch.http.message import Request
from meshbatch.pipeline import build_pipeline, wire
from meshbatch.pipeline.pool import WorkerPool, cpu_seconds
from meshbatch.pipeline.pools import PipelinePools
from meshbatch.pipeline.runner import Pipeline
from meshbatch.pipeline.work import BudgetExceeded, PipelineOverloaded, PipelineUnavailable
from meshbatch.telemetry.metrics import Registry

SCHEMA = {"type": "object", "required": ["t"], "properties": {"t": {"type": "number"}, "site": {"pattern": "^[a-z]+$"}}}
GZIP = (b"content-encoding", b"gzip")
NDJSON = (b"content-type", b"application/x-ndjson")


def route(limits: dict[str, Any] | None = None, **decode: Any) -> Route:
    return of(Route.model_validate({
        "name": "r", "ingest": {},
        "pipeline": ["decompress", {"decode": {"format": "ndjson", **decode}},
                     {"validate": {"schema": SCHEMA, "on_invalid": "dead_letter"}}, {"filter": "t > 0"},
                     {"transform": {"add": {"via": "worker"}}}],
        "pipeline_limits": {"inline_max_bytes": 0, **(limits or {})}}))


def post(body: bytes, *headers: tuple[bytes, bytes]) -> Request:
    return Request(b"POST", b"/", [NDJSON, *headers], body)


def make(r: Route, clock: FakeClock | None = None, **kwargs: Any) -> tuple[Pipeline, WorkerPool]:
    pipeline = build_pipeline("r", r.pipeline, dead_letters=True, metrics=Registry(), limits=r.pipeline_limits)
    pool = WorkerPool("r", wire.init(r, True), r.pipeline_limits, clock=clock, **kwargs)
    pipeline.offload = pool
    return pipeline, pool


@pytest.fixture
async def pools() -> AsyncIterator[list[WorkerPool]]:
    made: list[WorkerPool] = []
    yield made
    for pool in made:
        await pool.close(5)


async def wait_for(condition: Any, what: str) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


BODY = b'{"t": 1, "site": "eu"}\n{"t": -1}\n{"x": 1}\n{"t": 2}\n'


async def test_a_worker_gives_what_the_inline_run_gives(pools: list[WorkerPool]) -> None:
    inline = build_pipeline("r", route().pipeline, dead_letters=True, metrics=Registry())
    pipeline, pool = make(route())
    pools.append(pool)
    for request in (post(BODY), post(gzip.compress(BODY), GZIP)):
        result = await pipeline.process(request)
        work = inline.run(post(BODY))
        assert result.events == [orjson.dumps(e) for e in work.events or []]
        assert result.dead == [(orjson.dumps(e), reason, place) for e, reason, place in work.dead]
        assert (result.dropped, result.failed) == (work.dropped, work.failed)
    assert result.headers == [NDJSON]  # content-encoding consumed by decompress
    assert pipeline.counts() == inline.counts()  # two runs each: the counters add up the same


async def test_a_request_over_the_cpu_budget_is_a_413_and_the_worker_stays(pools: list[WorkerPool]) -> None:
    pipeline, pool = make(route({"max_cpu_ms": 30}, max_events=200_000))
    pools.append(pool)
    await pipeline.process(post(BODY))
    pid = pool.pids()
    heavy = gzip.compress(b'{"t": 1, "site": "eu"}\n' * 100_000)  # seconds of validation
    with pytest.raises(BudgetExceeded) as info:
        await pipeline.process(post(heavy, GZIP))
    assert info.value.status == 413 and "30 ms" in info.value.detail
    assert pool.pids() == pid and pool.restarts == {}
    assert (await pipeline.process(post(BODY))).events
    assert pipeline.counts()["validate"]["failed"] >= 1


async def test_a_worker_killed_mid_request_fails_that_request_only(pools: list[WorkerPool]) -> None:
    pipeline, pool = make(route({"max_cpu_ms": 60_000}, max_events=1_000_000))
    pools.append(pool)
    await pipeline.process(post(BODY))
    (pid,) = pool.pids()
    heavy = asyncio.ensure_future(pipeline.process(post(gzip.compress(b'{"t": 1}\n' * 800_000), GZIP)))
    await wait_for(lambda: pool.summary()["busy"] == 1, "the worker to take the request")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(PipelineUnavailable) as info:
        await heavy
    assert info.value.status == 503 and info.value.reason == "pipeline_worker_lost"
    result = await pipeline.process(post(BODY))  # a new worker
    assert result.events and pool.pids() != [pid] and pool.restarts == {"lost": 1}


async def test_a_worker_that_hangs_is_killed_and_replaced(pools: list[WorkerPool]) -> None:
    clock = FakeClock()
    pipeline, pool = make(route({"max_cpu_ms": 100}), clock)
    pools.append(pool)
    await pipeline.process(post(BODY))
    (pid,) = pool.pids()
    os.kill(pid, signal.SIGSTOP)  # it will never answer
    hung = asyncio.ensure_future(pipeline.process(post(BODY)))
    await wait_for(lambda: pool.summary()["busy"] == 1, "the worker to take the request")
    clock.advance(pool.hard_timeout - 0.1)
    pool.sweep()
    assert not hung.done()
    clock.advance(0.2)
    pool.sweep()
    with pytest.raises(PipelineUnavailable) as info:
        await hung
    assert info.value.reason == "pipeline_timeout"
    assert (await pipeline.process(post(BODY))).events and pool.restarts == {"timeout": 1}


# A worker whose run never returns to Python (as if stuck in C): it ignores the CPU timer and computes forever.
DEAF_WORKER = """
import signal, sys
from meshbatch.pipeline import wire
signal.signal(signal.SIGPROF, signal.SIG_IGN)
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
for answer in ({"ready": True, "cpu": 0.0}, None):
    stdin.read(wire.length(stdin.read(4)))
    if answer is None:
        while True:
            pass
    stdout.write(wire.frame(answer))
    stdout.flush()
"""


async def test_a_worker_computing_past_its_budget_out_of_reach_is_killed_and_the_request_gets_413(
        pools: list[WorkerPool]) -> None:
    clock = FakeClock()
    pipeline, pool = make(route({"max_cpu_ms": 50}), clock, command=(sys.executable, "-c", DEAF_WORKER))
    pools.append(pool)
    stuck = asyncio.ensure_future(pipeline.process(post(BODY)))
    await wait_for(lambda: pool.summary()["busy"] == 1, "the worker to take the request")
    (pid,) = pool.pids()
    await wait_for(lambda: (cpu_seconds(pid) or 0) > 0.1, "the worker to burn its budget")
    clock.advance(pool.hard_timeout)
    pool.sweep()
    with pytest.raises(BudgetExceeded) as info:
        await stuck
    assert info.value.status == 413 and "its worker was replaced" in info.value.detail
    assert pool.restarts == {"cpu": 1}


async def test_a_full_queue_is_a_503_with_retry_after_and_a_long_wait_too(pools: list[WorkerPool]) -> None:
    clock = FakeClock()
    pipeline, pool = make(route({"max_queue": 1, "max_queue_ms": 500}), clock)
    pools.append(pool)
    await pipeline.process(post(BODY))
    (pid,) = pool.pids()
    os.kill(pid, signal.SIGSTOP)
    try:
        first = asyncio.ensure_future(pipeline.process(post(BODY)))  # taken by the (stopped) worker
        await wait_for(lambda: pool.summary()["busy"] == 1, "the worker to take the request")
        second = asyncio.ensure_future(pipeline.process(post(BODY)))  # waits in the queue
        await wait_for(lambda: pool.summary()["queued"] == 1, "the request to queue")
        with pytest.raises(PipelineOverloaded) as info:
            await pipeline.process(post(BODY))
        assert (info.value.status, info.value.reason, info.value.retry_after) == (503, "pipeline_overloaded", 1.0)
        clock.advance(0.6)
        pool.sweep()
        with pytest.raises(PipelineOverloaded, match="no pipeline worker was free within 500 ms"):
            await second
    finally:
        os.kill(pid, signal.SIGCONT)
    assert (await first).events
    assert pipeline.counts()["decompress"]["failed"] == 2


async def test_workers_that_cannot_start_answer_503_not_a_hang(pools: list[WorkerPool]) -> None:
    pipeline, pool = make(route(), command=(sys.executable, "-c", "import sys; sys.exit(3)"))
    pools.append(pool)
    with pytest.raises(PipelineUnavailable, match="no pipeline worker could start"):
        await pipeline.process(post(BODY))


async def test_close_finishes_the_queue_then_stops_the_workers() -> None:
    pipeline, pool = make(route())
    await pipeline.process(post(BODY))
    (pid,) = pool.pids()
    pending = [asyncio.ensure_future(pipeline.process(post(BODY))) for _ in range(5)]
    await asyncio.sleep(0)
    await pool.close(10)
    assert all(p.result().events for p in pending)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(Draining):
        await pipeline.process(post(BODY))


async def test_pools_follow_snapshots_same_spec_same_pool() -> None:
    pools = PipelinePools(Registry())
    r1 = route()
    p1 = build_pipeline("r", r1.pipeline, dead_letters=True)
    pools.attach(r1, p1, True)
    pools.commit()
    p2 = build_pipeline("r", r1.pipeline, dead_letters=True)
    pools.attach(r1, p2, True)  # a reload with the same pipeline: the same workers
    pools.commit()
    assert p2.offload is p1.offload and p1.offload in pools.pools()
    changed = route({"max_cpu_ms": 50})
    p3 = build_pipeline("r", changed.pipeline, dead_letters=True)
    pools.attach(changed, p3, True)
    pools.rollback()  # that snapshot was abandoned: its new pool goes, the live one stays
    assert pools.pools() == [p1.offload]
    pools.attach(changed, p3, True)
    pools.commit()
    assert pools.pools() == [p3.offload] and p3.offload is not p1.offload
    await pools.stop(5)
    assert pools.pools() == []
