"""JSON Schema regular expressions on RE2: linear time on hostile input, jsonschema's semantics otherwise, and
patterns RE2 cannot compile refused at load with the pointer of their keyword."""

from __future__ import annotations

import time
from typing import Any

import jsonschema
import pytest

from meshbatch.config import ConfigError, parse
from meshbatch.pipeline.schema_re2 import pattern_problems
from meshbatch.pipeline.stages.validate import make_validator

EVIL = "^(a+)+$"
SLOW = "a" * 26 + "!"  # about 2 s with Python's re for the first pattern; microseconds with RE2


def fast(fn: Any) -> Any:
    start = time.perf_counter()
    out = fn()
    assert time.perf_counter() - start < 0.2, "a linear-time match took long"
    return out


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"name": {"type": "string", "pattern": EVIL}}},
    {"type": "object", "patternProperties": {EVIL: {"type": "string"}}, "additionalProperties": False},
    {"type": "object", "patternProperties": {EVIL: {}}, "unevaluatedProperties": False},
    {"$schema": "https://json-schema.org/draft/2019-09/schema", "type": "object",
     "patternProperties": {EVIL: {}}, "unevaluatedProperties": False},
    {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
     "patternProperties": {EVIL: {}}, "additionalProperties": False},
    {"type": "object", "propertyNames": {"pattern": EVIL}},
])
def test_catastrophic_patterns_run_in_linear_time(schema: dict[str, Any]) -> None:
    validator = make_validator(schema)
    event = {"name": SLOW, SLOW: "x"}
    errors = fast(lambda: list(validator.iter_errors(event)))
    assert errors, "the slow string matches none of these patterns"
    assert fast(lambda: validator.is_valid({"name": "aaaa"} if "properties" in schema else {"aaaa": "x"}))


SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"id": {"type": "string", "pattern": "^[a-z]+-[0-9]{2,4}$"}}},
    {"type": "object", "properties": {"a": {}}, "patternProperties": {"^x-": {"type": "integer"}},
     "additionalProperties": False},
    {"type": "object", "patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
    {"type": "object", "properties": {"a": {}}, "patternProperties": {"^x-": {}}, "unevaluatedProperties": False},
    {"allOf": [{"patternProperties": {"^p": {}}}, {"properties": {"q": {}}}], "unevaluatedProperties": False},
    {"$defs": {"base": {"patternProperties": {"^b": {"type": "number"}}}}, "$ref": "#/$defs/base",
     "unevaluatedProperties": {"type": "string"}},
    {"if": {"required": ["kind"]}, "then": {"patternProperties": {"^t": {}}}, "else": {"properties": {"e": {}}},
     "unevaluatedProperties": False},
    {"$schema": "https://json-schema.org/draft/2019-09/schema", "properties": {"a": {}},
     "patternProperties": {"^x-": {}}, "unevaluatedProperties": False},
    {"$schema": "https://json-schema.org/draft/2019-09/schema", "anyOf": [{"patternProperties": {"^z": {}}}],
     "unevaluatedProperties": False},
    {"type": "string", "format": "regex"},
]
INSTANCES: list[Any] = [
    {"id": "abc-12"}, {"id": "abc-1"}, {"id": "ABC-12"}, {"a": 1}, {"a": 1, "x-n": 2}, {"a": 1, "x-n": "s"},
    {"b": 1, "c": "s"}, {"b": "s"}, {"p1": 1, "q": 2}, {"p1": 1, "r": 2}, {"kind": 1, "t1": 2}, {"kind": 1, "e": 2},
    {"e": 2}, {"z1": 1}, {"z1": 1, "y": 2}, {"other": 1}, "^ab+$", "a(", "a{2}", 5,
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_same_verdicts_and_messages_as_jsonschema_on_safe_patterns(schema: dict[str, Any]) -> None:
    reference_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    reference = reference_cls(schema, format_checker=reference_cls.FORMAT_CHECKER)
    ours = make_validator(schema)
    for instance in INSTANCES:
        expected = sorted(e.message for e in reference.iter_errors(instance))
        assert sorted(e.message for e in ours.iter_errors(instance)) == expected, instance


def test_the_regex_format_is_checked_with_re2() -> None:
    validator = make_validator({"type": "string", "format": "regex"})
    assert validator.is_valid("^[a-z]+$")
    assert not validator.is_valid("(?=lookahead)")  # valid for Python's re, not for RE2
    assert not validator.is_valid("(unclosed")


@pytest.mark.parametrize(("schema", "pointer"), [
    ({"properties": {"a": {"pattern": "(x)\\1"}}}, "/properties/a/pattern"),
    ({"patternProperties": {"^(?!internal)": {}}}, "/patternProperties/^(?!internal)"),
    ({"$defs": {"id": {"type": "string", "pattern": "(?<=a)b"}}, "$ref": "#/$defs/id"}, "/$defs/id/pattern"),
    ({"prefixItems": [{"pattern": "a++"}]}, "/prefixItems/0/pattern"),
])
def test_patterns_re2_cannot_compile_are_refused_with_their_pointer(schema: dict[str, Any], pointer: str) -> None:
    problems = pattern_problems(schema)
    assert len(problems) == 1 and problems[0].startswith(f"{pointer}: pattern "), problems
    with pytest.raises(ValueError, match="not supported by RE2"):
        make_validator(schema)


def test_instances_inside_a_schema_are_not_taken_for_patterns() -> None:
    schema = {"properties": {"pattern": {"enum": [{"pattern": "(?=x)"}], "default": {"pattern": "(?=y)"}},
                             "patternProperties": {"type": "object"}}}
    assert pattern_problems(schema) == []
    make_validator(schema)


def test_meshbatch_check_names_the_route_the_step_and_the_keyword() -> None:
    text = """
listeners:
  - name: l
    listen: 127.0.0.1:0
    routes:
      - name: events
        pipeline:
          - decode:
          - validate: {schema: {properties: {sku: {type: string, pattern: '^(?=[A-Z])\\w+$'}}}}
        ingest: {}
"""
    with pytest.raises(ConfigError) as info:
        parse(text)
    found = [str(p) for p in info.value.problems]
    assert len(found) == 1
    assert found[0].startswith("listeners[0].routes[0].pipeline[1].validate.schema: /properties/sku/pattern: "
                               "pattern '^(?=[A-Z])\\\\w+$' is not supported by RE2")
    assert found[0].endswith("(invalid perl operator: (?= (RE2 has no lookahead))")
