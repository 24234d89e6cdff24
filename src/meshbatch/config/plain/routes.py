"""Routes, one class per kind: `PlainRoute`, `BatchRoute` and `IngestRoute`, over the fields every route has
(`Route`); a route's `kind` is its tag in the validated config's JSON (a msgspec tagged union).

The models' two intermediate classes have no instances of their own: here they are the unions of the kinds that
have their fields, so that `isinstance(route, ForwardingRoute)` and the annotations read as before
(`ForwardingRoute`: plain and batch routes; `PipelineRoute`: batch and ingest routes).
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias

from meshbatch.config.plain.base import Plain
from meshbatch.config.plain.batch import Batch
from meshbatch.config.plain.ingest import Ingest
from meshbatch.config.plain.layers import AdaptiveConcurrency, Fault, Mirror, RateLimit, Retry, WeightedCluster
from meshbatch.config.plain.pipeline import PipelineLimits, Step
from meshbatch.config.plain.routing import Match
from meshbatch.config.plain.security import Policy

RouteKind = Literal["plain", "batch", "ingest"]
KINDS: tuple[RouteKind, ...] = ("plain", "batch", "ingest")


class Route(Plain, tag_field="kind", frozen=True, kw_only=True):
    """What every route has, whatever its kind."""

    KIND: ClassVar[RouteKind]
    name: str
    match: Match = Match()
    cluster: str = ""
    timeout_ms: int = 15000
    rate_limit: list[RateLimit] = []
    adaptive_concurrency: AdaptiveConcurrency | None = None
    fault: Fault | None = None
    policies: list[Policy] = []

    @property
    def kind(self) -> RouteKind:
        return self.KIND


class PlainRoute(Route, tag="plain", frozen=True, kw_only=True):
    """A request forwarded to one endpoint of the route's cluster (runtime/stacks/plain.py)."""

    KIND: ClassVar[RouteKind] = "plain"
    per_try_timeout_ms: int | None = None
    retry: Retry | None = None
    mirror: Mirror | None = None
    split: list[WeightedCluster] = []
    split_key: str | None = None
    subset: dict[str, str] = {}
    subset_fallback: Literal["none", "any"] = "none"


class BatchRoute(Route, tag="batch", frozen=True, kw_only=True):
    """A request that becomes one item of an upstream batch (runtime/stacks/batch.py)."""

    KIND: ClassVar[RouteKind] = "batch"
    pipeline: list[Step] = []
    pipeline_limits: PipelineLimits = PipelineLimits()
    per_try_timeout_ms: int | None = None
    retry: Retry | None = None
    mirror: Mirror | None = None
    split: list[WeightedCluster] = []
    split_key: str | None = None
    subset: dict[str, str] = {}
    subset_fallback: Literal["none", "any"] = "none"
    batch: Batch = Batch()


class IngestBatch(Plain, frozen=True, kw_only=True):
    """`batch:` on an ingest route (older configs): folded into `ingest` when the file is validated; read
    `ingest`, never this."""

    max_items: int = 64
    max_bytes: int = 1048576
    max_in_flight: int = 4
    codec: str = "json-array"
    upstream_path: str = "/batch"
    upstream_method: Literal["POST", "PUT"] = "POST"


class IngestRoute(Route, tag="ingest", frozen=True, kw_only=True):
    """An event accepted durably (202), delivered later to a database or the route's cluster
    (runtime/stacks/ingest.py). Its deliveries are set in `ingest.delivery`, its sink in `ingest.sink`."""

    KIND: ClassVar[RouteKind] = "ingest"
    pipeline: list[Step] = []
    pipeline_limits: PipelineLimits = PipelineLimits()
    ingest: Ingest = Ingest()
    batch: IngestBatch | None = None


ForwardingRoute: TypeAlias = PlainRoute | BatchRoute
PipelineRoute: TypeAlias = BatchRoute | IngestRoute
AnyRoute: TypeAlias = PlainRoute | BatchRoute | IngestRoute
ROUTE_CLASSES: dict[RouteKind, type[AnyRoute]] = {"plain": PlainRoute, "batch": BatchRoute, "ingest": IngestRoute}

__all__ = ["KINDS", "ROUTE_CLASSES", "AnyRoute", "BatchRoute", "ForwardingRoute", "IngestBatch", "IngestRoute",
           "PipelineRoute", "PlainRoute", "Route", "RouteKind"]
