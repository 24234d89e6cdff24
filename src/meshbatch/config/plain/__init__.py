"""The configuration as the serving process reads it: plain, frozen, slotted objects (msgspec structs).

One class for each model of `meshbatch.config.model`, with the same name, fields and defaults, and the few
methods the runtime reads (`Batch.in_flight_cap`, `HealthCheck.expects`, `Step.stage` ...); no validation: a
config reaches them already validated, as JSON (`decode`), from the models (meshbatch.runtime.validate_child).
So a proxy never imports pydantic, the models or PyYAML. `msgspec.structs.replace` makes a changed copy;
`msgspec.to_builtins` gives the data the models' `model_dump(mode="json", by_alias=True)` gives.
"""

from __future__ import annotations

from typing import Any

import msgspec

from meshbatch.config.plain.adaptive import Adaptive, Candidate, Sweep
from meshbatch.config.plain.base import Plain
from meshbatch.config.plain.batch import (
    BLAME_STATUSES,
    ENVELOPE_METHOD,
    AutoInFlight,
    Batch,
    BucketBy,
    Fairness,
    GrpcBatch,
    InFlightGradient,
    Isolate,
    PadToPreferred,
)
from meshbatch.config.plain.clusters import (
    CircuitBreakers,
    Cluster,
    Discovery,
    EndpointBreaker,
    EndpointSpec,
    HealthCheck,
    LbConfig,
    OutlierDetection,
    RetryBudget,
)
from meshbatch.config.plain.ingest import COLUMN_TYPES, Column, Delivery, Ingest, IngestLog, Shard, Sink
from meshbatch.config.plain.layers import (
    GRPC_RETRY_CONDITIONS,
    RETRY_CONDITIONS,
    AdaptiveConcurrency,
    Backoff,
    Fault,
    FaultAbort,
    FaultDelay,
    Mirror,
    RateLimit,
    Retry,
    WeightedCluster,
)
from meshbatch.config.plain.listeners import Http2, Listener, PathNormalization
from meshbatch.config.plain.pipeline import (
    ENCODINGS,
    STAGES,
    Compress,
    Decode,
    Decompress,
    Encoding,
    Filter,
    PipelineLimits,
    Step,
    Transform,
    Validate,
)
from meshbatch.config.plain.root import Admin, Config
from meshbatch.config.plain.routes import (
    AnyRoute,
    BatchRoute,
    ForwardingRoute,
    IngestBatch,
    IngestRoute,
    PipelineRoute,
    PlainRoute,
    Route,
    RouteKind,
)
from meshbatch.config.plain.routing import METHODS, HeaderMatch, Limits, Match
from meshbatch.config.plain.security import (
    ClusterTls,
    Condition,
    From,
    Identity,
    Jwt,
    ListenerTls,
    Operation,
    Policy,
    RequestRate,
    Rule,
    Source,
    To,
)
from meshbatch.config.plain.telemetry import AccessLog, Recorder, Tracing

_decoder: msgspec.json.Decoder[Config] | None = None


def decode(data: bytes | str) -> Config:
    """The plain config from the validated config's JSON (the models' `model_dump_json(by_alias=True)`).
    Raises msgspec.ValidationError or msgspec.DecodeError when the JSON has another shape."""
    global _decoder
    if _decoder is None:
        _decoder = msgspec.json.Decoder(Config)
    return _decoder.decode(data)


def of(model: Any) -> Any:
    """The plain form of a config model object (any part of a config: a `Config`, a `Cluster`, a route...), for
    the tools and tests that validate in their own process."""
    import meshbatch.config.plain as classes

    return msgspec.convert(model.model_dump(mode="json", by_alias=True), getattr(classes, type(model).__name__))


def encode(config: Plain) -> bytes:
    """The JSON of a plain config object (or of any part of one): its fields, by their names in the file."""
    return msgspec.json.encode(config)


def to_data(config: Plain) -> Any:
    """A plain config object as JSON-able data (dicts, lists, scalars), keys named as in the file."""
    return msgspec.to_builtins(config)


__all__ = [
    "BLAME_STATUSES",
    "COLUMN_TYPES",
    "ENCODINGS",
    "ENVELOPE_METHOD",
    "GRPC_RETRY_CONDITIONS",
    "METHODS",
    "RETRY_CONDITIONS",
    "STAGES",
    "AccessLog",
    "Adaptive",
    "AdaptiveConcurrency",
    "Admin",
    "AnyRoute",
    "AutoInFlight",
    "Backoff",
    "Batch",
    "BatchRoute",
    "BucketBy",
    "Candidate",
    "CircuitBreakers",
    "Cluster",
    "ClusterTls",
    "Column",
    "Compress",
    "Condition",
    "Config",
    "Decode",
    "Decompress",
    "Delivery",
    "Discovery",
    "Encoding",
    "EndpointBreaker",
    "EndpointSpec",
    "Fairness",
    "Fault",
    "FaultAbort",
    "FaultDelay",
    "Filter",
    "ForwardingRoute",
    "From",
    "GrpcBatch",
    "HeaderMatch",
    "HealthCheck",
    "Http2",
    "Identity",
    "InFlightGradient",
    "Ingest",
    "IngestBatch",
    "IngestLog",
    "IngestRoute",
    "Isolate",
    "Jwt",
    "LbConfig",
    "Limits",
    "Listener",
    "ListenerTls",
    "Match",
    "Mirror",
    "Operation",
    "OutlierDetection",
    "PadToPreferred",
    "PathNormalization",
    "PipelineLimits",
    "PipelineRoute",
    "Plain",
    "PlainRoute",
    "Policy",
    "RateLimit",
    "Recorder",
    "RequestRate",
    "Retry",
    "RetryBudget",
    "Route",
    "RouteKind",
    "Rule",
    "Shard",
    "Sink",
    "Source",
    "Step",
    "Sweep",
    "To",
    "Tracing",
    "Transform",
    "Validate",
    "WeightedCluster",
    "decode",
    "encode",
    "of",
    "to_data",
]
