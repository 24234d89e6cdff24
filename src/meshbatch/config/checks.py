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
            if not route.cluster and route.split:  # weighted clusters instead (meshbatch.layers.checks)
                continue
            if not route.cluster:  # only an ingest route storing into a database needs none
                if route.ingest is None or route.ingest.sink.type == "cluster":
                    yield Problem(f"listeners[{i}].routes[{j}].cluster", "is required")
                continue
            if route.cluster not in names:
                yield Problem(f"listeners[{i}].routes[{j}].cluster",
                              f"no cluster named {route.cluster!r}{did_you_mean(route.cluster, names)}")


@register_check
def ingest_and_pipeline(config: Config) -> Iterator[Problem]:
    from meshbatch.ingest.checks import route_problems

    for i, lst in enumerate(config.listeners):
        for j, route in enumerate(lst.routes):
            yield from route_problems(config, route, f"listeners[{i}].routes[{j}]")


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


@register_check
def cluster_discovery(config: Config) -> Iterator[Problem]:
    """Endpoints come from `endpoints` (static) or a dynamic source, whose keys are checked per type."""
    from meshbatch.discovery import SOURCES

    for i, cluster in enumerate(config.clusters):
        path = f"clusters[{i}]"
        discovery = cluster.discovery
        if discovery is None or discovery.type == "static":
            if not cluster.endpoints:
                yield Problem(f"{path}.endpoints", "must have at least 1 item(s)")
            continue
        if discovery.type not in SOURCES:
            yield Problem(f"{path}.discovery.type", f"unknown discovery type {discovery.type!r}"
                          f"{did_you_mean(discovery.type, SOURCES.names())}; known: {', '.join(SOURCES.names())}")
            continue
        kind = SOURCES.get(discovery.type)
        if cluster.endpoints:
            yield Problem(f"{path}.endpoints", f"must be empty with discovery type {discovery.type!r} "
                          "(the endpoints come from the source)")
        for key in kind.required:
            if getattr(discovery, key, None) in (None, "", []):
                yield Problem(f"{path}.discovery.{key}", f"is required for discovery type {discovery.type!r}")
        for key in sorted(discovery.model_fields_set - kind.accepted):
            yield Problem(f"{path}.discovery.{key}", f"does not apply to discovery type {discovery.type!r}")
        for key, message in kind.check(discovery):
            yield Problem(f"{path}.discovery.{key}", message)


@register_check
def telemetry(config: Config) -> Iterator[Problem]:
    from meshbatch.telemetry.checks import telemetry_problems

    yield from telemetry_problems(config)


@register_check
def resilience_and_shaping(config: Config) -> Iterator[Problem]:
    """Retries, splits, subsets, mirrors, rate limits (meshbatch.layers)."""
    from meshbatch.layers.checks import problems

    yield from problems(config)


@register_check
def security(config: Config) -> Iterator[Problem]:
    from meshbatch.security.checks import security_problems

    yield from security_problems(config)


def _path_problem(value: str, rules: object, prefix: bool) -> str | None:
    """Why a route's path (or policy path) can never match a normalised request path, or None."""
    from meshbatch.errors import BadRequest
    from meshbatch.http.paths import PathRules, normalize_path

    assert isinstance(rules, PathRules)
    if not value.startswith("/"):
        return None  # `*` and other non-paths are judged elsewhere
    raw = value.encode("utf-8")
    try:
        normal = normalize_path(raw, rules)
    except BadRequest as exc:
        return f"no request path can be {value!r}: {exc.detail}"
    if prefix and raw.endswith(b"/") and not normal.endswith(b"/"):
        normal += b"/"
    if normal != raw:
        return (f"requests are matched after their paths are normalised, so {value!r} never matches; write "
                f"{normal.decode('utf-8')!r}")
    return None


@register_check
def paths_in_normal_form(config: Config) -> Iterator[Problem]:
    """Route paths and policy paths are compared with the normalised request path (docs/data-plane.md#paths): one
    written in another form (`//`, `/./`, `%2f`, `%61`) would silently never match."""
    from meshbatch.http.paths import PathRules

    for i, lst in enumerate(config.listeners):
        spec = lst.path_normalization
        if not spec.normalize:
            continue
        rules = PathRules(spec.normalize, spec.merge_slashes, spec.escaped_slashes, spec.path_parameters)
        policies = [(f"listeners[{i}].policies", lst.policies)]
        for j, route in enumerate(lst.routes):
            where = f"listeners[{i}].routes[{j}]"
            for key, prefix in (("path", False), ("path_prefix", True)):
                value = getattr(route.match, key, None)
                problem = _path_problem(value, rules, prefix) if isinstance(value, str) else None
                if problem is not None:
                    yield Problem(f"{where}.match.{key}", problem)
            policies.append((f"{where}.policies", route.policies))
        for base, items in policies:
            for p, policy in enumerate(items):
                for r, rule in enumerate(policy.rules):
                    for t, to in enumerate(rule.to):
                        for key in ("paths", "not_paths"):
                            for v, pattern in enumerate(getattr(to.operation, key)):
                                literal, star, _ = pattern.partition("*")
                                if star:  # only whole segments before the first `*` (`/a/.*`, `/f%2*` are fine)
                                    literal = literal[:literal.rfind("/") + 1]
                                problem = _path_problem(literal, rules, bool(star))
                                if problem is not None:
                                    yield Problem(f"{base}[{p}].rules[{r}].to[{t}].operation.{key}[{v}]", problem)
