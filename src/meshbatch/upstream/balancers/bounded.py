"""Bounded loads for the hashing balancers (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with
Bounded Loads"; Envoy's `hash_balance_factor`): an endpoint takes a key only while its requests in flight, the
new one counted, stay within `factor` percent of the live endpoints' average (in proportion to its weight).
Past that bound the key goes on along the ring or table to the next endpoint with room, so a hot key spills
onto a few neighbours instead of piling onto one endpoint; when every live endpoint is over, the first one found
takes it. Loads are the requests in flight of this process (`Endpoint.active`).
"""

from __future__ import annotations

from collections.abc import Iterable
from math import ceil

from meshbatch.upstream.endpoint import Endpoint


class Bound:
    """The bound of one pick: `fits(endpoint)`; `seen` counts the distinct endpoints found over it."""

    __slots__ = ("_over", "_per_weight", "first", "live")

    def __init__(self, live: tuple[Endpoint, ...], factor: int) -> None:
        self.live = len(live)
        total = sum(e.active for e in live) + 1
        self._per_weight = factor / 100 * total / max(1, sum(e.weight for e in live))
        self._over: set[int] = set()
        self.first: Endpoint | None = None

    def fits(self, endpoint: Endpoint) -> bool:
        if endpoint.active + 1 <= ceil(self._per_weight * endpoint.weight):
            return True
        if self.first is None:
            self.first = endpoint
        self._over.add(id(endpoint))
        return False

    def pick(self, walk: Iterable[Endpoint]) -> Endpoint | None:
        """Along `walk` (the key's ring or table order), the first endpoint that is in and within the bound; the
        first one found over it when every live endpoint is."""
        for endpoint in walk:
            if endpoint.down:
                continue
            if self.fits(endpoint):
                return endpoint
            if self.exhausted:
                break
        return self.first

    @property
    def exhausted(self) -> bool:
        """Every live endpoint was found over the bound: stop looking, `first` takes the key."""
        return len(self._over) >= self.live


__all__ = ["Bound"]
