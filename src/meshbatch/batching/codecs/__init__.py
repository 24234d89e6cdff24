"""Batch wire formats as named extensions. A new codec is one file here and one import below."""

from __future__ import annotations

from meshbatch.batching.codecs import envelope as _envelope  # noqa: F401  (registers "envelope")
from meshbatch.batching.codecs import grpc as _grpc  # noqa: F401  (registers "grpc")
from meshbatch.batching.codecs import json_array as _json_array  # noqa: F401  (registers "json-array")
from meshbatch.batching.codecs import ndjson as _ndjson  # noqa: F401  (registers "ndjson")
from meshbatch.batching.codecs.base import CODECS, Codec, ItemRequest, ItemResult

__all__ = ["CODECS", "Codec", "ItemRequest", "ItemResult"]
