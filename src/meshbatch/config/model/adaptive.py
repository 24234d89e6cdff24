"""`batch.adaptive`: the adaptive hold (a p99 target) or a canary that tries a candidate setting
(meshbatch.batching.adaptive, meshbatch.batching.canary)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from meshbatch.config.model.base import Model


class Candidate(Model):
    """`batch.adaptive.candidate`: the setting a canary tries (what `meshbatch tune` recommends); a key left out
    keeps the route's own value."""

    max_items: Annotated[int, Field(ge=1, le=100_000)] | None = None
    min_wait_ms: Annotated[float, Field(ge=0, le=600_000)] | None = None
    max_wait_ms: Annotated[float, Field(ge=0, le=600_000)] | None = None
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] | None = None


class Sweep(Model):
    """`batch.adaptive.sweep`: with a canary and no `candidate`, the proxy finds the setting to try itself: once the
    route's batch recorder holds enough traffic, `meshbatch tune`'s sweep runs in a separate process on it."""

    min_arrivals: Annotated[int, Field(ge=2, le=10_000_000)] = 2_000  # recorded item arrivals before a sweep
    min_batches: Annotated[int, Field(ge=2, le=1_000_000)] = 50  # recorded batches (with their upstream times)
    timeout_ms: Annotated[float, Field(ge=100, le=600_000)] = 30_000  # then the sweep's process is killed
    memory_mb: Annotated[int, Field(ge=64, le=65_536)] = 1_024  # the sweep process's address space
    retry_ms: Annotated[float, Field(ge=100, le=86_400_000)] | None = None  # next sweep: default 10 x window_ms


def _share(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("must be a share of the batches, 0 < canary <= 0.5 (e.g. 0.1)")
    return value


class Adaptive(Model):
    """`batch.adaptive`: the hold and size cap moved by a p99 target (`target_p99_ms`), or a canary that tries a
    candidate setting on a share of the batches and promotes or rolls it back by itself (batching/canary.py)."""

    target_p99_ms: Annotated[float, Field(gt=0, le=600_000)] | None = None
    window: Annotated[int, Field(ge=8, le=10_000)] = 256
    # the canary: the share of batches formed under `candidate`, judged against the others every `window_ms`
    canary: Annotated[float, BeforeValidator(_share), Field(gt=0, le=0.5)] | None = None
    candidate: Candidate | None = None  # None: found by a sweep of the recorded traffic (`sweep`)
    sweep: Sweep | None = None
    window_ms: Annotated[float, Field(ge=100, le=3_600_000)] = 10_000
    min_batches: Annotated[int, Field(ge=5, le=1_000_000)] = 20  # per arm and window, before any judgement
    max_p99_increase_percent: Annotated[float, Field(ge=0, le=1000)] = 10
    p99_slack_ms: Annotated[float, Field(ge=0, le=60_000)] = 1
    min_cost_decrease_percent: Annotated[float, Field(ge=0, le=99)] = 0
    max_error_increase_percent: Annotated[float, Field(ge=0, le=100)] = 1
    min_failed_batches: Annotated[int, Field(ge=1, le=10_000)] = 3
    passes: Annotated[int, Field(ge=1, le=100)] = 2  # passing windows in a row to promote
    failures: Annotated[int, Field(ge=1, le=100)] = 2  # failing windows to roll back
    max_windows: Annotated[int, Field(ge=1, le=1000)] = 10  # judged or not: then an undecided canary rolls back
    decisions_kept: Annotated[int, Field(ge=1, le=1000)] = 20  # in /batchers

    @model_validator(mode="after")
    def _mode(self) -> Adaptive:
        if self.target_p99_ms is None and self.canary is None:
            raise ValueError("set target_p99_ms (the adaptive hold) or canary (a share of batches to try "
                             "candidate on)")
        if self.target_p99_ms is not None and self.canary is not None:
            raise ValueError("a canary compares a fixed candidate with the route's fixed setting; with "
                             "target_p99_ms the hold moves by itself: choose one")
        if self.candidate is not None and not self.candidate.model_fields_set:
            raise ValueError("candidate is empty: give the setting to try, e.g. {max_items: 128, min_wait_ms: 2}, "
                             "or leave candidate out and the proxy finds one from the recorded traffic")
        if self.candidate is not None and self.sweep is not None:
            raise ValueError("sweep finds a candidate from the recorded traffic: with candidate given, leave "
                             "sweep out")
        if self.sweep is not None and self.canary is None:
            raise ValueError("sweep finds a candidate for a canary: set canary (e.g. 0.1)")
        if self.candidate is not None and self.canary is None:
            raise ValueError("candidate is tried by a canary: set canary (e.g. 0.1)")
        if self.passes > self.max_windows:
            raise ValueError(f"passes ({self.passes}) can never be reached within max_windows "
                             f"({self.max_windows})")
        return self


def candidate_problem(candidate: Candidate, *, max_items: int, min_wait_ms: float, max_wait_ms: float,
                      max_in_flight: Any, preferred_sizes: list[int], padded: bool) -> str | None:
    """What makes a canary's candidate a setting the route cannot run, or its own (None: nothing), the message
    starting with the field's path below `adaptive.candidate`."""
    low = candidate.min_wait_ms if candidate.min_wait_ms is not None else min_wait_ms
    high = candidate.max_wait_ms if candidate.max_wait_ms is not None else max_wait_ms
    if low > high:
        return f": min_wait_ms ({low:g}) must be <= max_wait_ms ({high:g})"
    if candidate.max_in_flight is not None and not isinstance(max_in_flight, int):
        return (".max_in_flight: the route's max_in_flight is auto (it moves by itself); leave max_in_flight out "
                "of the candidate")
    if candidate.max_items is not None and preferred_sizes and candidate.max_items < preferred_sizes[-1]:
        return f".max_items ({candidate.max_items}) is below the largest preferred size ({preferred_sizes[-1]})"
    if candidate.max_items is not None and padded and candidate.max_items != max_items:
        return (".max_items: with pad_to_preferred every batch pads to max_items; leave max_items out of the "
                "candidate")
    own = {"max_items": max_items, "min_wait_ms": min_wait_ms, "max_wait_ms": max_wait_ms,
           "max_in_flight": max_in_flight}
    if all(getattr(candidate, name) == own[name] for name in candidate.model_fields_set):
        return " is the route's own setting: nothing to try"
    return None


__all__ = ["Adaptive", "Candidate", "Sweep", "candidate_problem"]
