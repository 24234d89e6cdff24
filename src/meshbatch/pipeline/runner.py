"""A route's pipeline: its stages in order, with counters per stage (in, out, dropped, failed), and where a
request's run happens.

`Pipeline.run` is the sans-I/O core: a request in, the `Work` left after the last stage out (a stage that refuses
the request raises a ProxyError: 400, 413, 415, 422, counted as `failed` first). `Pipeline.execute` wraps it
into a `Result`, the compact form that also comes back from a worker process: events already encoded as JSON,
dead letters with their reasons, the counter increments, and the error if any.

`Pipeline.resume` re-runs a dead letter: the event the pipeline parked, through the stages from the one that
parked it on (a replay of dead letters; see docs/ingestion.md).

`Pipeline.process` (awaited by the handlers) decides where the run happens, so that no request holds the event
loop for long (`pipeline_limits`, see docs/ingestion.md):
- a small, uncompressed body runs inline: the round trip to a worker costs more than the work; a deadline of
  `inline_slice_ms` of the event loop's CPU time is checked between events, and a run that reaches it is
  abandoned (nothing it did is kept or counted) and sent to a worker whole;
- so does a larger JSON or NDJSON body when the pipeline only decodes (C-speed work that grows with the body's
  bytes and values, both bounded: `inline_decode_max_bytes`, `inline_decode_max_values`);
- any other body runs in a worker process (`pool`), under the CPU budget `max_cpu_ms`;
- with `workers: 0` everything runs inline and the budget is checked between events (not preemptively).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from time import perf_counter, thread_time
from typing import Any, Protocol

import orjson

from meshbatch.config.plain import Compress, PipelineLimits, Step
from meshbatch.errors import BadRequest, ProxyError
from meshbatch.http.message import Headers, Request
from meshbatch.pipeline import stages as _stages  # noqa: F401  (declares every stage)
from meshbatch.pipeline.base import STAGE_FACTORIES, Stage, StageContext
from meshbatch.pipeline.stages.decode import DecodeStage, json_values
from meshbatch.pipeline.work import BudgetExceeded, OverBudget, Work, encode_event, encode_events
from meshbatch.telemetry.metrics import Counter, Registry

RESULTS = ("in", "out", "dropped", "failed")
IDENTITY = (b"", b"identity")


class Result:
    """What one run leaves: `events` (JSON-encoded) after a decode stage, else `body`; `headers` when a stage
    changed them (None: unchanged); `dead` (event, reason, stage place) for each parked event; `tally` the counter
    increments, 4 per stage (in, out, dropped, failed)."""

    __slots__ = ("body", "dead", "dropped", "error", "events", "failed", "headers", "tally")

    def __init__(self, tally: list[int], error: ProxyError | None = None, body: bytes = b"",
                 headers: Headers | None = None, events: list[bytes] | None = None,
                 dead: list[tuple[bytes, str, str]] | None = None, dropped: int = 0, failed: int = 0) -> None:
        self.tally = tally
        self.error = error
        self.body = body
        self.headers = headers
        self.events = events
        self.dead = dead if dead is not None else []
        self.dropped = dropped
        self.failed = failed


class Offload(Protocol):
    """Where heavy runs go: the route's worker processes (`meshbatch.pipeline.pool.WorkerPool`)."""

    async def run(self, body: bytes, headers: Headers, received: float) -> Result:
        """The run's result; raises a ProxyError when no worker could give one (overloaded, died, hung)."""
        ...


