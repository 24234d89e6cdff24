"""Config of the layers (shapes and meaning, each error with its path), the stacks a snapshot composes, mirroring."""

from __future__ import annotations

import asyncio
from textwrap import dedent
from typing import Any

import pytest

from meshbatch.config import ConfigError, parse
from meshbatch.config.plain import of
from meshbatch.errors import ConnectFailed
from meshbatch.http.message import Response
from meshbatch.layers.call import BatchSender
from meshbatch.layers.mirror import Mirror
from meshbatch.layers.timeout import DeadlineLayer
from meshbatch.runtime.snapshot import build, stop_clusters
from meshbatch.telemetry.metrics import Registry

BASE = """
admin: null
listeners:
  - name: main
    listen: 127.0.0.1:0
    routes:
{routes}
clusters:
  - name: a
    endpoints: [127.0.0.1:1, {{address: "127.0.0.1:2", metadata: {{version: v2}}}}]
  - name: b
    endpoints: [127.0.0.1:3]
"""


def config(routes: str) -> str:
    return BASE.format(routes=dedent(routes).strip("\n").replace("\n", "\n      ").join(["      ", ""]))


def problems(routes: str) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse(config(routes))
    return [str(p) for p in error.value.problems]


def test_meaning_checks_name_each_path() -> None:
    found = problems("""
    - name: r
      cluster: a
      split: [{cluster: a, weight: 0}, {cluster: nope, weight: 0}]
      per_try_timeout_ms: 20000
      mirror: {cluster: shadw}
      rate_limit: [{rate: 1}, {rate: 2}]
    - name: s
      cluster: a
      split_key: header:x-user
    """)
    assert "listeners[0].routes[0].split: set cluster or split, not both" in found
    assert any(p.startswith("listeners[0].routes[0].split[1].cluster: no cluster named 'nope'") for p in found)
    assert "listeners[0].routes[0].split: the weights add up to 0: give at least one entry a weight" in found
    assert "listeners[0].routes[0].per_try_timeout_ms: must be <= timeout_ms (15000)" in found
    assert any(p.startswith("listeners[0].routes[0].mirror.cluster: no cluster named 'shadw'") for p in found)
    assert any(p.startswith("listeners[0].routes[0].rate_limit[1]: a second limit named 'route'") for p in found)
    assert "listeners[0].routes[1].split_key: applies only with split" in found


def test_shape_errors_have_paths() -> None:
    found = problems("""
    - name: r
      cluster: a
      retry: {retry_on: [5xx, teapot], num_retries: 11}
      rate_limit: [{rate: 1, key: cookie}]
      fault: {}
    """)
    text = "\n".join(found)
    assert "listeners[0].routes[0].retry.retry_on[1]" in text
    assert "listeners[0].routes[0].retry.num_retries" in text
    assert "listeners[0].routes[0].rate_limit[0].key" in text
    assert "listeners[0].routes[0].fault" in text


def test_a_split_route_needs_no_cluster() -> None:
    parse(config("""
    - name: r
      split: [{cluster: a, weight: 90}, {cluster: b, weight: 10, subset: {version: v2}}]
      split_key: header:x-user
    """))


def entries(routes: str, breakers: bool = False) -> dict[str, Any]:
    text = config(routes)
    if breakers:
        text = text.replace("    endpoints: [127.0.0.1:3]", "    endpoints: [127.0.0.1:3]\n    circuit_breakers: {}")
    snapshot = build(of(parse(text)), asyncio.get_running_loop(), Registry())
    return {stack.name: (stack, snapshot) for _, stack in snapshot.routes["main"].entries}


