"""A cluster: named endpoints behind one balancer. `send` makes one upstream exchange on one endpoint."""

from __future__ import annotations

import asyncio

from meshbatch.config import model
from meshbatch.errors import ProxyError, Unavailable
from meshbatch.http.message import Headers, Response
from meshbatch.http.pool import PoolLimits
from meshbatch.http.serialize import encode_request
from meshbatch.upstream.balancers import BALANCERS, Balancer
from meshbatch.upstream.endpoint import Endpoint


class Cluster:
    __slots__ = ("balancer", "config", "endpoints", "name", "upstream_errors")

    def __init__(self, config: model.Cluster, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.name = config.name
        limits = PoolLimits(
            max_connections=config.max_connections,
            max_pending=config.max_pending,
            connect_timeout=config.connect_timeout_ms / 1000,
            idle_timeout=config.idle_timeout_ms / 1000,
            max_response_bytes=config.max_response_bytes,
        )
        self.endpoints: list[Endpoint] = []
        for spec in config.endpoints:
            if isinstance(spec, str):
                spec = model.EndpointSpec(address=spec)
            self.endpoints.append(Endpoint(spec.address, spec.weight, spec.metadata, limits, loop))
        self.balancer: Balancer = BALANCERS.get(config.lb)(self.endpoints)
        self.upstream_errors: dict[str, int] = {}

    async def send(self, method: bytes, target: bytes, headers: Headers, body: bytes, deadline: float,
                   key: bytes | None = None, endpoint: Endpoint | None = None) -> Response:
        """One exchange with `endpoint`, or one chosen by the balancer. Raises ProxyError on failure."""
        if endpoint is None:
            endpoint = self.balancer.pick(key)
        if endpoint is None:
            raise Unavailable("no_healthy_upstream", f"cluster {self.name!r} has no healthy endpoint")
        data = encode_request(method, target, headers, body)
        endpoint.active += 1
        endpoint.requests += 1
        try:
            response = await endpoint.pool.request(method, data, deadline)
        except ProxyError as error:
            self.failed(endpoint, error)
            raise
        finally:
            endpoint.active -= 1
        response.upstream = endpoint.address
        return response

    def failed(self, endpoint: Endpoint, error: ProxyError) -> None:
        """Account one failed exchange with an endpoint."""
        endpoint.errors += 1
        self.upstream_errors[error.reason] = self.upstream_errors.get(error.reason, 0) + 1

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "lb": self.config.lb,
            "endpoints": [e.summary() for e in self.endpoints],
            "upstream_errors": dict(self.upstream_errors),
        }

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.pool.close()

    def __repr__(self) -> str:
        return f"<Cluster {self.name} endpoints={len(self.endpoints)} lb={self.config.lb}>"


__all__ = ["Cluster"]
