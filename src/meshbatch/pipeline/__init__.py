"""The preprocessing pipeline: ordered named stages on `batch:` and `ingest:` routes alike.

`decompress` -> `decode` -> `validate` -> `filter` -> `transform` run on each request; `compress` runs on each
outgoing batch. A new stage is one file in `stages/` registering a factory in `STAGE_FACTORIES`.
"""

from meshbatch.pipeline.base import STAGE_FACTORIES, Stage, StageContext
from meshbatch.pipeline.handler import PipelineLayer, encode_event
from meshbatch.pipeline.runner import Pipeline, build_pipeline
from meshbatch.pipeline.work import InvalidEvent, UnsupportedEncoding, Work

__all__ = [
    "STAGE_FACTORIES",
    "InvalidEvent",
    "Pipeline",
    "PipelineLayer",
    "Stage",
    "StageContext",
    "UnsupportedEncoding",
    "Work",
    "build_pipeline",
    "encode_event",
]
