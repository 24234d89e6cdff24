"""Bounded work per request: events counted while splitting, nesting depth, blank NDJSON lines at C speed, and
the CPU budget where the run happens (inline with a deadline checked between events, or moved to a worker)."""

from __future__ import annotations

import asyncio
import gzip
import math
import time
from typing import Any

import msgpack
import orjson
import pytest
import zstandard

from meshbatch.config.model import Compress, PipelineLimits, Step
from meshbatch.errors import BadRequest, PayloadTooLarge
from meshbatch.http.message import Headers, Request, Response
from meshbatch.pipeline import PipelineLayer, build_pipeline
from meshbatch.pipeline.handler import FAN_OUT
from meshbatch.pipeline.runner import Pipeline, Result
from meshbatch.pipeline.stages.compress import CompressingSender
from meshbatch.pipeline.stages.decode import decode_ndjson, depth
from meshbatch.pipeline.work import BudgetExceeded, OverBudget, Work
from meshbatch.service import Call
from meshbatch.telemetry.metrics import Registry


def pipeline(*steps: Any, limits: dict[str, Any] | None = None, registry: Registry | None = None) -> Pipeline:
    return build_pipeline("r", [Step.model_validate(s) for s in steps], dead_letters=True, metrics=registry,
                          limits=PipelineLimits.model_validate(limits or {}))


def post(body: bytes, *headers: tuple[bytes, bytes]) -> Request:
    return Request(b"POST", b"/events", list(headers), body)


NDJSON = (b"content-type", b"application/x-ndjson")


def test_max_events_defaults_to_ten_thousand_and_stops_splitting_at_the_first_extra() -> None:
    decode = Step.model_validate("decode").decode
    assert decode is not None and decode.max_events == 10_000
    body = b'{"a": 1}\n' * 3 + b"not json\n"
    with pytest.raises(PayloadTooLarge) as info:  # the bad line is never parsed: splitting stopped before it
        pipeline({"decode": {"max_events": 3}}).run(post(body, NDJSON))
    assert info.value.reason == "too_many_events"
    assert len(decode_ndjson(b'{"a": 1}\n' * 3, 3)) == 3


