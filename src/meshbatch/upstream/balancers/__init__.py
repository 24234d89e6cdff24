"""Load balancers as named extensions: each picks ONE endpoint per request or per batch."""

from meshbatch.upstream.balancers import least_request, random_pick, round_robin  # noqa: F401  (register)
from meshbatch.upstream.balancers.base import BALANCERS, Balancer

__all__ = ["BALANCERS", "Balancer"]
