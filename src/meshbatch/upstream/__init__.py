"""Upstream clusters: endpoints, their connection pools, and the balancers that pick among them."""

from meshbatch.upstream.cluster import Cluster
from meshbatch.upstream.endpoint import Endpoint

__all__ = ["Cluster", "Endpoint"]
