"""Checks of meaning for `batch:`: codec names that exist."""

from __future__ import annotations

from collections.abc import Iterator

from meshbatch.batching.codecs import CODECS
from meshbatch.config.load import Problem, did_you_mean, register_check
from meshbatch.config.model import BatchRoute, Config


@register_check
def codec_names(config: Config) -> Iterator[Problem]:
    for i, lst in enumerate(config.listeners):
        for j, route in enumerate(lst.routes):
            if isinstance(route, BatchRoute) and route.batch.codec not in CODECS:
                yield Problem(f"listeners[{i}].routes[{j}].batch.codec",
                              f"unknown codec {route.batch.codec!r}{did_you_mean(route.batch.codec, CODECS.names())}"
                              f"; known: {', '.join(CODECS.names())}")


__all__ = ["codec_names"]
