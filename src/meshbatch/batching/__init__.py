"""Microbatching: many single requests become few upstream batch calls, each caller gets its own answer.

`BatchHandler` is a route's batcher (a `Handler`); it is built from the sans-I/O `Accumulator` and `Batch`, the
asyncio `Dispatcher`, a codec from `CODECS` and, with `batch.adaptive`, the `AdaptiveController`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshbatch.core.lazy import lazy_names

if TYPE_CHECKING:
    from meshbatch.batching.accumulator import Accumulator
    from meshbatch.batching.adaptive import AdaptiveController
    from meshbatch.batching.batch import FLUSH_REASONS, Batch, IllegalTransition, KeyQueue
    from meshbatch.batching.codecs import CODECS, Codec, ItemRequest, ItemResult
    from meshbatch.batching.dispatcher import Dispatcher
    from meshbatch.batching.handler import BatchHandler, Sender
    from meshbatch.batching.model import LatencyModel

# Each name is imported when first read, so that a module of the package (its config checks, say)
# imports nothing else of it: a config without such a route never loads the rest.
_MODULES = {
    "Accumulator": "meshbatch.batching.accumulator",
    "AdaptiveController": "meshbatch.batching.adaptive",
    "Batch": "meshbatch.batching.batch",
    "BatchHandler": "meshbatch.batching.handler",
    "CODECS": "meshbatch.batching.codecs",
    "Codec": "meshbatch.batching.codecs",
    "Dispatcher": "meshbatch.batching.dispatcher",
    "FLUSH_REASONS": "meshbatch.batching.batch",
    "IllegalTransition": "meshbatch.batching.batch",
    "ItemRequest": "meshbatch.batching.codecs",
    "ItemResult": "meshbatch.batching.codecs",
    "KeyQueue": "meshbatch.batching.batch",
    "LatencyModel": "meshbatch.batching.model",
    "Sender": "meshbatch.batching.handler",
}


__getattr__ = lazy_names(__name__, _MODULES)


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
