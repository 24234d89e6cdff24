"""`grpc`: gRPC unary calls batched, in one of two ways (docs/grpc.md).

- `batch.grpc.descriptor_set` given: into the service's own batch method (codecs/grpc_methods.py);
- otherwise: in meshbatch's envelope, which the consumer SDK serves (codecs/grpc_envelope.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshbatch.batching.codecs.base import CODECS, Codec
from meshbatch.batching.codecs.grpc_envelope import GrpcEnvelopeCodec
from meshbatch.batching.codecs.grpc_methods import GrpcMethodCodec
from meshbatch.config.plain import GrpcBatch

if TYPE_CHECKING:
    from meshbatch.config.plain import Batch


@CODECS.register("grpc")
def grpc_codec(config: Batch | None = None) -> Codec:
    """The codec of a route's `batch.grpc` (the envelope when there is none, as for an ingest sink)."""
    options = config.grpc if config is not None and config.grpc is not None else GrpcBatch()
    if options.descriptor_set is None or options.items_field is None or options.results_field is None:
        return GrpcEnvelopeCodec(options)
    return GrpcMethodCodec.load(options.descriptor_set, options.batch_method, options.items_field,
                                options.results_field, options.statuses_field, options.max_message_bytes)


__all__ = ["grpc_codec"]
