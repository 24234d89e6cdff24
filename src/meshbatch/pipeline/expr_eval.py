"""Compiles a filter expression's syntax tree into closures over one event (a decoded JSON value).

Semantics, chosen so a filter never raises on ordinary data:
- a missing field (or an index out of range, or a path through a non-object) is `null`;
- `==`/`!=` compare JSON values (`true` is not `1`); `<`, `<=`, `>`, `>=` compare two numbers or two strings and
  are false for any other pair (`null > 3` is false);
- `in` tests membership in a list, a key of an object or a substring of a string (false otherwise);
- `and`, `or`, `not` use truthiness (null, false, 0, "", [] and {} are false) and give true or false;
- arithmetic takes numbers only; anything else, or a division by zero, is an `EvalError` for that event;
- `matches(s, "re")` is true when the RE2 pattern matches somewhere in the string `s` (false for a non-string).

The closures nest as deep as the syntax tree, which `expr_parse` bounds (`MAX_DEPTH`), so evaluation can never
hit Python's recursion limit; flat nodes (`and`/`or` chains, arithmetic chains) are evaluated in a loop.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from meshbatch.pipeline.expr_parse import Node, parse
from meshbatch.pipeline.regex import compile_regex

Fn = Callable[[Any], Any]
_MISSING = None


class EvalError(ValueError):
    """The expression cannot be evaluated on this event (e.g. arithmetic on a string)."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if (_number(a) and _number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return op(a, b)
        return False

    return compare


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _member(a: Any, b: Any) -> bool:
    if isinstance(b, list):
        return any(_equal(a, item) for item in b)
    if isinstance(b, dict):
        return isinstance(a, str) and a in b
    if isinstance(b, str):
        return isinstance(a, str) and a in b
    return False


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": _ordered(operator.lt),
    "<=": _ordered(operator.le),
    ">": _ordered(operator.gt),
    ">=": _ordered(operator.ge),
    "in": _member,
    "not in": lambda a, b: not _member(a, b),
}


def _arith(op: str) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if not (_number(a) and _number(b)):
            raise EvalError(f"{op} needs two numbers, got {_kind(a)} and {_kind(b)}")
        if op in ("/", "%") and b == 0:
            raise EvalError("division by zero")
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        return a % b

    return apply


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if _number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _get(parts: tuple[str | int, ...]) -> Fn:
    if len(parts) == 1 and isinstance(parts[0], str):
        key = parts[0]
        return lambda event: event.get(key) if isinstance(event, dict) else _MISSING

    def get(event: Any) -> Any:
        value = event
        for part in parts:
            if isinstance(value, dict) and isinstance(part, str):
                value = value.get(part)
            elif isinstance(value, list) and isinstance(part, int) and -len(value) <= part < len(value):
                value = value[part]
            else:
                return _MISSING
        return value

    return get


def _text(fn: Callable[[str], Any]) -> Callable[[Any], Any]:
    return lambda value: fn(value) if isinstance(value, str) else None


def _length(value: Any) -> Any:
    return len(value) if isinstance(value, str | list | dict) else None


_CALLS: dict[str, Callable[..., Any]] = {
    "len": _length,
    "lower": _text(str.lower),
    "upper": _text(str.upper),
    "startswith": lambda a, b: isinstance(a, str) and isinstance(b, str) and a.startswith(b),
    "endswith": lambda a, b: isinstance(a, str) and isinstance(b, str) and a.endswith(b),
    "contains": lambda a, b: _member(b, a),
}


def _all(items: list[Fn]) -> Fn:
    return lambda event: all(item(event) for item in items)


def _any(items: list[Fn]) -> Fn:
    return lambda event: any(item(event) for item in items)


def _chain(first: Fn, rest: list[tuple[Callable[[Any, Any], Any], Fn]]) -> Fn:
    if len(rest) == 1:
        (op, right), = rest
        return lambda event: op(first(event), right(event))

    def chain(event: Any) -> Any:
        value = first(event)
        for op, operand in rest:
            value = op(value, operand(event))
        return value

    return chain


def _matches(arg: Fn, pattern: str) -> Fn:
    search = compile_regex(pattern).search
    return lambda event: isinstance(value := arg(event), str) and search(value) is not None


def compile_node(node: Node) -> Fn:
    kind = node[0]
    if kind == "lit":
        value = node[1]
        return lambda event: value
    if kind == "path":
        return _get(node[1])
    if kind == "list":
        items = [compile_node(n) for n in node[1]]
        return lambda event: [item(event) for item in items]
    if kind == "not":
        inner = compile_node(node[1])
        return lambda event: not inner(event)
    if kind == "neg":
        inner = compile_node(node[1])
        sub = _arith("-")
        return lambda event: sub(0, inner(event))
    if kind in ("and", "or"):
        operands = [compile_node(n) for n in node[1]]
        return _all(operands) if kind == "and" else _any(operands)
    if kind == "cmp":
        op = _COMPARE[node[1]]
        left, right = compile_node(node[2]), compile_node(node[3])
        return lambda event: op(left(event), right(event))
    if kind == "arith":
        return _chain(compile_node(node[1]), [(_arith(op), compile_node(n)) for op, n in node[2]])
    if kind == "matches":
        return _matches(compile_node(node[1]), node[2])
    if kind == "call":
        name = node[1]
        args = [compile_node(n) for n in node[2]]
        if name == "exists":
            return _exists(node[2][0])
        fn = _CALLS[name]
        if len(args) == 1:
            only = args[0]
            return lambda event: fn(only(event))
        return lambda event: fn(*[a(event) for a in args])
    raise ValueError(f"unknown node {kind!r}")  # pragma: no cover - the parser makes no other kinds


def _exists(arg: Node) -> Fn:
    if arg[0] != "path":
        return lambda event: True
    parts: tuple[str | int, ...] = arg[1]

    def exists(event: Any) -> bool:
        value = event
        for part in parts:
            found = (isinstance(value, dict) and isinstance(part, str) and part in value) or (
                isinstance(value, list) and isinstance(part, int) and -len(value) <= part < len(value))
            if not found:
                return False
            value = value[part]
        return True

    return exists


def compile_expr(text: str) -> Callable[[Any], bool]:
    """A predicate over one event. Raises ExprError (with a column) for a bad expression."""
    fn = compile_node(parse(text))

    def predicate(event: Any) -> bool:
        try:
            return bool(fn(event))
        except EvalError:
            raise
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise EvalError(str(exc)) from None

    return predicate


__all__ = ["EvalError", "compile_expr"]
