"""`validate`: each event against a JSON Schema (its `$schema` picks the draft; 2020-12 when absent).

An invalid event answers the whole request 422 with the first error and where it is (`reject`), or goes to the
route's dead letters with that reason while the valid ones go on (`dead_letter`, ingest routes only).

Every regular expression (`pattern`, `patternProperties`, the `regex` format) runs on RE2 (`schema_re2`); a
schema with a pattern RE2 cannot compile is refused at load, with the pointer of the keyword.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import orjson
import yaml
from jsonschema.protocols import Validator

from meshbatch.config.plain import Validate
from meshbatch.pipeline.base import STAGE_FACTORIES, StageContext
from meshbatch.pipeline.schema_re2 import pattern_problems, re2_validator
from meshbatch.pipeline.work import InvalidEvent, Work


def load_schema(source: str | dict[str, Any]) -> dict[str, Any]:
    """The schema itself: inline, or read from a .json/.yaml file. Raises ValueError with the cause."""
    if isinstance(source, dict):
        schema: Any = source
    else:
        path = Path(source)
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read schema file {source}: {exc.strerror}") from None
        try:
            schema = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else orjson.loads(text)
        except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"schema file {source} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    if not isinstance(schema, dict):
        raise ValueError("a JSON Schema is an object")
    return schema


def make_validator(source: str | dict[str, Any]) -> Validator:
    schema = load_schema(source)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
    problems = pattern_problems(schema)
    if problems:
        raise ValueError("; ".join(problems))
    safe = re2_validator(cls)
    validator: Validator = safe(schema, format_checker=safe.FORMAT_CHECKER)
    return validator


def describe(error: jsonschema.ValidationError) -> str:
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{where}: {error.message}"


class ValidateStage:
    name = "validate"

    def __init__(self, options: Validate) -> None:
        self.validator = make_validator(options.schema_)
        self.dead_letter = options.on_invalid == "dead_letter"

    def __call__(self, work: Work) -> None:
        assert work.events is not None
        kept: list[Any] = []
        tick = work.tick
        for index, event in enumerate(work.events):
            tick()
            error = jsonschema.exceptions.best_match(self.validator.iter_errors(event))
            if error is None:
                kept.append(event)
                continue
            reason = describe(error)
            work.failed += 1
            if not self.dead_letter:
                prefix = f"event {index}: " if len(work.events) > 1 else ""
                raise InvalidEvent("schema_violation", prefix + reason)
            work.park(event, f"schema_violation: {reason}")
        work.events = kept


@STAGE_FACTORIES.register("validate")
def _factory(options: Validate, context: StageContext) -> ValidateStage:
    return ValidateStage(options)


__all__ = ["ValidateStage", "describe", "load_schema", "make_validator"]