class Pipeline:
    def __init__(self, route: str, stages: Sequence[Stage], metrics: Registry | None = None,
                 compress: Compress | None = None, wall_clock: Callable[[], float] = time.time,
                 limits: PipelineLimits | None = None, positions: Sequence[int] | None = None) -> None:
        self.route = route
        self.stages = [s for s in stages if s.name != "compress"]
        # each stage's place in the route's `pipeline:` list (compress, which runs on outgoing batches, has one
        # too), as dead letters name it: `pipeline[2].validate`
        places = positions if positions is not None else range(len(self.stages))
        self.places = [f"pipeline[{i}].{s.name}" for i, s in zip(places, self.stages, strict=True)]
        self.compress = compress
        self.decodes = any(s.name == "decode" for s in self.stages)
        self.decompresses = any(s.name == "decompress" for s in self.stages)
        only = self.stages[0] if len(self.stages) == 1 else None
        self.decode_only: DecodeStage | None = only if isinstance(only, DecodeStage) else None
        self.wall_clock = wall_clock
        self.limits = limits or PipelineLimits()
        self.offload: Offload | None = None  # set by the wiring when the route has worker processes
        self.counter = (metrics.counter("meshbatch_pipeline_events_total",
                                        "Items through each pipeline stage by result (in, out, dropped, failed); "
                                        "a request counts as one item before decode.", ["route", "stage", "result"])
                        if metrics is not None else Counter("meshbatch_pipeline_events_total", "", ["route", "stage",
                                                                                                      "result"]))
        self.runs = (metrics.counter("meshbatch_pipeline_runs_total",
                                     "Pipeline runs by where they ran: inline (on the event loop), worker, or moved "
                                     "(started inline, reached inline_slice_ms, finished in a worker).",
                                     ["route", "where"])
                     if metrics is not None else Counter("meshbatch_pipeline_runs_total", "", ["route", "where"]))
        self._labels = {s.name: tuple((route, s.name, r) for r in RESULTS) for s in self.stages}
        self._flat = [label for s in self.stages for label in self._labels[s.name]]
        self._where = {w: (route, w) for w in ("inline", "worker", "moved")}

    def __bool__(self) -> bool:
        return bool(self.stages)

    # the sans-I/O core ----------------------------------------------------------------------------------------
    def _stages(self, work: Work, tally: list[int]) -> None:
        places = self.places
        for i, stage in enumerate(self.stages):
            base = 4 * i
            work.stage = places[i]
            before, dropped, failed = work.count(), work.dropped, work.failed
            tally[base] += before
            try:
                stage(work)
            except (ProxyError, OverBudget):
                tally[base + 3] += max(1, work.failed - failed)
                raise
            tally[base + 1] += work.count()
            tally[base + 2] += work.dropped - dropped
            tally[base + 3] += work.failed - failed

    def run(self, request: Request) -> Work:
        """Run every stage on the request (here, now) and count; raises the ProxyError of a refusing stage."""
        work = Work(request.body, request.headers, self.wall_clock())
        tally = [0] * len(self._flat)
        try:
            self._stages(work, tally)
        finally:
            self.count(tally)
        return work

    def execute(self, body: bytes, headers: Headers, received: float, deadline: float = math.inf,
                escalate: bool = False, cpu_deadline: float | None = None) -> Result:
        """Run and encode; a refusal is in `Result.error`. Past `deadline` (or the worker's CPU timer): OverBudget
        is raised when `escalate` (the caller moves the run elsewhere), else the result is a BudgetExceeded."""
        work = Work(body, headers, received, deadline, cpu_deadline)
        tally = [0] * len(self._flat)
        try:
            self._stages(work, tally)
            events = encode_events(work.events) if work.events is not None else None
            dead = [(encode_event(e), reason, place) for e, reason, place in work.dead]
        except ProxyError as exc:
            return Result(tally, exc)
        except OverBudget:
            if escalate:
                raise
            return Result(tally, self.over_budget())
        return Result(tally, None, work.body if events is None else b"",
                      work.headers if work.headers is not headers else None, events, dead, work.dropped, work.failed)

    def resume(self, event: bytes, place: str) -> Result:
        """Re-run a dead letter: `event` (JSON) through the stages from the one at `place` on, here and now, not
        counted in the stage counters (a replay is no new traffic). The stage is found by its place if the route
        still has that stage there, else as the route's first stage of that name; a route that no longer has
        such a stage has nothing to re-run (the event comes back as it is). The result holds the event in
        `events` (passed; transformed as the stages say), in `dead` (parked again, with the new reason), in
        neither (dropped by a filter), or an `error` (a stage refused it)."""
        name = place.rpartition(".")[2]
        if place in self.places:
            start = self.places.index(place)
        else:
            start = next((i for i, s in enumerate(self.stages) if s.name == name), len(self.stages))
        tally = [0] * len(self._flat)
        work = Work(b"", [], self.wall_clock())
        try:
            work.events = [orjson.loads(event)]
        except orjson.JSONDecodeError as exc:
            return Result(tally, BadRequest("invalid_json", f"the dead letter is not JSON ({exc.msg})"))
        try:
            for index in range(start, len(self.stages)):
                work.stage = self.places[index]
                self.stages[index](work)
            events = [encode_event(e) for e in work.events or []]
            dead = [(encode_event(e), reason, where) for e, reason, where in work.dead]
        except ProxyError as exc:
            return Result(tally, exc)
        except OverBudget:  # no deadline is set here: only a stage's own check could raise it
            return Result(tally, self.over_budget())
        return Result(tally, None, b"", None, events, dead, work.dropped, work.failed)

    def over_budget(self) -> BudgetExceeded:
        return BudgetExceeded(detail=f"preprocessing this request needs more than {self.limits.max_cpu_ms} ms of "
                                     "CPU time (pipeline_limits.max_cpu_ms)")

    def count(self, tally: list[int]) -> None:
        inc = self.counter.inc
        for label, n in zip(self._flat, tally, strict=True):
            if n:
                inc(label, n)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for stage in self.stages:
            labels = self._labels[stage.name]
            out[stage.name] = {r: int(self.counter.get(lbl)) for r, lbl in zip(RESULTS, labels, strict=True)}
        return out

    # where the run happens ------------------------------------------------------------------------------------
    def inline(self, request: Request) -> bool:
        """Whether this request runs on the event loop: small enough and not compressed; or, for a pipeline that
        only decodes, a JSON or NDJSON body within the decode limits."""
        if len(request.body) > self.limits.inline_max_bytes:
            return self.decode_only is not None and self._light(request, self.decode_only)
        if self.decompresses:
            for key, value in request.headers:
                if key == b"content-encoding" and value.strip().lower() not in IDENTITY:
                    return False
        return True

    def _light(self, request: Request, decode: DecodeStage) -> bool:
        body = request.body
        limits = self.limits
        return (len(body) <= limits.inline_decode_max_bytes and decode.textual(request.header(b"content-type"))
                and json_values(body) <= limits.inline_decode_max_values)

    async def process(self, request: Request) -> Result:
        """The request's run, inline or in a worker; raises the ProxyError that answers the request."""
        offload = self.offload
        received = self.wall_clock()
        if offload is None:  # workers: 0
            self.runs.inc(self._where["inline"])
            budget = self.limits.max_cpu_ms / 1000
            result = self.execute(request.body, request.headers, received, perf_counter() + budget,
                                  cpu_deadline=thread_time() + budget)
        elif self.inline(request):
            try:  # the slice is the event loop's own CPU time (a busy machine slows the run, it costs no more)
                piece = self.limits.inline_slice_ms / 1000
                result = self.execute(request.body, request.headers, received, perf_counter() + piece,
                                      escalate=True, cpu_deadline=thread_time() + piece)
                self.runs.inc(self._where["inline"])
            except OverBudget:
                self.runs.inc(self._where["moved"])
                result = await self._offload(offload, request, received)
        else:
            self.runs.inc(self._where["worker"])
            result = await self._offload(offload, request, received)
        self.count(result.tally)
        if result.error is not None:
            raise result.error
        return result

    async def _offload(self, offload: Offload, request: Request, received: float) -> Result:
        try:
            return await offload.run(request.body, request.headers, received)
        except ProxyError:
            if self._flat:  # the request never got through: one item in and failed at the first stage
                self.counter.inc(self._flat[0])
                self.counter.inc(self._flat[3])
            raise


def build_pipeline(route: str, steps: Sequence[Step], *, dead_letters: bool, metrics: Registry | None = None,
                   wall_clock: Callable[[], float] = time.time, limits: PipelineLimits | None = None) -> Pipeline:
    context = StageContext(route, dead_letters, wall_clock)
    stages: list[Stage] = []
    positions: list[int] = []
    compress: Compress | None = None
    for position, step in enumerate(steps):
        options: Any = step.options(step.stage)
        if step.stage == "compress":
            compress = options
            continue
        stages.append(STAGE_FACTORIES.get(step.stage)(options, context))
        positions.append(position)
    return Pipeline(route, stages, metrics, compress, wall_clock, limits, positions)


__all__ = ["RESULTS", "Offload", "Pipeline", "Result", "build_pipeline"]
