"""A route's `batch:` block (meshbatch.batching)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from meshbatch.config.model.base import Model

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


class Batch(Model):
    max_items: Annotated[int, Field(ge=1, le=100_000)] = 64
    max_wait_ms: Annotated[float, Field(ge=0, le=600_000)] = 5
    min_wait_ms: Annotated[float, Field(ge=0, le=600_000)] = 0
    max_bytes: Annotated[int, Field(ge=1)] = 1_048_576
    codec: str = "json-array"
    upstream_path: Annotated[str, Field(min_length=1)] = "/batch"
    upstream_method: Literal["POST", "PUT"] = "POST"
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] = 4
    max_queue: Annotated[int, Field(ge=1)] = 10_000
    key: list[str] = []
    dedup: bool = True
    dedup_window_ms: Annotated[float, Field(ge=0, le=86_400_000)] = 0
    dedup_max_keys: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    idempotency_scope: IdempotencyScope = "principal"  # whose keys dedup and replay share (security/scope.py)
    adaptive: Adaptive | None = None

    @field_validator("upstream_path")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

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
