"""A cluster's endpoints and, recomputed only when availability or membership changes, the available ones."""

from __future__ import annotations

from collections.abc import Iterable

from meshbatch.upstream.endpoint import Endpoint


class EndpointSet:
    __slots__ = ("all", "available", "version")

    def __init__(self, endpoints: Iterable[Endpoint] = ()) -> None:
        self.all: tuple[Endpoint, ...] = ()
        self.available: tuple[Endpoint, ...] = ()
        self.version = 0
        self.replace(endpoints)

    def replace(self, endpoints: Iterable[Endpoint]) -> None:
        """A new membership: watch the newcomers, forget the leavers."""
        new = tuple(endpoints)
        kept = set(map(id, new))
        for endpoint in self.all:
            if id(endpoint) not in kept and self.refresh in endpoint.watchers:
                endpoint.watchers.remove(self.refresh)
        for endpoint in new:
            if self.refresh not in endpoint.watchers:
                endpoint.watchers.append(self.refresh)
        self.all = new
        self.refresh()

    def refresh(self) -> None:
        self.available = tuple(e for e in self.all if not e.down)
        self.version += 1

    def detach(self) -> None:
        """Stop watching every endpoint (the set's cluster is gone)."""
        for endpoint in self.all:
            if self.refresh in endpoint.watchers:
                endpoint.watchers.remove(self.refresh)

    def __len__(self) -> int:
        return len(self.all)

    def __repr__(self) -> str:
        return f"<EndpointSet {len(self.available)}/{len(self.all)} available>"


__all__ = ["EndpointSet"]
