"""Microbatching: many single requests become few upstream batch calls, each caller gets its own answer.

`BatchHandler` is a route's batcher (a `Handler`); it is built from the sans-I/O `Accumulator` and `Batch`, the
asyncio `Dispatcher`, a codec from `CODECS` and, with `batch.adaptive`, the `AdaptiveController`.
"""

from meshbatch.batching.accumulator import Accumulator
from meshbatch.batching.adaptive import AdaptiveController
from meshbatch.batching.batch import FLUSH_REASONS, Batch, IllegalTransition, KeyQueue
from meshbatch.batching.codecs import CODECS, Codec, ItemRequest, ItemResult
from meshbatch.batching.dispatcher import Dispatcher
from meshbatch.batching.handler import BatchHandler, Sender
from meshbatch.batching.model import LatencyModel

__all__ = [
    "CODECS",
    "FLUSH_REASONS",
    "Accumulator",
    "AdaptiveController",
    "Batch",
    "BatchHandler",
    "Codec",
    "Dispatcher",
    "IllegalTransition",
    "ItemRequest",
    "ItemResult",
    "KeyQueue",
    "LatencyModel",
    "Sender",
]
