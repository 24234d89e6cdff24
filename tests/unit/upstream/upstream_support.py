"""Endpoints and endpoint sets for the pure balancer and health tests (no sockets: pools are never used)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from meshbatch.http.pool import PoolLimits
from meshbatch.telemetry.build import is_compiled
from meshbatch.upstream import exchange
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet

NO_LOOP = cast(asyncio.AbstractEventLoop, object())

# Fake pools stand in for an endpoint's pool in the exchange's tests; a compiled `Endpoint` takes only the real
# pool class, so those tests run on the pure build (the compiled exchange is exercised by the proxy's integration
# tests, which `make test-compiled` runs against the compiled build).
fakes_need_the_pure_build = pytest.mark.skipif(
    is_compiled(exchange.__file__),
    reason="fake pools cannot stand in for a compiled Endpoint's pool (these run on the pure build)")


def endpoint(address: str, weight: int = 1, **metadata: str) -> Endpoint:
    return Endpoint(address, weight, metadata, PoolLimits(), NO_LOOP)


def endpoints(n: int, weights: list[int] | None = None) -> EndpointSet:
    weights = weights or [1] * n
    return EndpointSet(endpoint(f"10.0.0.{i + 1}:8080", weights[i]) for i in range(n))


def counts(picks: list[Endpoint | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in picks:
        key = e.address if e is not None else "none"
        out[key] = out.get(key, 0) + 1
    return out


__all__ = ["counts", "endpoint", "endpoints", "fakes_need_the_pure_build"]
