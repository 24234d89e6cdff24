"""A pipeline that only decodes runs JSON and NDJSON bodies on the event loop up to `inline_decode_max_bytes` and
`inline_decode_max_values` (what the decoder's work grows with, counted in C), and any other body in a worker;
NDJSON lines are walked for their depth only when they hold more brackets than `max_depth`. The inline slice
is the event loop's CPU time: a run the machine paused stays inline."""

from __future__ import annotations

import time
from typing import Any

import pytest

from meshbatch.config.model import PipelineLimits, Step
from meshbatch.errors import BadRequest
from meshbatch.http.message import Headers, Request
from meshbatch.pipeline import build_pipeline
from meshbatch.pipeline.runner import Pipeline, Result
from meshbatch.pipeline.stages.decode import decode_ndjson, json_values
from meshbatch.pipeline.work import OverBudget, Work
from meshbatch.telemetry.metrics import Registry

NDJSON = (b"content-type", b"application/x-ndjson")
MSGPACK = (b"content-type", b"application/msgpack")
EVENT = b'{"temperature": 31.5, "site": "eu", "sensor": "s-0042", "unit": "C"}\n'


class FakeOffload:
    def __init__(self, stages: int) -> None:
        self.calls: list[bytes] = []
        self.stages = stages

    async def run(self, body: bytes, headers: Headers, received: float) -> Result:
        self.calls.append(body)
        return Result([0] * 4 * self.stages, events=[])


def pipeline(*steps: Any, limits: dict[str, Any] | None = None) -> tuple[Pipeline, FakeOffload, Registry]:
    registry = Registry()
    p = build_pipeline("r", [Step.model_validate(s) for s in steps], dead_letters=False, metrics=registry,
                       limits=PipelineLimits.model_validate(limits or {}))
    p.offload = offload = FakeOffload(len(p.stages))
    return p, offload, registry


def post(body: bytes, *headers: tuple[bytes, bytes]) -> Request:
    return Request(b"POST", b"/events", list(headers), body)


def runs(registry: Registry) -> tuple[float, float]:
    counter = registry.counter("meshbatch_pipeline_runs_total", "", ["route", "where"])
    return counter.get(("r", "inline")), counter.get(("r", "worker"))


def test_the_defaults_bound_a_decode_only_inline_run() -> None:
    limits = PipelineLimits()
    assert (limits.inline_decode_max_bytes, limits.inline_decode_max_values) == (65_536, 2048)
    assert limits.inline_max_bytes == 512  # every other pipeline: as before


def test_values_are_counted_from_commas_brackets_braces_and_newlines() -> None:
    assert json_values(b"") == 0 and json_values(b'"a,b"') == 1  # an upper bound: a comma in a string counts
    assert json_values(EVENT * 100) == 500
    assert json_values(b"[[],{}]\n1\n") == 6


async def test_a_hundred_event_ndjson_body_is_decoded_on_the_loop() -> None:
    p, offload, registry = pipeline({"decode": {"format": "ndjson"}})
    body = EVENT * 100
    assert len(body) > p.limits.inline_max_bytes
    result = await p.process(post(body, NDJSON))
    assert result.events is not None and len(result.events) == 100 and offload.calls == []
    assert result.events[0] == b'{"temperature":31.5,"site":"eu","sensor":"s-0042","unit":"C"}'
    assert runs(registry) == (1, 0)


@pytest.mark.parametrize(("body", "headers", "limits"), [
    pytest.param(b'"' + b"a" * 65_535 + b'"', (), {}, id="over inline_decode_max_bytes"),
    pytest.param(b"1\n" * 2049, (NDJSON,), {}, id="over inline_decode_max_values"),
    pytest.param(EVENT * 100, (NDJSON,), {"inline_decode_max_values": 100}, id="lower values limit"),
    pytest.param(EVENT * 100, (NDJSON,), {"inline_decode_max_bytes": 0}, id="decode inline off"),
])
async def test_bodies_beyond_the_decode_limits_go_to_a_worker(body: bytes, headers: tuple[tuple[bytes, bytes], ...],
                                                             limits: dict[str, Any]) -> None:
    p, offload, registry = pipeline("decode", limits=limits)
    await p.process(post(body, *headers))
    assert offload.calls == [body] and runs(registry) == (0, 1)