async def test_only_routes_with_layers_that_await_leave_the_fast_path() -> None:
    """Checks (rate limits, policies) run before anything awaits, and guards (circuit breakers) are part of the
    upstream exchange itself: such routes keep the callback fast path. Retries (and splits, mirrors, faults,
    adaptive concurrency) await, so their routes are served by the general path."""
    found = entries("""
    - name: plain
      cluster: a
    - name: limited
      cluster: a
      rate_limit: [{rate: 10}]
    - name: retried
      cluster: a
      retry: {}
    - name: guarded
      cluster: b
    - name: batched
      cluster: b
      batch: {}
    """, breakers=True)
    for name in ("plain", "limited", "guarded"):
        assert found[name][0].fast is not None, name
    assert found["limited"][0].checks  # the rate limit, as a check
    retried = found["retried"][0]
    assert retried.fast is None and isinstance(retried.service, DeadlineLayer)
    batcher = found["batched"][1].batchers["batched"]
    sender = batcher.dispatcher.send
    assert isinstance(sender, BatchSender) and sender.split.targets[0].guard is not None  # its cluster's breakers
    assert found["plain"][0].fast.__self__.default.guard is None  # type: ignore[union-attr]


async def test_state_survives_a_reload_that_keeps_its_config() -> None:
    loop = asyncio.get_running_loop()
    registry = Registry()
    routes = """
    - name: r
      cluster: a
      rate_limit: [{rate: 10}]
      retry: {}
    """
    first = build(of(parse(config(routes))), loop, registry)
    second = build(of(parse(config(routes))), loop, registry, previous=first)
    assert second.shared.limits["r"] is first.shared.limits["r"]
    assert second.shared.guards["a"] is first.shared.guards["a"]
    changed = build(of(parse(config(routes.replace("rate: 10", "rate: 20")).replace(
        "endpoints: [127.0.0.1:1,", "circuit_breakers: {max_requests: 5}\n    endpoints: [127.0.0.1:1,"))),
        loop, registry, previous=second)
    assert changed.shared.limits["r"] is not second.shared.limits["r"]
    guard = second.shared.guards["a"]
    endpoint = second.clusters["a"].hosts.all[0]
    endpoint.set_down(4, True)
    guard._opened[endpoint.address] = endpoint
    stop_clusters(second, changed)  # the swap: the dropped guard gives its endpoint back
    assert endpoint.down == 0


class FakeCluster:
    """A shadow cluster's name, and an exchange with it that the test controls."""

    name = "shadow"
    hash_header = None

    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.sent: list[tuple[bytes, list[tuple[bytes, bytes]]]] = []
        self.fail = fail
        self.delay = delay

    async def send(self, method: bytes, target: bytes, headers: Any, body: bytes, deadline: float,
                   key: bytes | None = None) -> Response:
        self.sent.append((target, headers))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectFailed("upstream_connect_failed")
        return Response(200)


async def test_mirror_is_fire_and_forget_and_bounded() -> None:
    from meshbatch.layers.metrics import LayerMetrics

    loop = asyncio.get_running_loop()
    metrics = LayerMetrics.of(Registry())
    shadow = FakeCluster(delay=0.05)
    mirror = Mirror("r", shadow, 100, 2, 1.0, loop, metrics, send=shadow.send)  # type: ignore[arg-type]
    for _ in range(3):
        if mirror.wanted():
            mirror.copy(b"POST", b"/o", [(b"host", b"svc"), (b"x", b"1")], b"{}")
    assert mirror.in_flight == 2 and metrics.mirrors.get(("r", "shadow", "dropped")) == 1
    await asyncio.sleep(0.1)
    assert mirror.in_flight == 0 and metrics.mirrors.get(("r", "shadow", "ok")) == 2
    assert shadow.sent[0][1] == [(b"host", b"svc-shadow"), (b"x", b"1")]
    failing = FakeCluster(fail=True)
    broken = Mirror("r", failing, 100, 2, 1.0, loop, metrics, send=failing.send)  # type: ignore[arg-type]
    assert broken.wanted()
    broken.copy(b"POST", b"/o", [], b"")
    await asyncio.sleep(0.01)
    assert metrics.mirrors.get(("r", "shadow", "failed")) == 1
    never = Mirror("r", shadow, 0, 2, 1.0, loop, metrics, send=shadow.send)  # type: ignore[arg-type]
    assert not never.wanted()
