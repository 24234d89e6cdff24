"""Routes, one class per kind: `PlainRoute` (forwarded to one endpoint), `BatchRoute` (each request an item of an
upstream batch) and `IngestRoute` (each event accepted durably, delivered later), over the fields every route
has (`Route`).

The kind is decided once, at load, from the keys a route has: an `ingest:` block makes an ingest route, else a
`batch:` block a batch route, else the route is plain. An optional `kind:` says the same in words; when given it
must agree with those keys (`kind: batch` alone is a batch route with the default `batch:` settings). Each kind
has only the fields that mean something for it, so a key of another kind is an error with its path
(`misplaced_key` words it; the loader reports it).

    every route      name, match, cluster, timeout_ms, rate_limit, adaptive_concurrency, fault, policies
    plain, batch     per_try_timeout_ms, retry, mirror, split, split_key, subset, subset_fallback (ForwardingRoute)
    batch, ingest    pipeline, pipeline_limits (PipelineRoute)
    batch            batch
    ingest           ingest; and, from older configs, a `batch:` block whose sizes, codec and path are read as
                     `ingest.delivery` and `ingest.sink` values where those are not given (IngestBatch)
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import BaseModel, Discriminator, Field, Tag, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from meshbatch.config.model.base import Millis, Model, UrlPath
from meshbatch.config.model.batch import Batch
from meshbatch.config.model.ingest import Ingest
from meshbatch.config.model.layers import AdaptiveConcurrency, Fault, Mirror, RateLimit, Retry, WeightedCluster
from meshbatch.config.model.pipeline import PipelineLimits, Step
from meshbatch.config.model.routing import Match
from meshbatch.config.model.security import Policy

RouteKind = Literal["plain", "batch", "ingest"]
KINDS: tuple[RouteKind, ...] = ("plain", "batch", "ingest")


def implied_kind(data: dict[str, Any]) -> RouteKind | None:
    """The kind a route's keys make it (None: no `batch:` or `ingest:` block, so plain unless `kind:` says)."""
    if data.get("ingest") is not None:
        return "ingest"
    if data.get("batch") is not None:
        return "batch"
    return None


def _agrees(given: RouteKind, implied: RouteKind | None) -> bool:
    # An ingest route may carry a `batch:` block (older configs: its delivery defaults), so `kind: ingest` agrees
    # with a batch: block; nothing else may contradict the keys.
    return implied is None or implied == given or (given == "ingest" and implied == "batch")


def route_kind(data: Any) -> RouteKind:
    """The kind of a route's mapping (or of a route already built)."""
    if isinstance(data, Route):
        return data.kind
    if not isinstance(data, dict):
        return "plain"  # not a mapping: the plain route's own validation says what is wrong
    implied = implied_kind(data)
    given = data.get("kind")
    if given in KINDS and _agrees(given, implied):
        return cast(RouteKind, given)
    return implied or "plain"


def _kind_error(data: dict[str, Any], message: str) -> ValidationError:
    error = PydanticCustomError("route_kind", message.replace("{", "{{").replace("}", "}}"))
    return ValidationError.from_exception_data("Route", [InitErrorDetails(type=error, loc=("kind",),
                                                                          input=data.get("kind"))])


