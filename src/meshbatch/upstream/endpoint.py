"""One upstream endpoint: its address, weight, metadata, pool and live counters."""

from __future__ import annotations

import asyncio

from meshbatch.http.pool import EndpointPool, PoolLimits


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Endpoint:
    __slots__ = ("active", "address", "errors", "host", "metadata", "pool", "port", "requests", "weight")

    def __init__(self, address: str, weight: int, metadata: dict[str, str], limits: PoolLimits,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.address = address
        self.host, self.port = split_address(address)
        self.weight = weight
        self.metadata = dict(metadata)
        self.pool = EndpointPool(self.host, self.port, limits, loop)
        self.active = 0  # requests in flight
        self.requests = 0
        self.errors = 0

    @property
    def healthy(self) -> bool:
        return True

    def summary(self) -> dict[str, object]:
        pool = self.pool
        return {
            "address": self.address,
            "weight": self.weight,
            "metadata": self.metadata,
            "health": "healthy" if self.healthy else "unhealthy",
            "active_requests": self.active,
            "requests": self.requests,
            "errors": self.errors,
            "connections": {"open": pool.opened, "idle": pool.idle, "pending": pool.pending,
                            "connects": pool.connects, "connect_failures": pool.connect_failures},
        }

    def __repr__(self) -> str:
        return f"<Endpoint {self.address} active={self.active} {self.pool!r}>"


__all__ = ["Endpoint", "split_address"]
