"""JSON Schema validation with RE2 for every regular expression the instance is matched against.

jsonschema runs `pattern`, `patternProperties` and the `regex` format on Python's backtracking `re`, and so do
two helpers behind `additionalProperties` and `unevaluatedProperties` (they re-match property names against
`patternProperties`). Those five keywords are replaced here, on a class made with `jsonschema.validators.extend`
(the draft's own class is untouched): the schema's patterns are compiled once with RE2 and searched in linear
time. The evaluated-properties walk of `unevaluatedProperties` follows jsonschema's (2020-12, and 2019-09's
older rules), with a set instead of a list for the keys it found.

`pattern_problems` finds, at config load, every pattern RE2 cannot compile, with the JSON pointer of its keyword:
such a schema is refused rather than validated with another engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
from jsonschema import FormatChecker, ValidationError
from jsonschema.protocols import Validator
from referencing.jsonschema import lookup_recursive_ref

from meshbatch.pipeline.regex import RegexError, compile_regex, compile_untrusted

_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})  # their values are instances, not schemas


def _search(pattern: str, text: str) -> bool:
    try:
        return compile_regex(pattern).search(text) is not None
    except RegexError as exc:  # refused at load; a schema that reached here another way fails loudly
        raise jsonschema.SchemaError(f"pattern {pattern!r} is not supported: {exc}") from None


def pattern(validator: Validator, patrn: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(patrn, instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any,
                       schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in patterns.items():
        for key, value in instance.items():
            if _search(patrn, key):
                yield from validator.descend(value, subschema, path=key, schema_path=patrn)


def _additional(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [key for key in instance
            if key not in properties and not any(_search(p, key) for p in patterns)]


def _extras(extras: list[Any]) -> str:
    verb = "was" if len(extras) == 1 else "were"
    return f"{', '.join(repr(extra) for extra in extras)} {verb}"


def additional_properties(validator: Any, allowed: Any, instance: Any,
                          schema: dict[str, Any]) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _additional(instance, schema)
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
        else:
            yield ValidationError(f"Additional properties are not allowed ({_extras(sorted(extras))} unexpected)")


def _valid(errors: Iterator[ValidationError]) -> bool:
    return next(errors, None) is None


def _follow(validator: Any, target: Any, instance: Any, legacy: bool) -> set[str]:
    evolved = validator.evolve(schema=target.contents, _resolver=target.resolver)
    return evaluated_keys(evolved, instance, target.contents, legacy)


def evaluated_keys(validator: Any, instance: Any, schema: Any, legacy: bool = False) -> set[str]:
    """The keys of `instance` that some keyword of `schema` evaluates (those `unevaluatedProperties` skips)."""
    if validator.is_type(schema, "boolean"):
        return set()
    keys: set[str] = set()
    resolver = validator._resolver
    if (ref := schema.get("$ref")) is not None:
        keys |= _follow(validator, resolver.lookup(ref), instance, legacy)
    if legacy and "$recursiveRef" in schema:
        keys |= _follow(validator, lookup_recursive_ref(resolver), instance, legacy)
    if not legacy and (ref := schema.get("$dynamicRef")) is not None:
        keys |= _follow(validator, resolver.lookup(ref), instance, legacy)
    if legacy:
        for keyword in ("properties", "additionalProperties", "unevaluatedProperties"):
            value = schema.get(keyword)
            if value is True:
                keys.update(instance)
            elif isinstance(value, dict):
                keys.update(k for k in value if k in instance)
    else:
        properties = schema.get("properties")
        if isinstance(properties, dict):
            keys.update(properties.keys() & instance.keys())
        for keyword in ("additionalProperties", "unevaluatedProperties"):
            subschema = schema.get(keyword)
            if subschema is not None:
                keys.update(k for k, v in instance.items() if _valid(validator.descend(v, subschema)))
    for patrn in schema.get("patternProperties", {}):
        keys.update(k for k in instance if _search(patrn, k))
    for key, subschema in schema.get("dependentSchemas", {}).items():
        if key in instance:
            keys |= evaluated_keys(validator, instance, subschema, legacy)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if _valid(validator.descend(instance, subschema)):
                keys |= evaluated_keys(validator, instance, subschema, legacy)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys |= evaluated_keys(validator, instance, schema["if"], legacy)
            if "then" in schema:
                keys |= evaluated_keys(validator, instance, schema["then"], legacy)
        elif "else" in schema:
            keys |= evaluated_keys(validator, instance, schema["else"], legacy)
    return keys


def _unevaluated(legacy: bool) -> Any:
    def unevaluated_properties(validator: Any, allowed: Any, instance: Any,
                               schema: Any) -> Iterator[ValidationError]:
        if not validator.is_type(instance, "object"):
            return
        seen = evaluated_keys(validator, instance, schema, legacy)
        bad = [key for key in instance if key not in seen
               and not _valid(validator.descend(instance[key], allowed, path=key, schema_path=key))]
        if not bad:
            return
        if allowed is False:
            yield ValidationError(f"Unevaluated properties are not allowed ({_extras(sorted(bad))} unexpected)")
        else:
            yield ValidationError("Unevaluated properties are not valid under the given schema "
                                  f"({_extras(bad)} unevaluated and invalid)")

    return unevaluated_properties


def _regex_format(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    compile_untrusted(instance)
    return True


@cache
def re2_validator(cls: type[Validator]) -> type[Validator]:
    """`cls` (a draft's validator class) with its regular expressions on RE2."""
    keywords = cls.VALIDATORS
    replaced: dict[str, Any] = {"pattern": pattern, "patternProperties": pattern_properties,
                                "additionalProperties": additional_properties}
    if "unevaluatedProperties" in keywords:
        replaced["unevaluatedProperties"] = _unevaluated(legacy="$recursiveRef" in keywords)
    checker = FormatChecker(())
    checker.checkers = dict(cls.FORMAT_CHECKER.checkers)
    checker.checks("regex", raises=RegexError)(_regex_format)
    extended: type[Validator] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        cls, {k: v for k, v in replaced.items() if k in keywords}, format_checker=checker)
    return extended


def _pointer(path: list[str]) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path) if path else "(root)"


def pattern_problems(schema: Any) -> list[str]:
    """Every `pattern` and `patternProperties` key of `schema` RE2 cannot compile, as `POINTER: why`.

    The walk goes through every object of the schema but the values of `enum`, `const`, `default` and
    `examples` (instances, not schemas), so a pattern reached only by `$ref` is checked too."""
    problems: list[str] = []
    stack: list[tuple[Any, list[str]]] = [(schema, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, list):
            stack.extend((item, [*path, str(i)]) for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            here = [*path, str(key)]
            if key == "pattern" and isinstance(value, str):
                _try(value, here, problems)
            elif key == "patternProperties" and isinstance(value, dict):
                for patrn in value:
                    _try(str(patrn), [*here, str(patrn)], problems)
            if key not in _DATA_KEYWORDS:
                stack.append((value, here))
    return sorted(problems)


def _try(patrn: str, path: list[str], problems: list[str]) -> None:
    try:
        compile_regex(patrn)
    except RegexError as exc:
        problems.append(f"{_pointer(path)}: pattern {patrn!r} is not supported by RE2 ({exc})")


__all__ = ["evaluated_keys", "pattern_problems", "re2_validator"]
