"""Checks of meaning for the resilience and shaping keys of routes (registered in config/checks.py)."""

from __future__ import annotations

from collections.abc import Iterator

from meshbatch.config.load import Problem, did_you_mean, register_check
from meshbatch.config.model import Config, ForwardingRoute, Route


def route_problems(config: Config, route: Route, path: str) -> Iterator[Problem]:
    if isinstance(route, ForwardingRoute):  # an ingest route has none of these keys (config.model.routes)
        yield from _forwarding_problems([c.name for c in config.clusters], route, path)
    yield from _rate_limit_problems(route, path)


def _forwarding_problems(names: list[str], route: ForwardingRoute, path: str) -> Iterator[Problem]:
    def unknown(name: str) -> str:
        return f"no cluster named {name!r}{did_you_mean(name, names)}"

    if route.split:
        if route.cluster:
            yield Problem(f"{path}.split", "set cluster or split, not both")
        for k, entry in enumerate(route.split):
            if entry.cluster not in names:
                yield Problem(f"{path}.split[{k}].cluster", unknown(entry.cluster))
        if sum(entry.weight for entry in route.split) == 0:
            yield Problem(f"{path}.split", "the weights add up to 0: give at least one entry a weight")
        if route.subset:
            yield Problem(f"{path}.subset", "with split, give each entry its own subset")
    elif route.split_key is not None:
        yield Problem(f"{path}.split_key", "applies only with split")
    if route.split_key is not None:
        kind, _, header = route.split_key.partition(":")
        if kind != "header" or not header:
            yield Problem(f"{path}.split_key", f"{route.split_key!r}: a split key is 'header:NAME'")
    if route.mirror is not None and route.mirror.cluster not in names:
        yield Problem(f"{path}.mirror.cluster", unknown(route.mirror.cluster))
    if route.per_try_timeout_ms is not None and route.per_try_timeout_ms > route.timeout_ms:
        yield Problem(f"{path}.per_try_timeout_ms", f"must be <= timeout_ms ({route.timeout_ms})")


def _rate_limit_problems(route: Route, path: str) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    for k, limit in enumerate(route.rate_limit):
        name = limit.label
        if name in seen:
            yield Problem(f"{path}.rate_limit[{k}]", f"a second limit named {name!r} (first at rate_limit"
                                                     f"[{seen[name]}]); give each a distinct name")
        else:
            seen[name] = k


def problems(config: Config) -> Iterator[Problem]:
    for i, listener in enumerate(config.listeners):
        for j, route in enumerate(listener.routes):
            yield from route_problems(config, route, f"listeners[{i}].routes[{j}]")


@register_check
def resilience_and_shaping(config: Config) -> Iterator[Problem]:
    """Retries, splits, subsets, mirrors, rate limits (meshbatch.layers)."""
    yield from problems(config)


__all__ = ["problems", "resilience_and_shaping", "route_problems"]
