"""Checks of meaning for paths in the config: a route's `path`/`path_prefix` and a policy's paths are compared with
the normalised request path (http/paths.py), so one written in another form would silently never match."""

from __future__ import annotations

from collections.abc import Iterator

from meshbatch.config.load import Problem, register_check
from meshbatch.config.model import Config
from meshbatch.errors import BadRequest
from meshbatch.http.paths import PathRules, normalize_path


def _path_problem(value: str, rules: PathRules, prefix: bool) -> str | None:
    """Why a route's path (or policy path) can never match a normalised request path, or None."""
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


__all__ = ["paths_in_normal_form"]
