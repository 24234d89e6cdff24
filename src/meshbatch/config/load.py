"""YAML -> validated, frozen Config, with every error reported at once with its path.

Three passes, each collecting all its errors before the next runs:
1. YAML syntax (with line numbers), duplicate keys, and the bounds of `config.source` (size, aliases);
2. shape and types (pydantic), unknown keys turned into "did you mean" hints;
3. meaning: references between objects, unique names, names of extensions that exist.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from meshbatch.config.env import expand
from meshbatch.config.model import Config
from meshbatch.config.model.base import BASE_DIR
from meshbatch.config.model.routes import (
    ROUTE_CLASSES,
    ROUTE_TAGS,
    AnyRoute,
    IngestBatch,
    misplaced_key,
    route_kind,
)
from meshbatch.config.notes import notes
from meshbatch.config.problems import ConfigError, Problem, format_path
from meshbatch.config.source import SourceError, parse_yaml, read_text

log = logging.getLogger("meshbatch.config")


# Each check gets the validated config and returns its problems. Other packages add theirs (extension names).
SemanticCheck = Callable[[Config], Iterable[Problem]]
_semantic_checks: list[SemanticCheck] = []


def register_check(check: SemanticCheck) -> SemanticCheck:
    _semantic_checks.append(check)
    return check


def _model_at(root: type[BaseModel], loc: Sequence[int | str], data: Any) -> type[BaseModel] | None:
    """The model class that validated the mapping found at `loc` (walks field annotations and the data)."""
    current: Any = root
    node = data
    for part in loc:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            current = _strip_list(current)
            continue
        model = _as_model(current, node)
        if model is None or part not in model.model_fields:
            return None
        current = model.model_fields[part].annotation
        node = node.get(part) if isinstance(node, dict) else None
    return _as_model(current, node)


def _strip_list(tp: Any) -> Any:
    if get_origin(tp) is list:
        return get_args(tp)[0]
    for arg in get_args(tp):
        if get_origin(arg) is list:
            return get_args(arg)[0]
    return tp


def _as_model(tp: Any, node: Any) -> type[BaseModel] | None:
    if tp == AnyRoute:  # a route: the class of the kind its keys make
        return ROUTE_CLASSES[route_kind(node)]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    candidates = [a for a in get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(candidates) == 1 and (node is None or isinstance(node, dict)):
        return candidates[0]
    for arg in get_args(tp):
        found = _as_model(arg, node)
        if found is not None:
            return found
    return None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint naming the choice closest to `word`; a choice that starts with the word (`json` for `json-array`)
    comes first, so a short name finds its long form rather than another name that merely contains it."""
    names = list(choices)
    prefixed = [name for name in names if len(word) >= 3 and name.startswith(word) and name != word]
    close = sorted(prefixed, key=len)[:1] or difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _blocks(model: type[BaseModel], prefix: str = "", depth: int = 2) -> Iterator[tuple[str, type[BaseModel]]]:
    """The mappings below `model`, breadth first, as (dotted key, model): `batch`, `ingest`, `ingest.delivery`...
    Lists are left out (their items have no single path), and so is an ingest route's `batch:` (older configs)."""
    children = [(f"{prefix}{name}", child) for name, field in model.model_fields.items()
                if get_origin(field.annotation) is not list
                and (child := _as_model(field.annotation, None)) is not None and child is not IngestBatch]
    yield from children
    if depth > 1:
        for block, child in children:
            yield from _blocks(child, f"{block}.", depth - 1)


def _belongs_below(model: type[BaseModel], key: str, path: str) -> str:
    """A hint for a key that belongs to a block below `model` (`upstream_path` written on a route instead of under
    its `batch:`, `max_attempts` instead of under `ingest.delivery:`), or "". On a route, the blocks of the other
    route kinds are searched after its own (a plain route becomes a batch route with a `batch:` block)."""
    roots: list[type[BaseModel]] = [model]
    if model in ROUTE_CLASSES.values():
        roots += [cls for cls in ROUTE_CLASSES.values() if cls is not model]
    base = path.rpartition(".")[0]
    for root in roots:
        for block, child in _blocks(root):
            if key in child.model_fields:
                return f"; it belongs under {block}: ({base + '.' if base else ''}{block}.{key})"
    return ""


_MESSAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "greater_than_equal": lambda ctx: f"must be >= {ctx['ge']}",
    "greater_than": lambda ctx: f"must be > {ctx['gt']}",
    "less_than_equal": lambda ctx: f"must be <= {ctx['le']}",
    "less_than": lambda ctx: f"must be < {ctx['lt']}",
    "too_short": lambda ctx: f"must have at least {ctx['min_length']} item(s)",
    "string_too_short": lambda ctx: "must not be empty",
    "missing": lambda ctx: "is required",
    # a route that is not a mapping: the class its keys would have made is no name the user wrote
    "model_type": lambda ctx: "must be a valid dictionary or instance of "
    + ("route" if ctx.get("class_name") in ROUTE_TAGS else str(ctx.get("class_name")).lower()),
}


_ADDRESS_KEYS = {"listen", "address"}  # the keys whose value is HOST:PORT (listeners, admin, endpoints)


