"""Load balancers as named extensions: each picks ONE endpoint per request or per batch."""

from meshbatch.upstream.balancers import (  # noqa: F401  (register)
    ewma,
    least_request,
    maglev,
    random_pick,
    ring_hash,
    round_robin,
)
from meshbatch.upstream.balancers.base import BALANCERS, Balancer, BalancerFactory

__all__ = ["BALANCERS", "Balancer", "BalancerFactory"]
