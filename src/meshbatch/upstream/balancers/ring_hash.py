"""Consistent hashing on a ring (Envoy's ring_hash, Karger et al.): each endpoint owns points on a ring in
proportion to its weight (at least `ring_size` points in all); a key goes to the owner of the first point at
or after the key's hash, skipping unavailable endpoints, so a key moves only when its endpoint leaves or
fails. No key: a random endpoint. With `hash_balance_factor`, an endpoint past its load bound passes the key
on along the ring (balancers/bounded.py).

For batches the key is the batch key (a batch key is pinned to an endpoint); for plain requests it is the
value of the cluster's `hash_key` header.
"""

from __future__ import annotations

import random
from bisect import bisect_left

from meshbatch.config.plain import LbConfig
from meshbatch.upstream.balancers.base import BALANCERS
from meshbatch.upstream.balancers.bounded import Bound
from meshbatch.upstream.balancers.hashing import hash64
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet


def points_per_weight(ring_size: int, total_weight: int) -> int:
    """Points per unit of weight: enough for `ring_size` points in all, rounded up to a power of two, so that
    an endpoint joining or leaving rarely changes the others' points (and so moves few of their keys)."""
    need = -(-ring_size // total_weight)
    return 1 << (need - 1).bit_length()


class RingHash:
    __slots__ = ("_endpoints", "_factor", "_hashes", "_owners", "_random")

    def __init__(self, endpoints: EndpointSet, config: LbConfig | None = None,
                 rng: random.Random | None = None) -> None:
        self._endpoints = endpoints
        self._random = (rng or random.Random()).random
        ring_size = config.ring_size if config is not None else 1024
        self._factor = config.hash_balance_factor if config is not None else None
        points: list[tuple[int, Endpoint]] = []
        members = endpoints.all
        if members:
            per_weight = points_per_weight(ring_size, sum(e.weight for e in members))
            for endpoint in members:
                name = endpoint.address.encode()
                for i in range(endpoint.weight * per_weight):
                    points.append((hash64(b"%s_%d" % (name, i)), endpoint))
        points.sort(key=lambda p: p[0])
        self._hashes = [h for h, _ in points]
        self._owners = [e for _, e in points]

    def __len__(self) -> int:
        return len(self._hashes)

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        live = self._endpoints.available
        if not live:
            return None
        if key is None:
            return live[int(self._random() * len(live))]
        owners = self._owners
        n = len(owners)
        start = bisect_left(self._hashes, hash64(key))
        if self._factor is not None:
            return self._bounded(live, start)
        for step in range(n):
            endpoint = owners[(start + step) % n]
            if not endpoint.down:
                return endpoint
        return None

    def _bounded(self, live: tuple[Endpoint, ...], start: int) -> Endpoint | None:
        """Along the ring from the key's point, the first endpoint that is in and within the load bound."""
        assert self._factor is not None
        owners = self._owners
        n = len(owners)
        return Bound(live, self._factor).pick(owners[(start + step) % n] for step in range(n))

BALANCERS.register("ring_hash")(RingHash)

__all__ = ["RingHash"]
