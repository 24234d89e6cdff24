"""Checks of meaning across the config tree that need nothing but the config: unique names, references.

Each part of the proxy registers its own checks where it is implemented (`register_check`): extension names with
their registries, file checks with the code that reads the files, and so on; `meshbatch.runtime.checks` loads
them all, so `meshbatch check`, `run` and a reload judge a config by every rule.
"""

from __future__ import annotations

from collections.abc import Iterator

from meshbatch.config.load import Problem, did_you_mean, register_check
from meshbatch.config.model import Config, ForwardingRoute, IngestRoute


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
            if not route.cluster and isinstance(route, ForwardingRoute) and route.split:  # weighted clusters instead
                continue
            if not route.cluster:  # only an ingest route storing into a database needs none
                if not isinstance(route, IngestRoute) or route.ingest.sink.type == "cluster":
                    yield Problem(f"listeners[{i}].routes[{j}].cluster", "is required")
                continue
            if route.cluster not in names:
                yield Problem(f"listeners[{i}].routes[{j}].cluster",
                              f"no cluster named {route.cluster!r}{did_you_mean(route.cluster, names)}")
