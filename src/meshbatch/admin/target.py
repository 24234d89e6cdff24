"""What the admin API and the dashboard read of the running proxy: its current snapshot and its counters.

Protocols, so that the admin pages depend on what they show and not on how the proxy is wired together
(runtime/ implements them: `Proxy` and `Snapshot`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # (the batching and ingest packages are imported by a config with such a route, not by these)
    from meshbatch.batching.handler import BatchHandler
    from meshbatch.config import plain
    from meshbatch.ingest.route import IngestRoute
    from meshbatch.telemetry.metrics import Registry
    from meshbatch.telemetry.requests import RequestStats
    from meshbatch.upstream.cluster import Cluster


class SnapshotView(Protocol):
    """One config snapshot, as the admin pages show it."""

    @property
    def config(self) -> plain.Config: ...
    @property
    def clusters(self) -> Mapping[str, Cluster]: ...
    @property
    def batchers(self) -> Mapping[str, BatchHandler]: ...
    @property
    def ingest(self) -> Mapping[str, IngestRoute]: ...
    @property
    def version(self) -> int: ...
    @property
    def loaded_at(self) -> float: ...

    def dump(self) -> dict[str, Any]: ...


class AdminTarget(Protocol):
    """The running proxy, as the admin API reads it."""

    @property
    def snapshot(self) -> SnapshotView: ...
    @property
    def metrics(self) -> Registry: ...
    @property
    def draining(self) -> bool: ...

    def listeners_summary(self) -> list[dict[str, Any]]: ...

    def request_stats(self) -> dict[str, RequestStats]: ...


__all__ = ["AdminTarget", "SnapshotView"]
