"""Maglev consistent hashing (Eisenbud et al., NSDI'16; Envoy's maglev): a lookup table of a prime size M
where each endpoint fills slots in its own permutation order, in turns proportional to its weight. A key is
one table lookup. When the endpoint found is unavailable, the key is re-hashed with a few seeds (each lands
on a live endpoint with probability of its share), then the table is scanned onward: keys of live endpoints
never move. The table is rebuilt only when the membership changes. With `hash_balance_factor`, an endpoint
past its load bound passes the key on along the same walk (balancers/bounded.py).
"""

from __future__ import annotations

import random
from itertools import chain

from meshbatch.config.plain import LbConfig
from meshbatch.upstream.balancers.base import BALANCERS
from meshbatch.upstream.balancers.bounded import Bound
from meshbatch.upstream.balancers.hashing import hash64
from meshbatch.upstream.endpoint import Endpoint
from meshbatch.upstream.endpoint_set import EndpointSet

REHASHES = 8


def build_table(members: tuple[Endpoint, ...], size: int) -> list[int]:
    """Slot -> index into `members` (sorted by address for the same table in every process)."""
    if not members:
        return []
    order = sorted(range(len(members)), key=lambda i: members[i].address)
    offsets = []
    skips = []
    for i in order:
        name = members[i].address.encode()
        offsets.append(hash64(name, 1) % size)
        skips.append(hash64(name, 2) % (size - 1) + 1)
    heaviest = max(members[i].weight for i in order)
    shares = [members[i].weight / heaviest for i in order]
    credit = [0.0] * len(order)
    nexts = [0] * len(order)
    table = [-1] * size
    filled = 0
    while True:
        for j, i in enumerate(order):
            credit[j] += shares[j]
            if credit[j] < 1.0:
                continue
            credit[j] -= 1.0
            offset, skip, n = offsets[j], skips[j], nexts[j]
            slot = (offset + n * skip) % size
            while table[slot] >= 0:
                n += 1
                slot = (offset + n * skip) % size
            table[slot] = i
            nexts[j] = n + 1
            filled += 1
            if filled == size:
                return table


class Maglev:
    __slots__ = ("_endpoints", "_factor", "_members", "_random", "_table")

    def __init__(self, endpoints: EndpointSet, config: LbConfig | None = None,
                 rng: random.Random | None = None) -> None:
        self._endpoints = endpoints
        self._random = (rng or random.Random()).random
        self._members = endpoints.all
        self._factor = config.hash_balance_factor if config is not None else None
        self._table = build_table(self._members, config.table_size if config is not None else 65537)

    def pick(self, key: bytes | None = None) -> Endpoint | None:
        live = self._endpoints.available
        if not live:
            return None
        if key is None:
            return live[int(self._random() * len(live))]
        table, members = self._table, self._members
        size = len(table)
        h = hash64(key)
        if self._factor is not None:
            return self._bounded(live, key, h)
        endpoint = members[table[h % size]]
        if not endpoint.down:
            return endpoint
        for seed in range(1, REHASHES + 1):
            endpoint = members[table[hash64(key, seed) % size]]
            if not endpoint.down:
                return endpoint
        for step in range(1, size):
            endpoint = members[table[(h + step) % size]]
            if not endpoint.down:
                return endpoint
        return None

    def _bounded(self, live: tuple[Endpoint, ...], key: bytes, h: int) -> Endpoint | None:
        """The same walk (home slot, re-hashes, then onward), taking the first endpoint in and within the bound."""
        assert self._factor is not None
        table, members = self._table, self._members
        size = len(table)
        slots = [h % size, *(hash64(key, seed) % size for seed in range(1, REHASHES + 1))]
        onward = ((h + step) % size for step in range(1, size))
        return Bound(live, self._factor).pick(members[table[slot]] for slot in chain(slots, onward))

BALANCERS.register("maglev")(Maglev)

__all__ = ["Maglev", "build_table"]
