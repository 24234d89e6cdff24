"""Batch wire formats as named extensions. A new codec is one file here and one import below."""

from __future__ import annotations

from meshbatch.batching.codecs.base import CODECS, Codec, ItemRequest, ItemResult

__all__ = ["CODECS", "Codec", "ItemRequest", "ItemResult"]
