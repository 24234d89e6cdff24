"""The preprocessing pipeline: ordered named stages on `batch:` and `ingest:` routes alike.

`decompress` -> `decode` -> `validate` -> `filter` -> `transform` run on each request; `compress` runs on each
outgoing batch. A new stage is one file in `stages/` registering a factory in `STAGE_FACTORIES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshbatch.core.lazy import lazy_names

if TYPE_CHECKING:
    from meshbatch.pipeline.base import STAGE_FACTORIES, Stage, StageContext
    from meshbatch.pipeline.handler import PipelineLayer, encode_event
    from meshbatch.pipeline.runner import Pipeline, build_pipeline
    from meshbatch.pipeline.work import InvalidEvent, UnsupportedEncoding, Work

# Each name is imported when first read, so that a module of the package (its config checks, say)
# imports nothing else of it: a config without such a route never loads the rest.
_MODULES = {
    "InvalidEvent": "meshbatch.pipeline.work",
    "Pipeline": "meshbatch.pipeline.runner",
    "PipelineLayer": "meshbatch.pipeline.handler",
    "STAGE_FACTORIES": "meshbatch.pipeline.base",
    "Stage": "meshbatch.pipeline.base",
    "StageContext": "meshbatch.pipeline.base",
    "UnsupportedEncoding": "meshbatch.pipeline.work",
    "Work": "meshbatch.pipeline.work",
    "build_pipeline": "meshbatch.pipeline.runner",
    "encode_event": "meshbatch.pipeline.handler",
}


__getattr__ = lazy_names(__name__, _MODULES)


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
