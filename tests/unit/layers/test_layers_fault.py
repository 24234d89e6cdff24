"""Fault injection: configured percentages, per-request headers, deadlines, and the cap on active faults."""

from __future__ import annotations

import asyncio

import pytest
from layers_support import Script, draws, request

from meshbatch.config.model import Fault
from meshbatch.errors import FaultInjected, GatewayTimeout
from meshbatch.layers.fault import FaultLayer, FaultPlan


def plan(rng: float = 0.0, **config: object) -> FaultPlan:
    return FaultPlan(Fault.model_validate(config), draws(rng))


def test_percentages_decide() -> None:
    config = {"delay": {"fixed_ms": 50, "percent": 30}, "abort": {"status": 503, "percent": 10}}
    req = type("R", (), {"header": lambda self, name: None})()
    assert plan(0.05, **config).decide(req) == (0.05, 503)
    assert plan(0.2, **config).decide(req) == (0.05, 0)
    assert plan(0.5, **config).decide(req) == (0.0, 0)


async def test_headers_only_when_allowed_and_only_valid_values() -> None:
    asked = request(headers=[(b"x-meshbatch-fault-abort", b"429"), (b"x-meshbatch-fault-delay-ms", b"10"),
                             (b"x-meshbatch-fault-delay-percent", b"0")])
    assert plan(abort={"status": 500, "percent": 0}).decide(asked.request) == (0.0, 0)
    assert plan(from_headers=True).decide(asked.request) == (0.0, 429)
    bad = request(headers=[(b"x-meshbatch-fault-abort", b"99"), (b"x-meshbatch-fault-delay-ms", b"soon")])
    assert plan(from_headers=True).decide(bad.request) == (0.0, 0)
    odd = request(headers=[(b"x-meshbatch-fault-abort", b"599")])  # not a known status
    assert plan(from_headers=True).decide(odd.request) == (0.0, 0)


def test_config_needs_something_to_do() -> None:
    with pytest.raises(ValueError):
        Fault()


async def test_abort_is_a_local_reply_and_delay_is_flagged() -> None:
    loop = asyncio.get_running_loop()
    inner = Script([200])
    aborting = FaultLayer(inner, plan(abort={"status": 418}), "r", 1.0, loop)
    with pytest.raises(FaultInjected) as aborted:
        await aborting(request())
    assert aborted.value.status == 418 and aborted.value.flag == "FI" and not inner.calls
    delaying = FaultLayer(inner, plan(delay={"fixed_ms": 5}), "r", 1.0, loop)
    start = loop.time()
    response = await delaying(request())
    assert response.status == 200 and response.flag == "DI" and loop.time() - start >= 0.004


async def test_a_delay_past_the_deadline_is_a_timeout() -> None:
    loop = asyncio.get_running_loop()
    layer = FaultLayer(Script([200]), plan(delay={"fixed_ms": 5000}), "r", 0.02, loop)
    with pytest.raises(GatewayTimeout) as timed_out:
        await layer(request())
    assert timed_out.value.reason == "upstream_timeout" and layer.active == 0


async def test_max_active_lets_the_rest_pass() -> None:
    loop = asyncio.get_running_loop()
    inner = Script([200])
    layer = FaultLayer(inner, plan(delay={"fixed_ms": 50}, max_active=1), "r", 1.0, loop)
    slow = loop.create_task(layer(request()))
    await asyncio.sleep(0.005)
    quick = await layer(request())
    assert quick.flag == "-" and not slow.done()
    assert (await slow).flag == "DI"
