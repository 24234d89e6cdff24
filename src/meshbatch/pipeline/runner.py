"""A route's pipeline: its stages in order, with counters per stage (in, out, dropped, failed).

`Pipeline.run` takes a request and gives the `Work` left after the last stage. A stage that refuses the request
raises a ProxyError (400, 413, 415, 422), which the caller answers; it is counted as `failed` first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from meshbatch.config.model import Compress, Step
from meshbatch.errors import ProxyError
from meshbatch.http.message import Request
from meshbatch.pipeline.base import STAGE_FACTORIES, Stage, StageContext
from meshbatch.pipeline.stages import compress as _stages  # noqa: F401  (registers every stage)
from meshbatch.pipeline.work import Work
from meshbatch.telemetry.metrics import Counter, Registry

RESULTS = ("in", "out", "dropped", "failed")


class Pipeline:
    def __init__(self, route: str, stages: Sequence[Stage], metrics: Registry | None = None,
                 compress: Compress | None = None, wall_clock: Callable[[], float] = time.time) -> None:
        self.route = route
        self.stages = [s for s in stages if s.name != "compress"]
        self.compress = compress
        self.decodes = any(s.name == "decode" for s in self.stages)
        self.wall_clock = wall_clock
        self.counter = (metrics.counter("meshbatch_pipeline_events_total",
                                        "Items through each pipeline stage by result (in, out, dropped, failed); "
                                        "a request counts as one item before decode.", ["route", "stage", "result"])
                        if metrics is not None else Counter("meshbatch_pipeline_events_total", "", ["route", "stage",
                                                                                                      "result"]))
        self._labels = {s.name: tuple((route, s.name, r) for r in RESULTS) for s in self.stages}

    def __bool__(self) -> bool:
        return bool(self.stages)

    def run(self, request: Request) -> Work:
        work = Work(request.body, request.headers, self.wall_clock())
        inc = self.counter.inc
        for stage in self.stages:
            labels = self._labels[stage.name]
            before, dropped, failed = work.count(), work.dropped, work.failed
            inc(labels[0], before)
            try:
                stage(work)
            except ProxyError:
                inc(labels[3], max(1, work.failed - failed))
                raise
            inc(labels[1], work.count())
            if work.dropped != dropped:
                inc(labels[2], work.dropped - dropped)
            if work.failed != failed:
                inc(labels[3], work.failed - failed)
        return work

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for stage in self.stages:
            labels = self._labels[stage.name]
            out[stage.name] = {r: int(self.counter.get(lbl)) for r, lbl in zip(RESULTS, labels, strict=True)}
        return out


def build_pipeline(route: str, steps: Sequence[Step], *, dead_letters: bool, metrics: Registry | None = None,
                   wall_clock: Callable[[], float] = time.time) -> Pipeline:
    context = StageContext(route, dead_letters, wall_clock)
    stages: list[Stage] = []
    compress: Compress | None = None
    for step in steps:
        options: Any = step.options(step.stage)
        if step.stage == "compress":
            compress = options
            continue
        stages.append(STAGE_FACTORIES.get(step.stage)(options, context))
    return Pipeline(route, stages, metrics, compress, wall_clock)


__all__ = ["RESULTS", "Pipeline", "build_pipeline"]
