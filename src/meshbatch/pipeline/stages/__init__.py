"""The pipeline's stages, one file each; importing this package registers them."""

from meshbatch.pipeline.stages import compress as _compress  # noqa: F401
from meshbatch.pipeline.stages import decode as _decode  # noqa: F401
from meshbatch.pipeline.stages import decompress as _decompress  # noqa: F401
from meshbatch.pipeline.stages import filter as _filter  # noqa: F401
from meshbatch.pipeline.stages import transform as _transform  # noqa: F401
from meshbatch.pipeline.stages import validate as _validate  # noqa: F401
