"""Discovery sources as named extensions: each yields a cluster's whole endpoint set whenever it changes.

A source runs as one task (`run`) and calls `apply(endpoints)` with the full set each time it learns one;
it keeps the last good set when its backend fails (and says so in `summary`). The cluster turns sets into
endpoints, keeping the pools and counters of endpoints that stay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from meshbatch.config.plain import Discovery, EndpointSpec
from meshbatch.registry import Extensions

if TYPE_CHECKING:
    from meshbatch.config.model import Discovery as DiscoveryModel

Apply = Callable[[list[EndpointSpec]], None]


class EndpointSource(Protocol):
    async def run(self, apply: Apply) -> None:
        """Learn endpoint sets until cancelled."""
        ...

    def summary(self) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True)
class SourceKind:
    """A source's factory and the `discovery` keys it requires and accepts (checked with their paths)."""

    factory: Callable[[Discovery, str], EndpointSource]
    required: tuple[str, ...] = ()
    accepted: frozenset[str] = field(default_factory=frozenset)
    dynamic: bool = True
    # (key, message) problems of a `discovery` block, judged where the file is validated (its model)
    check: Callable[[DiscoveryModel], Iterable[tuple[str, str]]] = lambda config: ()


SOURCES: Extensions[SourceKind] = Extensions("discovery type")
COMMON_KEYS = frozenset({"type", "initial_fetch_timeout_ms"})


@dataclass(slots=True)
class SourceStatus:
    """What every source reports: updates applied, failures, the last error."""

    updates: int = 0
    failures: int = 0
    last_error: str = ""
    endpoints: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"updates": self.updates, "failures": self.failures, "last_error": self.last_error,
                "endpoints": self.endpoints}


__all__ = ["COMMON_KEYS", "SOURCES", "Apply", "EndpointSource", "SourceKind", "SourceStatus"]