async def test_msgpack_and_pipelines_that_do_more_than_decode_keep_the_small_body_rule() -> None:
    body = EVENT * 10
    for steps, headers in [(["decode"], (MSGPACK,)),
                           ([{"decode": {"format": "msgpack"}}], ()),
                           (["decode", {"filter": "temperature > 30"}], (NDJSON,)),
                           (["decompress", "decode"], (NDJSON,))]:
        p, offload, _ = pipeline(*steps)
        await p.process(post(body, *headers))
        assert offload.calls == [body], steps


async def test_a_decode_only_body_within_the_limits_that_turns_out_slow_still_moves_to_a_worker() -> None:
    p, offload, registry = pipeline({"decode": {"format": "ndjson"}})
    # (the model's floor is 1 ms) a slice of none: the deadline has passed at the first event
    p.limits = PipelineLimits.model_construct(**{**p.limits.model_dump(), "inline_slice_ms": 0})
    body = b"1\n" * 2000
    await p.process(post(body, NDJSON))
    counter = registry.counter("meshbatch_pipeline_runs_total", "", ["route", "where"])
    assert offload.calls == [body] and counter.get(("r", "moved")) == 1


def test_only_lines_with_more_brackets_than_max_depth_are_walked() -> None:
    deep: list[int] = []
    shallow = b"[" + b",".join([b"[]"] * 40) + b"]"  # 41 brackets on one line, 2 levels
    events = decode_ndjson(b'{"a": 1}\n' + shallow + b"\n" + b"[" * 5 + b"]" * 5 + b"\n", 10, max_depth=4,
                           deep=deep)
    assert len(events) == 3 and deep == [1, 2]


async def test_a_deep_line_among_many_is_refused_with_its_place() -> None:
    p, offload, _ = pipeline({"decode": {"format": "ndjson", "max_depth": 8}})
    body = EVENT * 50 + b"[" * 9 + b"]" * 9 + b"\n" + EVENT
    with pytest.raises(BadRequest) as info:
        await p.process(post(body, NDJSON))
    assert info.value.reason == "too_deep" and info.value.detail.startswith("event 50 nests")
    assert offload.calls == []
    fine = EVENT * 50 + b"[" + b",".join([b"[]"] * 20) + b"]\n"  # many brackets, 2 levels: accepted
    result = await p.process(post(fine, NDJSON))
    assert result.events is not None and len(result.events) == 51


class PausedStage:
    """A stage whose events each take wall-clock time but no CPU time, as when the machine runs other processes
    (the thread is not running)."""

    name = "validate"

    def __call__(self, work: Work) -> None:
        assert work.events is not None
        for _ in work.events:
            work.tick()
            time.sleep(0.004)


async def test_the_inline_slice_counts_the_loops_cpu_time_not_the_time_others_took() -> None:
    decode = build_pipeline("r", [Step.model_validate("decode")], dead_letters=False).stages[0]
    registry = Registry()
    # 5 ms of CPU is far more than five tiny events take, even on a loaded machine; 20 ms of wall clock is not
    p = Pipeline("r", [decode, PausedStage()], registry, limits=PipelineLimits(inline_slice_ms=5))
    p.offload = offload = FakeOffload(2)
    result = await p.process(post(b"{}\n" * 5, NDJSON))  # 20 ms on the clock, far less of CPU: stays inline
    assert result.events is not None and len(result.events) == 5 and offload.calls == []
    assert runs(registry) == (1, 0)


def test_past_the_wall_clock_deadline_only_the_cpu_deadline_decides() -> None:
    now = time.perf_counter()
    spare = Work(b"", [], 0.0, now - 1, cpu_deadline=time.thread_time() + 60)
    spare.tick()  # CPU time left: the wall-clock deadline moves on
    assert spare.deadline > now
    with pytest.raises(OverBudget):
        Work(b"", [], 0.0, now - 1, cpu_deadline=time.thread_time() - 1).tick()
    with pytest.raises(OverBudget):
        Work(b"", [], 0.0, now - 1).tick()  # no CPU deadline: the wall clock alone
