"""The balancer interface and registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from meshbatch.registry import Registry
from meshbatch.upstream.endpoint import Endpoint


class Balancer(Protocol):
    def pick(self, key: bytes | None = None) -> Endpoint | None:
        """One endpoint among the healthy ones, or None when there is none. `key` is for hashing balancers."""
        ...


BalancerFactory = Callable[[Sequence[Endpoint]], Balancer]
BALANCERS: Registry[BalancerFactory] = Registry("balancer")


def healthy(endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    return [e for e in endpoints if e.healthy]


__all__ = ["BALANCERS", "Balancer", "BalancerFactory", "healthy"]
