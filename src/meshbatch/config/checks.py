"""Checks of meaning across the config tree: references, unique names, extension names."""

from __future__ import annotations

from collections.abc import Iterator

from meshbatch.config.load import Problem, did_you_mean, register_check
from meshbatch.config.model import Config


def _duplicates(names: list[tuple[str, str]], what: str) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for path, name in names:
        if name in seen:
            yield Problem(path, f"duplicate {what} {name!r} (first at {seen[name]})")
        else:
            seen[name] = path


@register_check
def unique_names(config: Config) -> Iterator[Problem]:
    yield from _duplicates([(f"listeners[{i}].name", lst.name) for i, lst in enumerate(config.listeners)],
                           "listener name")
    yield from _duplicates([(f"clusters[{i}].name", c.name) for i, c in enumerate(config.clusters)],
                           "cluster name")
    routes = [(f"listeners[{i}].routes[{j}].name", r.name)
              for i, lst in enumerate(config.listeners) for j, r in enumerate(lst.routes)]
    yield from _duplicates(routes, "route name")
    addresses = [(f"listeners[{i}].listen", lst.listen) for i, lst in enumerate(config.listeners)]
    if config.admin is not None:
        addresses.insert(0, ("admin.listen", config.admin.listen))
    yield from _duplicates([(p, a) for p, a in addresses if not a.endswith(":0")], "listen address")


@register_check
def cluster_references(config: Config) -> Iterator[Problem]:
    names = [c.name for c in config.clusters]
    for i, lst in enumerate(config.listeners):
        for j, route in enumerate(lst.routes):
            if route.cluster not in names:
                yield Problem(f"listeners[{i}].routes[{j}].cluster",
                              f"no cluster named {route.cluster!r}{did_you_mean(route.cluster, names)}")


@register_check
def extension_names(config: Config) -> Iterator[Problem]:
    from meshbatch.batching.codecs import CODECS
    from meshbatch.upstream.balancers import BALANCERS

    for i, cluster in enumerate(config.clusters):
        if cluster.lb not in BALANCERS:
            yield Problem(f"clusters[{i}].lb", f"unknown balancer {cluster.lb!r}"
                          f"{did_you_mean(cluster.lb, BALANCERS.names())}; known: {', '.join(BALANCERS.names())}")
    for i, lst in enumerate(config.listeners):
        for j, route in enumerate(lst.routes):
            if route.batch is not None and route.batch.codec not in CODECS:
                yield Problem(f"listeners[{i}].routes[{j}].batch.codec",
                              f"unknown codec {route.batch.codec!r}{did_you_mean(route.batch.codec, CODECS.names())}"
                              f"; known: {', '.join(CODECS.names())}")
