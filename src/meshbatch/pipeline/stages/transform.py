"""`transform`: reshape each event (a JSON object). Applied in this order:

1. `rename`  {from: to}     move a field (dotted paths: `reading.temp: temperature`); a missing one is skipped
2. `project` [paths]        keep only these fields (nested paths keep their parents)
3. `drop`    [paths]        remove these fields
4. `add`     {path: value}  set constant fields (overwriting)
5. `stamp`   path           set the receive time: RFC 3339 UTC (default), or `unix` seconds / `unix_ms`
An event that is not an object is refused with 422.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from meshbatch.config.plain import Transform
from meshbatch.pipeline.base import STAGE_FACTORIES, StageContext
from meshbatch.pipeline.work import InvalidEvent, Work

_MISSING = object()


def split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def get_path(event: dict[str, Any], parts: tuple[str, ...]) -> Any:
    value: Any = event
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def set_path(event: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    node = event
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def pop_path(event: dict[str, Any], parts: tuple[str, ...]) -> Any:
    node: Any = event
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        return node.pop(parts[-1], _MISSING)
    return _MISSING


def stamp_value(now: float, fmt: str) -> Any:
    if fmt == "unix":
        return now
    if fmt == "unix_ms":
        return int(now * 1000)
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TransformStage:
    name = "transform"

    def __init__(self, options: Transform) -> None:
        self.rename = [(split(a), split(b)) for a, b in options.rename.items()]
        self.project = [split(p) for p in options.project] if options.project is not None else None
        self.drop = [split(p) for p in options.drop]
        self.add = [(split(k), v) for k, v in options.add.items()]
        self.stamp = split(options.stamp) if options.stamp else None
        self.stamp_format = options.stamp_format

    def apply(self, event: dict[str, Any], now: float) -> dict[str, Any]:
        for source, target in self.rename:
            value = pop_path(event, source)
            if value is not _MISSING:
                set_path(event, target, value)
        if self.project is not None:
            kept: dict[str, Any] = {}
            for parts in self.project:
                value = get_path(event, parts)
                if value is not _MISSING:
                    set_path(kept, parts, value)
            event = kept
        for parts in self.drop:
            pop_path(event, parts)
        for parts, value in self.add:
            set_path(event, parts, copy.deepcopy(value) if isinstance(value, dict | list) else value)
        if self.stamp is not None:
            set_path(event, self.stamp, stamp_value(now, self.stamp_format))
        return event

    def __call__(self, work: Work) -> None:
        assert work.events is not None
        out: list[Any] = []
        tick = work.tick
        for index, event in enumerate(work.events):
            tick()
            if not isinstance(event, dict):
                work.failed += 1
                raise InvalidEvent("not_an_object", f"event {index} is a JSON {type(event).__name__}; "
                                   "transform works on objects")
            out.append(self.apply(event, work.received))
        work.events = out


@STAGE_FACTORIES.register("transform")
def _factory(options: Transform, context: StageContext) -> TransformStage:
    return TransformStage(options)


__all__ = ["TransformStage", "get_path", "pop_path", "set_path", "split", "stamp_value"]