class Route(Model):
    """What every route has, whatever its kind. A route of the config is one of `PlainRoute`, `BatchRoute` and
    `IngestRoute` (`AnyRoute`); `Route.model_validate` builds the kind its keys make."""

    KIND: ClassVar[RouteKind]
    kind: RouteKind
    name: Annotated[str, Field(min_length=1)]
    match: Match = Match()
    cluster: str = ""  # required, except on an ingest route whose sink is a database (see checks)
    timeout_ms: Millis = 15_000
    rate_limit: list[RateLimit] = []  # see docs/traffic.md
    adaptive_concurrency: AdaptiveConcurrency | None = None
    fault: Fault | None = None
    policies: list[Policy] = []  # authorization of this route, after the listener's (meshbatch.security)

    @model_validator(mode="before")
    @classmethod
    def _kind(cls, data: Any) -> Any:
        """`kind:`, when given, must be this class's kind, and agree with the route's batch:/ingest: keys.

        A key of another kind left empty (`batch:` with nothing under it, `retry: null`, `split: []`) says nothing
        and is dropped, as it always meant nothing."""
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if k in cls.model_fields or k not in ALL_ROUTE_KEYS
                or v not in (None, [], {})}
        if "kind" not in data:
            return data
        given = data["kind"]
        if given not in KINDS:
            raise _kind_error(data, "must be one of plain, batch, ingest")
        implied = implied_kind(data)
        if implied is None and given != cls.KIND:
            raise _kind_error(data, f"is {given!r}, but this is a {cls.KIND} route")
        if given != cls.KIND or not _agrees(given, implied):
            raise _kind_error(data, f"{given!r} does not agree with the route's {implied}: block; write kind: "
                                    f"{implied}, or leave kind out")
        return data

    @classmethod
    def model_validate(cls, obj: Any, *, strict: bool | None = None, extra: Any = None,
                       from_attributes: bool | None = None, context: Any | None = None,
                       by_alias: bool | None = None, by_name: bool | None = None) -> Any:
        """On `Route` itself: the route of the kind `obj` makes (a PlainRoute, BatchRoute or IngestRoute)."""
        options: dict[str, Any] = {"strict": strict, "from_attributes": from_attributes, "context": context,
                                   "by_alias": by_alias, "by_name": by_name}
        if cls is Route:
            return ROUTE_CLASSES[route_kind(obj)].model_validate(obj, extra=extra, **options)
        return super().model_validate(obj, extra=extra, **options)


class ForwardingRoute(Route):
    """Plain and batch routes: where their requests (or batches) go, and how each attempt is bounded and retried."""

    per_try_timeout_ms: Millis | None = None
    retry: Retry | None = None
    mirror: Mirror | None = None
    split: list[WeightedCluster] = []  # instead of `cluster`: weighted clusters (canary)
    split_key: str | None = None  # 'header:NAME': the same value always goes to the same cluster
    subset: dict[str, str] = {}  # only endpoints of `cluster` whose metadata has all these pairs
    subset_fallback: Literal["none", "any"] = "none"  # an empty subset: 503, or any endpoint of the cluster


class PipelineRoute(Route):
    """Batch and ingest routes: the preprocessing pipeline their requests cross (meshbatch.pipeline)."""

    pipeline: list[Step] = []
    pipeline_limits: PipelineLimits = PipelineLimits()  # CPU budget, inline threshold, worker processes


class PlainRoute(ForwardingRoute):
    """A request forwarded to one endpoint of the route's cluster (runtime/stacks/plain.py)."""

    KIND: ClassVar[RouteKind] = "plain"
    kind: Literal["plain"] = "plain"


class BatchRoute(ForwardingRoute, PipelineRoute):
    """A request that becomes one item of an upstream batch (runtime/stacks/batch.py)."""

    KIND: ClassVar[RouteKind] = "batch"
    kind: Literal["batch"] = "batch"
    batch: Batch = Batch()


# The `batch:` keys an ingest route reads (older configs set its delivery sizes and cluster sink with them).
INGEST_BATCH_DELIVERY = ("max_items", "max_bytes", "max_in_flight")
INGEST_BATCH_SINK = ("codec", "upstream_path", "upstream_method")


class IngestBatch(Model):
    """`batch:` on an ingest route: read as `ingest.delivery` (max_items, max_bytes, max_in_flight) and
    `ingest.sink` (codec, upstream_path, upstream_method) values where those are not given; its defaults are
    `batch:`'s, as they always were. No other batch key applies to an ingest route."""

    max_items: Annotated[int, Field(ge=1, le=100_000)] = 64
    max_bytes: Annotated[int, Field(ge=1)] = 1_048_576
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] = 4
    codec: str = "json-array"
    upstream_path: UrlPath = "/batch"
    upstream_method: Literal["POST", "PUT"] = "POST"



