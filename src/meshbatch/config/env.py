"""Secrets from the environment: `${NAME}` in a secret field of the config is the variable's value. Pure.

Only the fields marked secret (`secret(KIND)` in the model: `admin.token`, a sink's or log's `url`, etcd `urls`,
OTLP `endpoint` and `headers`) are expanded, so that a password or token can live in the process's environment
(a Kubernetes Secret, a systemd credential) while the config file stays shareable; nothing else in a config
changes with the environment. `$$` is a literal `$`; a `$` not followed by `{` or `$` is kept as it is (a
password may hold one). A variable that is not set is an error with its path, at load, never an empty
password at the first connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from meshbatch.config.fields import Loc, secrets
from meshbatch.config.problems import Problem, format_path

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def references(text: str) -> list[str]:
    """The variable names `text` refers to, in order."""
    return [m[1] for m in _REFERENCE.finditer(text) if m[1]]


def substitute(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """(`text` with its references replaced, the names that are not set)."""
    missing: list[str] = []

    def one(match: re.Match[str]) -> str:
        name = match[1]
        if name is None:
            return "$"
        if name not in env:
            missing.append(name)
            return match[0]
        return env[name]

    return _REFERENCE.sub(one, text), missing


def secret_strings(config: BaseModel) -> Iterator[tuple[Loc, str, str]]:
    """Every string held by a secret field: (where it is in the file, the field's secret kind, the string)."""
    for found in secrets(config):
        value, kind = found.value, found.kind
        if isinstance(value, str):
            yield found.loc, kind, value
        elif isinstance(value, list | tuple):
            yield from (((*found.loc, i), kind, v) for i, v in enumerate(value) if isinstance(v, str))
        elif isinstance(value, dict):
            yield from (((*found.loc, k), kind, v) for k, v in value.items() if isinstance(v, str))


def set_in(data: Any, loc: Loc, value: Any) -> None:
    """Put `value` at `loc` in plain YAML data, making the mappings on the way that are missing."""
    node = data
    for part in loc[:-1]:
        if isinstance(node, dict):
            if not isinstance(node.get(part), dict | list):
                node[part] = {}
            node = node[part]
        else:
            node = node[part]
    node[loc[-1]] = value


def expand(data: Any, config: BaseModel, env: Mapping[str, str]) -> tuple[bool, list[Problem]]:
    """Expand the references of every secret string of `config` in `data` (its YAML, changed in place).
    Returns (whether anything changed, a problem per variable that is not set)."""
    changed = False
    problems: list[Problem] = []
    for loc, _, text in secret_strings(config):
        if "$" not in text:
            continue
        expanded, missing = substitute(text, env)
        problems += [Problem(format_path(loc), f"${{{name}}} is not set in the environment") for name in missing]
        if expanded != text:
            set_in(data, loc, expanded)
            changed = True
    return changed, problems


__all__ = ["expand", "references", "secret_strings", "set_in", "substitute"]
