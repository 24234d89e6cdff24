"""The configuration as frozen, typed objects.

Every key a user can write is a field here. Models forbid unknown keys (the loader turns those errors into
"did you mean" hints) and are frozen: a reload builds a new tree and swaps one reference. One module per part of
the file; every name is importable from `meshbatch.config.model`.
"""

from __future__ import annotations

from meshbatch.config.model.base import Millis, Model, NonNegInt, PositiveInt
from meshbatch.config.model.batch import ENVELOPE_METHOD, Adaptive, Batch, BucketBy, Fairness, GrpcBatch, Isolate
from meshbatch.config.model.clusters import (
    CircuitBreakers,
    Cluster,
    Discovery,
    EndpointBreaker,
    EndpointSpec,
    HealthCheck,
    LbConfig,
    OutlierDetection,
    Percent,
    RetryBudget,
)
from meshbatch.config.model.ingest import COLUMN_TYPES, Column, Delivery, Ingest, IngestLog, Shard, Sink
from meshbatch.config.model.layers import (
    RETRY_CONDITIONS,
    AdaptiveConcurrency,
    Backoff,
    Fault,
    FaultAbort,
    FaultDelay,
    Mirror,
    RateLimit,
    Retry,
    Share,
    WeightedCluster,
)
from meshbatch.config.model.listeners import Http2, Listener
from meshbatch.config.model.pipeline import (
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
from meshbatch.config.model.root import Admin, Config
from meshbatch.config.model.routes import (
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
from meshbatch.config.model.routing import METHODS, HeaderMatch, Limits, Match
from meshbatch.config.model.telemetry import AccessLog, Fraction, Recorder, Tracing

__all__ = [
    "COLUMN_TYPES",
    "ENCODINGS",
    "ENVELOPE_METHOD",
    "METHODS",
    "RETRY_CONDITIONS",
    "STAGES",
    "AccessLog",
    "Adaptive",
    "AdaptiveConcurrency",
    "Admin",
    "AnyRoute",
    "Backoff",
    "Batch",
    "BatchRoute",
    "BucketBy",
    "CircuitBreakers",
    "Cluster",
    "Column",
    "Compress",
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
    "Fraction",
    "GrpcBatch",
    "HeaderMatch",
    "HealthCheck",
    "Http2",
    "Ingest",
    "IngestBatch",
    "IngestLog",
    "IngestRoute",
    "Isolate",
    "LbConfig",
    "Limits",
    "Listener",
    "Match",
    "Millis",
    "Mirror",
    "Model",
    "NonNegInt",
    "OutlierDetection",
    "Percent",
    "PipelineLimits",
    "PipelineRoute",
    "PlainRoute",
    "PositiveInt",
    "RateLimit",
    "Recorder",
    "Retry",
    "RetryBudget",
    "Route",
    "RouteKind",
    "Shard",
    "Share",
    "Sink",
    "Step",
    "Tracing",
    "Transform",
    "Validate",
    "WeightedCluster",
]
