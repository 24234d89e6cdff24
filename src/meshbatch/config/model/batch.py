"""A route's `batch:` block (meshbatch.batching)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from meshbatch.config.model.base import Model, UrlPath

_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def idempotency_scope_problem(spec: str) -> str | None:
    """What is wrong with an `idempotency_scope` value (meshbatch.security.scope), or None."""
    kind, _, name = spec.partition(":")
    if spec in ("principal", "global") or (kind == "header" and name and set(name) <= _TOKEN):
        return None
    return "must be 'principal', 'header:NAME' or 'global'"


def _scope(value: str) -> str:
    problem = idempotency_scope_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


IdempotencyScope = Annotated[str, AfterValidator(_scope)]


class Adaptive(Model):
    target_p99_ms: Annotated[float, Field(gt=0, le=600_000)]
    window: Annotated[int, Field(ge=8, le=10_000)] = 256


# Statuses with which an upstream blames the request itself: a batch refused with one of them is split to find
# the items at fault (meshbatch.batching.isolate). 5xx and 429 blame the upstream's state, not the request: the
# retry policy handles those.
BLAME_STATUSES = (400, 413, 415, 422)


class Isolate(Model):
    """`batch.isolate`: what happens when the upstream refuses a whole batch for something in its request."""

    mode: Literal["bisect", "off"] = "bisect"
    statuses: list[Annotated[int, Field(ge=400, le=499)]] = list(BLAME_STATUSES)
    # Extra upstream calls a batch may make to isolate its items at fault; None: 4 x ceil(log2(batch size)),
    # enough to isolate two of them.
    max_calls: Annotated[int, Field(ge=0, le=100_000)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:  # `isolate: off` / `isolate: bisect`
        if isinstance(value, bool | str):
            value = {"mode": value}
        if isinstance(value, dict) and isinstance(value.get("mode"), bool):  # YAML reads a bare `off` as false
            value = {**value, "mode": "bisect" if value["mode"] else "off"}
        return value

    @field_validator("statuses")
    @classmethod
    def _blame(cls, value: list[int]) -> list[int]:
        for status in value:
            if status in (408, 429):
                raise ValueError(f"{status} says the upstream is busy or slow, not that the request is bad; "
                                 "the retry policy handles it")
        return value


class Batch(Model):
    max_items: Annotated[int, Field(ge=1, le=100_000)] = 64
    max_wait_ms: Annotated[float, Field(ge=0, le=600_000)] = 5
    min_wait_ms: Annotated[float, Field(ge=0, le=600_000)] = 0
    max_bytes: Annotated[int, Field(ge=1)] = 1_048_576
    codec: str = "json-array"
    upstream_path: UrlPath = "/batch"
    upstream_method: Literal["POST", "PUT"] = "POST"
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] = 4
    max_queue: Annotated[int, Field(ge=1)] = 10_000
    key: list[str] = []
    dedup: bool = True
    dedup_window_ms: Annotated[float, Field(ge=0, le=86_400_000)] = 0
    dedup_max_keys: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    idempotency_scope: IdempotencyScope = "principal"  # whose keys dedup and replay share (security/scope.py)
    adaptive: Adaptive | None = None
    isolate: Isolate = Isolate()

    @field_validator("key")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for part in value:
            kind, _, name = part.partition(":")
            if kind not in ("header", "query") or not name:
                raise ValueError(f"{part!r}: a key part is 'header:NAME' or 'query:NAME'")
        return value

    @model_validator(mode="after")
    def _waits(self) -> Batch:
        if self.min_wait_ms > self.max_wait_ms:
            raise ValueError("min_wait_ms must be <= max_wait_ms")
        if self.dedup_window_ms and not self.dedup:
            raise ValueError("dedup_window_ms keeps answers for dedup: set dedup: true, or leave dedup_window_ms 0")
        return self
