"""The marked fields of a loaded config: every file path (`meshbatch.config.model.base.ReadPath` and its kin) and
every secret (`secret(KIND)`), each with where it is in the file. Pure.

`meshbatch k8s render` reads through these what a config needs besides itself (the files to ship in a ConfigMap
or a Secret, the files it writes that need a volume, the values that belong in a Secret), and
`tests/unit/test_config_paths.py` walks the whole model with `unmarked_path_fields` so that a new field naming a
file cannot be forgotten (it would then resolve against the working directory).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from meshbatch.config.model.base import PATH_MARK
from meshbatch.config.problems import format_path
from meshbatch.config.redact import MARK as SECRET_MARK

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Marked:
    loc: Loc  # the keys and indexes from the top of the file (keys as written: `schema`, `validate`)
    kind: str  # the mark's value: read | secret | write for paths, value | url | values for secrets
    value: Any

    @property
    def path(self) -> str:
        return format_path(self.loc)


def _extras(annotation: Any) -> Iterator[dict[str, Any]]:
    for arg in get_args(annotation):
        if isinstance(arg, FieldInfo) and isinstance(arg.json_schema_extra, dict):
            yield arg.json_schema_extra
        else:
            yield from _extras(arg)


def mark_of(model: type[BaseModel], name: str, mark: str) -> str | None:
    """The value of `mark` on field `name` of `model`, on the field itself or on an arm of its type
    (`ReadPath | None`)."""
    info = model.model_fields[name]
    extras = [info.json_schema_extra] if isinstance(info.json_schema_extra, dict) else []
    for extra in [*extras, *_extras(info.annotation)]:
        if mark in extra:
            return str(extra[mark])
    return None


def marked(model: BaseModel, mark: str, where: Loc = ()) -> Iterator[Marked]:
    """Every field below `model` that carries `mark` (PATH_MARK or the secret mark), set or not."""
    cls = type(model)
    for name, info in cls.model_fields.items():
        loc = (*where, info.alias or name)
        value = getattr(model, name)
        kind = mark_of(cls, name, mark)
        if kind is not None:
            yield Marked(loc, kind, value)
        else:
            yield from _nested(value, mark, loc)


def _nested(value: Any, mark: str, loc: Loc) -> Iterator[Marked]:
    if isinstance(value, BaseModel):
        yield from marked(value, mark, loc)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _nested(item, mark, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nested(item, mark, (*loc, key))


def paths(config: BaseModel) -> list[Marked]:
    """The file paths the config names (unset ones left out)."""
    return [m for m in marked(config, PATH_MARK) if isinstance(m.value, str) and m.value]


def secrets(config: BaseModel) -> list[Marked]:
    """The secret fields the config sets (empty ones left out)."""
    return [m for m in marked(config, SECRET_MARK) if m.value not in (None, "", [], {})]


# A field whose name says it holds a file: it must be one of the *Path types, or listed here with the reason.
PATH_LOOKING = re.compile(r"(?i)(^path$|_path$|file|^cert$|^key$|^ca$|jwks|kubeconfig|schema|descriptor|dir$)")
NOT_A_PATH: dict[str, str] = {
    "Batch.upstream_path": "a request path on the upstream",
    "IngestBatch.upstream_path": "a request path on the upstream",
    "Sink.upstream_path": "a request path on the upstream",
    "HealthCheck.path": "a request path on the endpoint",
    "Match.path": "a request path a route matches",
    "Batch.key": "which request parts make the batch key",
    "Condition.key": "the attribute a policy condition reads",
    "RateLimit.key": "which request part keys the rate limit",
}


def unmarked_path_fields(root: type[BaseModel]) -> list[str]:
    """`Model.field` names reachable from `root` that look like file paths and are neither marked nor listed."""
    from meshbatch.config.redact import model_fields  # the same walk as the secrets' test

    return sorted(f"{model.__name__}.{name}" for model, name, alias in model_fields(root)
                  if (PATH_LOOKING.search(name) or PATH_LOOKING.search(alias))
                  and mark_of(model, name, PATH_MARK) is None and f"{model.__name__}.{name}" not in NOT_A_PATH)


__all__ = ["NOT_A_PATH", "Loc", "Marked", "mark_of", "marked", "paths", "secrets", "unmarked_path_fields"]
