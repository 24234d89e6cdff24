"""The static source: the cluster's `endpoints` list, applied when the cluster is built."""

from __future__ import annotations

from meshbatch.config.plain import Discovery
from meshbatch.discovery.base import COMMON_KEYS, SOURCES, Apply, SourceKind


class StaticSource:
    async def run(self, apply: Apply) -> None:
        return None

    def summary(self) -> dict[str, object]:
        return {"type": "static"}


def _static(config: Discovery, cluster: str) -> StaticSource:
    return StaticSource()


SOURCES.register("static")(SourceKind(_static, accepted=COMMON_KEYS, dynamic=False))

__all__ = ["StaticSource"]
