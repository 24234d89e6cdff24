"""A pipeline worker process: `python -m meshbatch.pipeline.worker`, started by the proxy (`pool.py`).

It reads frames on stdin and writes frames on stdout (`wire.py`): first the route's pipeline, which it builds
(stages, schemas, filter expressions), then one request at a time, answering each with its result. It exits
when stdin closes, which is also what happens when the proxy dies.

The CPU budget is enforced here: before each request a profiling timer (`ITIMER_PROF`, CPU time of this
process, not wall time, so a busy machine does not make a request fail) is armed with `max_cpu_ms`; when it
fires, the signal handler raises `OverBudget` wherever the Python code is, the run unwinds, and the answer is
413 `pipeline_cpu_exceeded`. Work that never returns to Python (stuck in C) is the proxy's to end: it kills a
worker that does not answer in time and starts another. Each answer carries this process's CPU time, by which
the proxy tells a worker that computes past its budget (413 as well) from one that is stuck (503).

The process runs at a lower scheduling priority (nice +5) than the proxy, so that on a busy machine the event
loop that answers every other request is served first.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any, BinaryIO

import msgspec

from meshbatch.config.plain import PipelineLimits, Step
from meshbatch.errors import ProxyError
from meshbatch.pipeline import wire
from meshbatch.pipeline.runner import Pipeline, Result, build_pipeline
from meshbatch.pipeline.work import OverBudget

NICE = 5


class _Budget:
    """The armed profiling timer; the handler raises only while a run is in progress."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = False
        signal.signal(signal.SIGPROF, self._fired)

    def _fired(self, signum: int, frame: Any) -> None:
        if self.armed:
            self.armed = False
            raise OverBudget

    def run(self, pipeline: Pipeline, body: bytes, headers: list[tuple[bytes, bytes]], received: float) -> Result:
        try:
            self.armed = True
            signal.setitimer(signal.ITIMER_PROF, self.seconds)
            outcome = pipeline.execute(body, headers, received)
            self.armed = False
        except OverBudget:  # fired outside the stages (while encoding, say)
            tally = [0] * (4 * len(pipeline.stages))
            if tally:
                tally[0] = tally[3] = 1
            outcome = Result(tally, pipeline.over_budget())
        finally:
            self.armed = False
            signal.setitimer(signal.ITIMER_PROF, 0)
        return outcome


def _read(stream: BinaryIO) -> Any | None:
    head = stream.read(wire.HEADER.size)
    if len(head) < wire.HEADER.size:
        return None
    size = wire.length(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return wire.load(data)


def build(spec: dict[str, Any]) -> Pipeline:
    steps = [msgspec.convert(s, Step) for s in spec["steps"]]
    return build_pipeline(spec["route"], steps, dead_letters=spec["dead_letters"],
                          limits=msgspec.convert(spec["limits"], PipelineLimits))


def serve(stdin: BinaryIO, stdout: BinaryIO) -> int:
    spec = _read(stdin)
    if spec is None:
        return 0
    try:
        pipeline = build(spec)
    except Exception as exc:  # the proxy checked this config; say why rather than die silently
        stdout.write(wire.frame({"error": f"{type(exc).__name__}: {exc}"}))
        stdout.flush()
        return 1
    budget = _Budget(pipeline.limits.max_cpu_ms / 1000)
    stdout.write(wire.frame({"ready": True, "cpu": time.process_time()}))
    stdout.flush()
    while True:
        job = _read(stdin)
        if job is None:
            return 0
        body, headers, received = wire.read_job(job)
        try:
            outcome = budget.run(pipeline, body, headers, received)
        except Exception as exc:  # a bug, not the request's fault: answer 500 and carry on
            error = ProxyError("pipeline_error", f"{type(exc).__name__}: {exc}")
            outcome = Result([0] * (4 * len(pipeline.stages)), error)
        stdout.write(wire.result(outcome, time.process_time()))
        stdout.flush()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the proxy decides when its workers stop (stdin closes)
    try:
        os.nice(NICE)
    except OSError:
        pass
    frames = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print goes to stderr, never into a frame
    return serve(sys.stdin.buffer, frames)


if __name__ == "__main__":
    sys.exit(main())
