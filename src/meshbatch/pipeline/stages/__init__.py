"""The pipeline's stages, one file each, imported when a route's pipeline names them (meshbatch.registry)."""

from meshbatch.pipeline.base import STAGE_FACTORIES

for _name in ("compress", "decode", "decompress", "filter", "transform", "validate"):
    STAGE_FACTORIES.lazy(_name, f"meshbatch.pipeline.stages.{_name}")