def test_blank_lines_cost_nearly_nothing() -> None:
    blank = b"\n" * (8 << 20)
    work = pipeline("decompress", "decode").run(post(gzip.compress(blank), NDJSON, (b"content-encoding", b"gzip")))
    assert work.events == []
    for filler in (b"\r\n", b" \t\n", b"   "):
        assert decode_ndjson(filler * ((8 << 20) // len(filler)), 10) == []
    # Against a Python iteration per line, timed in the same run (a loaded machine slows both alike).
    start = time.perf_counter()
    assert [line for line in blank.split(b"\n") if line.strip()] == []
    per_line = time.perf_counter() - start
    start = time.perf_counter()
    decode_ndjson(blank, 10)
    assert time.perf_counter() - start < per_line / 4


def test_ndjson_lines_keep_their_numbers_and_whitespace_rules() -> None:
    assert decode_ndjson(b'  {"a": 1}  \r\n\n\t\n[2]\n', 10) == [{"a": 1}, [2]]
    with pytest.raises(BadRequest, match="line 4 is not valid JSON"):
        decode_ndjson(b'1\n\n2\n{"a": \n', 10)


def deep(levels: int) -> Any:
    value: Any = 1
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("fmt", ["json", "ndjson", "msgpack", "split"])
def test_nesting_deeper_than_max_depth_is_a_400(fmt: str) -> None:
    decode = {"format": "json" if fmt == "split" else fmt, "max_depth": 64, "split_arrays": fmt == "split"}

    def body(levels: int) -> bytes:
        if fmt == "msgpack":
            return msgpack.packb(deep(levels))
        if fmt == "ndjson":
            return b'{"ok": 1}\n' + orjson.dumps(deep(levels)) + b"\n"
        return orjson.dumps([{"ok": 1}, deep(levels)] if fmt == "split" else deep(levels))

    assert pipeline({"decode": decode}).run(post(body(64))).events is not None
    with pytest.raises(BadRequest) as info:
        pipeline({"decode": decode}).run(post(body(65)))
    assert info.value.reason == "too_deep" and "more than 64 levels" in info.value.detail


def test_depth_counts_containers_iteratively() -> None:
    assert depth(1, 5) == 0 and depth({}, 5) == 1 and depth([{"a": [1]}], 5) == 3
    assert depth(deep(100_000), 64) == 65  # no recursion: stops counting past the limit


def test_brackets_inside_strings_do_not_fool_the_depth_check() -> None:
    text = orjson.dumps({"s": "[[[[[[[[[[{{{{{{{{{{{{"})
    assert pipeline({"decode": {"max_depth": 2}}).run(post(text)).events == [{"s": "[[[[[[[[[[{{{{{{{{{{{{"}]


class BurnStage:
    """A stage whose events each take `seconds` of CPU time (checking the deadline, as real stages do)."""

    name = "validate"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, work: Work) -> None:
        assert work.events is not None
        for _ in work.events:
            work.tick()
            end = time.perf_counter() + self.seconds
            while time.perf_counter() < end:
                pass


class FakeOffload:
    def __init__(self, answer: Result) -> None:
        self.answer = answer
        self.calls: list[bytes] = []

    async def run(self, body: bytes, headers: Headers, received: float) -> Result:
        self.calls.append(body)
        return self.answer


def burning(limits: dict[str, Any], seconds: float, registry: Registry) -> Pipeline:
    decode = build_pipeline("r", [Step.model_validate("decode")], dead_letters=False).stages[0]
    return Pipeline("r", [decode, BurnStage(seconds)], registry, limits=PipelineLimits.model_validate(limits))


async def test_a_run_that_reaches_the_inline_slice_moves_to_a_worker_and_counts_once() -> None:
    registry = Registry()
    p = burning({"inline_slice_ms": 1}, 0.001, registry)
    answer = Result([1, 1, 0, 0, 50, 50, 0, 0], events=[b"{}"] * 50)
    p.offload = offload = FakeOffload(answer)
    body = b"{}\n" * 50  # 150 bytes: inline by size, 50 ms of work by content
    result = await p.process(post(body, NDJSON))
    assert result is answer and offload.calls == [body]
    assert p.counts() == {"decode": {"in": 1, "out": 1, "dropped": 0, "failed": 0},
                          "validate": {"in": 50, "out": 50, "dropped": 0, "failed": 0}}  # the worker's, not twice
    assert registry.counter("meshbatch_pipeline_runs_total", "", ["route", "where"]).get(("r", "moved")) == 1


async def test_small_bodies_run_inline_and_large_or_compressed_ones_in_a_worker() -> None:
    registry = Registry()
    p = burning({"inline_max_bytes": 64}, 0, registry)
    p.decompresses = True
    p.offload = offload = FakeOffload(Result([0] * 8, events=[]))
    await p.process(post(b"{}\n" * 10, NDJSON))
    assert offload.calls == []
    await p.process(post(b"{}\n" * 30, NDJSON))
    await p.process(post(b"{}", (b"content-encoding", b"gzip")))
    assert len(offload.calls) == 2
    runs = registry.counter("meshbatch_pipeline_runs_total", "", ["route", "where"])
    assert (runs.get(("r", "inline")), runs.get(("r", "worker"))) == (1, 2)


async def test_without_workers_the_budget_is_checked_between_events() -> None:
    registry = Registry()
    p = burning({"workers": 0, "max_cpu_ms": 5}, 0.002, registry)
    with pytest.raises(BudgetExceeded) as info:
        await p.process(post(b"{}\n" * 100, NDJSON))
    assert info.value.status == 413 and info.value.reason == "pipeline_cpu_exceeded"
    assert "5 ms" in info.value.detail
    assert p.counts()["validate"]["failed"] == 1


def test_no_deadline_by_default() -> None:
    assert Work(b"", [], 0.0).deadline == math.inf


async def test_a_request_of_many_events_fans_out_without_holding_the_loop() -> None:
    """Ten thousand events become ten thousand batch items: other work must run while they are started."""
    timeline: list[str] = []

    async def inner(request: Request) -> Response:
        timeline.append("item")
        await asyncio.sleep(0)
        return Response(200, [], b'{"ok": true}')

    async def other_work() -> None:
        while True:
            timeline.append("other")
            await asyncio.sleep(0)

    p = pipeline("decode", limits={"inline_decode_max_bytes": 0})  # the body goes to the (fake) worker
    p.offload = FakeOffload(Result([0] * 4, events=[b'{"t": 1}'] * 10_000))
    handler = PipelineLayer(p, inner)
    probe = asyncio.ensure_future(other_work())
    await asyncio.sleep(0)
    response = await handler(Call(post(b"x" * 4096, NDJSON)))
    probe.cancel()
    assert response.status == 200 and len(orjson.loads(response.body)["results"]) == 10_000
    first, last = timeline.index("item"), len(timeline) - 1 - timeline[::-1].index("item")
    assert timeline[first:last].count("other") >= 10_000 // FAN_OUT - 1


async def test_a_large_batch_is_compressed_off_the_event_loop() -> None:
    sent: list[bytes] = []

    async def send(method: bytes, path: bytes, headers: Headers, body: bytes, timeout: float,
                   key: tuple[bytes, ...]) -> Response:
        sent.append(body)
        return Response(200, [], b"[]")

    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0.005)
            turns += 1

    body = orjson.dumps([{"t": i * 1.37, "site": "eu", "id": f"dev-{i}"} for i in range(15_000)])  # ~0.8 MB
    sender = CompressingSender(send, Compress(encoding="zstd", level=19, min_bytes=0))  # ~1 s of CPU
    probe = asyncio.ensure_future(other_work())
    await asyncio.sleep(0)
    start = time.perf_counter()
    await sender(b"POST", b"/batch", [], body, 10.0, ())
    elapsed = time.perf_counter() - start
    probe.cancel()
    assert zstandard.ZstdDecompressor().decompress(sent[0]) == body
    assert turns >= elapsed / 0.005 / 4, (turns, elapsed)  # the loop kept turning while zstd worked


def test_ndjson_checks_the_deadline_every_eighth_line_and_counts_brackets_only_where_depth_can_hide() -> None:
    ticks: list[int] = []
    events = decode_ndjson(b'{"a": 1}\n' * 20, 100, lambda: ticks.append(1))
    assert len(events) == 20 and len(ticks) == 3  # before lines 0, 8 and 16

    def late() -> None:
        raise OverBudget

    with pytest.raises(OverBudget):
        decode_ndjson(b"1\n" * 20, 100, late)
    deep: list[int] = []
    minimal = b"[" * 5 + b"]" * 5  # the shortest value nested 5 deep: 2 x 5 bytes, counted
    brackets = b'["[[[[["]'  # brackets in a string, a line shorter than that: not counted (it cannot nest 5 deep)
    assert decode_ndjson(minimal + b"\n" + brackets + b"\n", 10, max_depth=4, deep=deep)[1] == ["[[[[["]
    assert deep == [0]
