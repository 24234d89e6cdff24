"""What moves through a pipeline: one request's body, then the events decoded from it.

Stages before `decode` see the body (bytes); `decode` turns it into `events` (JSON values); later stages
work on events. Events a stage routes to dead letters (e.g. `validate` with `on_invalid: dead_letter`) leave
`events` for `dead` (`park`), with the reason and the place of the stage that parked them (`pipeline[2].validate`:
a replay of the letter resumes there, see `Pipeline.resume`).

A run has a deadline (`perf_counter` seconds): stages call `tick()` once per event, which raises `OverBudget`
past it (with a CPU deadline too, only once the thread's own CPU time has passed that as well: a machine busy
with other processes makes a run take longer, not cost more). On the event loop that is how a request that
turned out heavier than it looked stops early and moves to a worker process; in a worker the CPU timer raises
the same exception wherever the work is.
"""

from __future__ import annotations

import math
from time import perf_counter, thread_time
from typing import Any

import orjson

from meshbatch.errors import BadRequest, Overloaded, ProxyError
from meshbatch.http.message import Headers


class InvalidEvent(ProxyError):
    """422: the request is well-formed but an event in it breaks the route's rules (schema, filter)."""

    status, flag, default_reason = 422, "DPE", "invalid_event"


class UnsupportedEncoding(ProxyError):
    """415: a Content-Encoding or Content-Type the route does not take."""

    status, flag, default_reason = 415, "DPE", "unsupported_media_type"


class BudgetExceeded(ProxyError):
    """413: the request needs more CPU time than `pipeline_limits.max_cpu_ms` allows (sending it again will not
    help: the same body costs the same)."""

    status, flag, default_reason = 413, "DPE", "pipeline_cpu_exceeded"


class PipelineOverloaded(Overloaded):
    """503 with Retry-After: the route's pipeline workers are all busy and their queue is full (or a request
    waited in it too long)."""

    status, flag, default_reason = 503, "UO", "pipeline_overloaded"


class PipelineUnavailable(ProxyError):
    """503: the worker running the request died or stopped answering (it is replaced; other requests go on)."""

    status, flag, default_reason = 503, "UH", "pipeline_worker_lost"


class OverBudget(Exception):
    """The run passed its deadline (raised by `Work.tick`, or by the worker's CPU timer)."""


def encode_event(event: Any) -> bytes:
    """An event as compact JSON, the form it travels in from here on."""
    try:
        return orjson.dumps(event)
    except TypeError as exc:
        raise BadRequest("invalid_event", f"an event has no JSON form ({exc})") from None


def encode_events(events: list[Any]) -> list[bytes]:
    """`encode_event` of each, in C when all have a JSON form (the usual), else one by one for the error."""
    try:
        return list(map(orjson.dumps, events))
    except TypeError:
        return [encode_event(event) for event in events]


class Work:
    __slots__ = ("body", "cpu_deadline", "dead", "deadline", "dropped", "events", "failed", "headers", "received",
                 "stage")

    def __init__(self, body: bytes, headers: Headers, received: float, deadline: float = math.inf,
                 cpu_deadline: float | None = None) -> None:
        self.body = body
        self.headers = headers
        self.received = received  # wall-clock seconds (for `transform.stamp`)
        self.deadline = deadline  # perf_counter seconds; inf: no cooperative deadline
        self.cpu_deadline = cpu_deadline  # thread_time seconds, checked once `deadline` has passed; None: none
        self.events: list[Any] | None = None
        self.dead: list[tuple[Any, str, str]] = []  # (event, reason, the place of the stage that parked it)
        self.stage = ""  # the place of the running stage, `pipeline[i].name` (set by the runner)
        self.dropped = 0
        self.failed = 0

    def park(self, event: Any, reason: str) -> None:
        """Route `event` to the dead letters with `reason` (the running stage's place goes with it)."""
        self.dead.append((event, reason, self.stage))

    def tick(self) -> None:
        """Called once per event by the per-event stages: raises OverBudget past the deadline."""
        if perf_counter() > self.deadline:
            self._late()

    def _late(self) -> None:
        """Past the wall-clock deadline (cheap to read): over budget unless the thread's CPU time (a system call)
        is still short of the CPU deadline, in which case the wall-clock one moves to when it could be reached."""
        if self.cpu_deadline is not None:
            left = self.cpu_deadline - thread_time()
            if left > 0:
                self.deadline = perf_counter() + left
                return
        raise OverBudget

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def count(self) -> int:
        return 1 if self.events is None else len(self.events)


__all__ = ["BudgetExceeded", "InvalidEvent", "OverBudget", "PipelineOverloaded", "PipelineUnavailable",
           "UnsupportedEncoding", "Work", "encode_event",
           "encode_events"]
