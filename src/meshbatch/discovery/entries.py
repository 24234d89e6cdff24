"""Endpoint entries as written in a file or an etcd value: `HOST:PORT`, or `{address, weight, metadata}`.

An entry is validated by the config model (`meshbatch.config.model.EndpointSpec`, imported by the first entry a
dynamic source reads: a static cluster never does) and kept as its plain run-time form."""

from __future__ import annotations

from typing import Any

from meshbatch.config.plain import EndpointSpec


class EntryError(ValueError):
    pass


def parse_entry(item: Any, where: str) -> EndpointSpec:
    if isinstance(item, str):
        item = {"address": item}
    if not isinstance(item, dict):
        raise EntryError(f"{where}: an endpoint is 'HOST:PORT' or a mapping with 'address'")
    from pydantic import ValidationError

    from meshbatch.config.model import EndpointSpec as EndpointModel

    try:
        spec = EndpointModel.model_validate(item)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise EntryError(f"{where}{'.' + loc if loc else ''}: {first['msg']}") from None
    return EndpointSpec(address=spec.address, weight=spec.weight, metadata=dict(spec.metadata))


def parse_entries(data: Any) -> list[EndpointSpec]:
    """A list of entries, or a mapping whose `endpoints` is one."""
    if isinstance(data, dict) and "endpoints" in data:
        data = data["endpoints"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise EntryError("expected a list of endpoints (or a mapping with 'endpoints')")
    return unique([parse_entry(item, f"endpoints[{i}]") for i, item in enumerate(data)])


def unique(specs: list[EndpointSpec]) -> list[EndpointSpec]:
    """One entry per address (the first wins), in a stable order."""
    seen: dict[str, EndpointSpec] = {}
    for spec in specs:
        seen.setdefault(spec.address, spec)
    return list(seen.values())


__all__ = ["EntryError", "parse_entries", "parse_entry", "unique"]
