"""The stage interface and the registry of stages by name (one file per stage in `stages/`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from meshbatch.pipeline.work import Work
from meshbatch.registry import Extensions


class Stage(Protocol):
    name: str

    def __call__(self, work: Work) -> None:
        """Transform `work` in place; raise a ProxyError to answer the request with an error."""
        ...


@dataclass(frozen=True, slots=True)
class StageContext:
    """What a stage factory may need besides its options."""

    route: str
    dead_letters: bool  # the route can park events in dead letters (an ingest route)
    wall_clock: Callable[[], float]


StageFactory = Callable[[Any, StageContext], Stage]
STAGE_FACTORIES: Extensions[StageFactory] = Extensions("pipeline stage")

__all__ = ["STAGE_FACTORIES", "Stage", "StageContext", "StageFactory"]