class IngestRoute(PipelineRoute):
    """An event accepted durably (202), delivered later to a database or the route's cluster
    (runtime/stacks/ingest.py). Its deliveries are set in `ingest.delivery`, its sink in `ingest.sink`."""

    KIND: ClassVar[RouteKind] = "ingest"
    kind: Literal["ingest"] = "ingest"
    ingest: Ingest = Ingest()
    batch: IngestBatch | None = None  # older configs: folded into `ingest` at load; read `ingest`, never this

    @model_validator(mode="after")
    def _fold_batch(self) -> IngestRoute:
        if self.batch is None:
            return self
        delivery, sink = self.ingest.delivery, self.ingest.sink
        ingest = self.ingest.model_copy(update={
            "delivery": delivery.model_copy(update={k: getattr(self.batch, k) for k in INGEST_BATCH_DELIVERY
                                                    if k not in delivery.model_fields_set}),
            "sink": sink.model_copy(update={k: getattr(self.batch, k) for k in INGEST_BATCH_SINK
                                            if k not in sink.model_fields_set}),
        })
        return self.model_copy(update={"ingest": ingest})


ROUTE_CLASSES: dict[RouteKind, type[PlainRoute | BatchRoute | IngestRoute]] = {
    "plain": PlainRoute, "batch": BatchRoute, "ingest": IngestRoute}

# A route of the config, of the kind its keys make; the tags name the classes (they appear in pydantic's error
# locations, and the loader drops them).
AnyRoute = Annotated[
    Annotated[PlainRoute, Tag("PlainRoute")] | Annotated[BatchRoute, Tag("BatchRoute")]
    | Annotated[IngestRoute, Tag("IngestRoute")],
    Discriminator(lambda data: ROUTE_CLASSES[route_kind(data)].__name__),
]
ROUTE_TAGS = frozenset(cls.__name__ for cls in ROUTE_CLASSES.values())
ALL_ROUTE_KEYS = frozenset(key for cls in ROUTE_CLASSES.values() for key in cls.model_fields)

_FORWARDING = frozenset(ForwardingRoute.model_fields) - frozenset(Route.model_fields)
_PIPELINE = frozenset(PipelineRoute.model_fields) - frozenset(Route.model_fields)


def misplaced_key(model: type[BaseModel], key: str) -> str | None:
    """Why `key` is refused on a mapping of `model`, when it is a key of another kind of route (None: it is not)."""
    if model is IngestBatch and key in Batch.model_fields:
        if key == "key":
            return "batch keys are not supported on ingest routes"
        return "does not apply to an ingest route (its deliveries are set in ingest.delivery)"
    if not (isinstance(model, type) and issubclass(model, Route)):
        return None
    if key in _PIPELINE and model is PlainRoute:
        return "a pipeline runs on a route with batch: or ingest:"
    if key in _FORWARDING and model is IngestRoute:
        return "does not apply to an ingest route (its delivery retries are set in ingest.delivery)"
    owners = [kind for kind, cls in ROUTE_CLASSES.items() if key in cls.model_fields and cls is not model]
    if owners:
        return f"applies to {' and '.join(owners)} routes, not to a {model.KIND} route"
    return None


__all__ = ["INGEST_BATCH_DELIVERY", "INGEST_BATCH_SINK", "KINDS", "ROUTE_CLASSES", "ROUTE_TAGS", "AnyRoute",
           "BatchRoute", "ForwardingRoute", "IngestBatch", "IngestRoute", "PipelineRoute", "PlainRoute", "Route",
           "RouteKind", "implied_kind", "misplaced_key", "route_kind"]