def _address_message(value: Any) -> str:
    """What is expected of an address given as something else than text (`listen: 37080`)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return f"must be HOST:PORT, e.g. 0.0.0.0:{value} (a port alone is not an address)"
    return "must be HOST:PORT, e.g. 0.0.0.0:8080"


def _pydantic_problems(exc: ValidationError, data: Any) -> list[Problem]:
    problems: dict[tuple[str, str], Problem] = {}
    union_paths: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        full = [p for p in err["loc"] if p not in ROUTE_TAGS]  # the kind a route is: not part of its path
        loc = [p for p in full if not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS))]
        if _wrong_arm(full, data):
            continue
        path = format_path(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(Config, loc[:-1], data)
            misplaced = misplaced_key(parent, str(loc[-1])) if parent else None  # a key of another route kind
            hint = did_you_mean(str(loc[-1]), parent.model_fields) if parent else ""
            if parent and not hint:
                hint = _belongs_below(parent, str(loc[-1]), path)
            message = misplaced or f"unknown key{hint}"
        elif kind == "string_type" and loc and loc[-1] in _ADDRESS_KEYS:
            message = _address_message(err.get("input"))
        elif kind in _MESSAGES:
            message = _MESSAGES[kind](err.get("ctx") or {})
        elif kind == "value_error":
            message = str(err["msg"]).removeprefix("Value error, ")
        else:
            message = str(err["msg"]).lower().replace("input should be", "must be")
        if len(full) != len(loc):  # an error inside one arm of a union: keep one line per path
            union_paths.setdefault(path, []).append(message)
            continue
        problems[(path, message)] = Problem(path, message)
    for path, messages in union_paths.items():
        if not any(p.path == path for p in problems.values()):
            problems[(path, messages[-1])] = Problem(path, messages[-1])
    return list(problems.values())


_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "EndpointSpec", "Adaptive", "Admin", "Batch",
               "AutoInFlight"}
_SCALAR_TAGS = {"str", "int", "float", "bool", "list"}


def _wrong_arm(loc: Sequence[int | str], data: Any) -> bool:
    """An error from a scalar arm of a union whose input is a mapping (the model arm is the one meant)."""
    node = data
    for part in loc:
        if isinstance(part, str) and part in _SCALAR_TAGS:
            return isinstance(node, dict)
        if isinstance(part, str) and part in _UNION_TAGS:
            continue
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    return False


def _lenient(tp: Any, node: Any, context: dict[str, Any] | None = None) -> Any:
    """`node` as unvalidated model objects with defaults filled in, where it has a model's shape.

    When shapes and types already failed, the checks of meaning still run on this, so that every error is
    reported at once (a wrong cluster name next to a value out of range).
    """
    if isinstance(node, list):
        return [_lenient(_strip_list(tp), item, context) for item in node]
    model = _as_model(tp, node) if isinstance(node, dict) else None
    if model is None:
        return node
    try:  # a part that is valid by itself is judged as the loader would build it
        return model.model_validate(node, context=context)
    except ValidationError:
        pass
    values = {name: _lenient(field.annotation, node[name], context) for name, field in model.model_fields.items()
              if name in node}
    return model.model_construct(**values)


def _semantic_problems(config: Any) -> list[Problem]:
    problems: list[Problem] = []
    for check in _semantic_checks:
        try:
            problems.extend(check(config))
        except Exception:  # a lenient tree may lack a field or hold a wrong type: its own error says so
            continue
    return problems


def parse(text: str, source: str = "<config>", base_dir: str | Path | None = None,
          env: Mapping[str, str] | None = None) -> Config:
    """Validate YAML text into a Config, or raise ConfigError listing every problem.

    `base_dir`: the folder relative file paths in the config resolve against (`load` gives the config file's
    own); None keeps them as written (they are then opened against the working directory). `env`: the
    variables `${NAME}` in secret fields are read from (meshbatch.config.env; `load` gives the process's
    environment); None keeps the references as written."""
    try:
        data = parse_yaml(text)
    except SourceError as exc:
        raise ConfigError([Problem(exc.where, exc.message)], source) from None
    if not isinstance(data, dict):
        raise ConfigError([Problem("", "the config must be a YAML mapping at the top level")], source)
    context = None if base_dir is None else {BASE_DIR: os.path.abspath(base_dir)}
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as exc:
        problems = _pydantic_problems(exc, data)
        reported = {p.path for p in problems}
        problems += [p for p in _semantic_problems(_lenient(Config, data, context)) if p.path not in reported]
        raise ConfigError(problems, source) from None
    if env is not None:
        config = _expanded(config, data, env, context, source)
    problems = [p for check in _semantic_checks for p in check(config)]
    if problems:
        raise ConfigError(problems, source)
    return config


def _expanded(config: Config, data: dict[str, Any], env: Mapping[str, str], context: dict[str, Any] | None,
              source: str) -> Config:
    """`config` with `${NAME}` in its secret fields replaced from `env` (validated again if anything changed)."""

    changed, problems = expand(data, config, env)
    if problems:
        raise ConfigError(problems, source)
    if not changed:
        return config
    try:
        return Config.model_validate(data, context=context)
    except ValidationError as exc:  # a value from the environment out of bounds (a token too short)
        raise ConfigError(_pydantic_problems(exc, data), source) from None


def load(path: str | Path, log_notes: bool = True) -> Config:
    """The config in `path`, or ConfigError with every problem. Relative file paths in it resolve against the
    file's folder (not the working directory); `${NAME}` in its secret fields is read from the environment. Its
    notes (what it relies on without saying so) are logged,
    unless the caller shows them itself (`meshbatch check`)."""
    try:
        text = read_text(path)
    except SourceError as exc:
        raise ConfigError([Problem("", exc.message)], str(path)) from None
    config = parse(text, str(path), os.path.dirname(os.path.abspath(path)), os.environ)
    if log_notes:
        for note in notes(config):  # not errors: what the config relies on without saying so
            log.info("%s: note: %s", path, note)
    return config


__all__ = ["ConfigError", "Problem", "did_you_mean", "format_path", "load", "parse", "register_check"]
