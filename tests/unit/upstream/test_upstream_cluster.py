"""A cluster's endpoint set changing under it: endpoints that stay keep pools and counters; a cluster rebuilt
on reload takes over its predecessor's endpoints; outcomes of exchanges feed health."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from upstream_support import fakes_need_the_pure_build

from meshbatch.config.model import Cluster as ClusterConfig
from meshbatch.config.model import EndpointSpec
from meshbatch.errors import ConnectFailed, PoolOverflow, ProxyError
from meshbatch.http.message import Response
from meshbatch.upstream import exchange
from meshbatch.upstream.cluster import Cluster
from meshbatch.upstream.endpoint import EJECTED
from meshbatch.upstream.target import Target


def make(loop: asyncio.AbstractEventLoop, **extra: object) -> Cluster:
    config = ClusterConfig.model_validate({"name": "svc", "endpoints": ["127.0.0.1:1001", "127.0.0.1:1002"],
                                           **extra})
    return Cluster(config, loop)


async def test_endpoints_that_stay_keep_pool_and_counters() -> None:
    cluster = make(asyncio.get_running_loop())
    first, second = cluster.endpoints
    first.requests = 7
    cluster.set_endpoints([EndpointSpec(address="127.0.0.1:1002", weight=3), EndpointSpec(address="127.0.0.1:1003")])
    assert [e.address for e in cluster.endpoints] == ["127.0.0.1:1002", "127.0.0.1:1003"]
    assert cluster.endpoints[0] is second and second.weight == 3
    assert first.pool.closed and not second.pool.closed
    assert cluster.balancer.pick() in cluster.endpoints
    cluster.close()


async def test_a_rebuilt_cluster_adopts_the_endpoints_of_the_old_one() -> None:
    loop = asyncio.get_running_loop()
    old = make(loop, outlier_detection={"consecutive_5xx": 2, "max_ejection_percent": 50})
    kept = old.endpoints[0]
    kept.requests = 11
    kept.observe(500, 0.001, 1.001)
    kept.observe(500, 0.001, 1.001)
    assert kept.down & EJECTED
    new = Cluster(ClusterConfig(name="svc", endpoints=["127.0.0.1:1001"], lb="ewma"), loop, old)
    assert new.endpoints[0] is kept and kept.requests == 11
    assert not kept.down  # the new cluster has no outlier detection: nothing keeps it ejected
    old.close()
    assert not kept.pool.closed and old.endpoints[1].pool.closed  # the old cluster closes only its own
    new.close()
    assert kept.pool.closed


class FailingPool:
    """Stands in for an endpoint's pool: every exchange fails with the error given."""

    def __init__(self, error: ProxyError) -> None:
        self.error = error
        self.closed = False
        self.streams = None  # (HTTP/1.1)

    async def request(self, *_: object) -> Response:
        raise self.error

    def close(self) -> None:
        self.closed = True


@fakes_need_the_pure_build
async def test_failures_that_are_the_endpoints_fault_count_and_others_do_not(monkeypatch: Any) -> None:
    loop = asyncio.get_running_loop()
    cluster = make(loop, outlier_detection={"consecutive_gateway_failure": 3, "max_ejection_percent": 50})
    target = Target(cluster)
    endpoint = cluster.endpoints[0]

    async def send(error: ProxyError) -> None:
        monkeypatch.setattr(endpoint, "pool", FailingPool(error))
        with pytest.raises(type(error)):
            await exchange.send(target, b"GET", b"/", [(b"host", b"x")], b"", loop.time() + 1, None, loop,
                                endpoint=endpoint)

    for _ in range(5):
        await send(PoolOverflow())  # our own pool was full: not the endpoint's fault
    assert not endpoint.down and cluster.upstream_errors == {"upstream_pool_overflow": 5}
    for _ in range(3):
        await send(ConnectFailed())
    assert endpoint.down & EJECTED and endpoint.active == 0 and endpoint.errors == 8
    assert cluster.balancer.pick() is cluster.endpoints[1]
    cluster.close()


async def test_send_to_a_refused_port_fails_and_is_accounted() -> None:
    loop = asyncio.get_running_loop()
    cluster = make(loop, connect_timeout_ms=500)
    endpoint = cluster.endpoints[0]
    with pytest.raises(ConnectFailed):
        await exchange.send(Target(cluster), b"GET", b"/", [(b"host", b"x")], b"", loop.time() + 1, None, loop,
                            endpoint=endpoint)
    assert endpoint.errors == 1 and endpoint.active == 0 and endpoint.penalty > 0
    assert cluster.upstream_errors == {"upstream_connect_failed": 1}
    cluster.close()


async def test_the_summary_names_state_and_estimates() -> None:
    cluster = make(asyncio.get_running_loop(), lb="ring_hash", hash_key="header:x-user")
    summary = cluster.summary()
    assert summary["lb"] == "ring_hash" and summary["available"] == 2
    endpoint = summary["endpoints"][0]  # type: ignore[index]
    for key in ("health", "active_requests", "latency_ewma_ms", "ejections", "weight", "metadata"):
        assert key in endpoint
    assert cluster.hash_header == b"x-user"
    cluster.close()
