"""The balancer interface and registry.

A balancer is built from the cluster's `EndpointSet` and its `lb_config`, and rebuilt when the membership
changes (so tables such as a hash ring are built once per membership). Availability changes need no rebuild:
balancers read `endpoints.available`, or skip an endpoint whose `down` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from meshbatch.config.plain import LbConfig
from meshbatch.registry import Extensions
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet


class Balancer(Protocol):
    def pick(self, key: bytes | None = None) -> Endpoint | None:
        """One available endpoint, or None when there is none. `key` is for hashing balancers."""
        ...


BalancerFactory = Callable[[EndpointSet, LbConfig], Balancer]
BALANCERS: Extensions[BalancerFactory] = Extensions("balancer")


def uniform(endpoints: EndpointSet) -> bool:
    return len({e.weight for e in endpoints.all}) <= 1


__all__ = ["BALANCERS", "Balancer", "BalancerFactory", "uniform"]
