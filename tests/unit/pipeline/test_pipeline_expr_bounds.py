"""What `meshbatch check` accepts in a filter, `run` can evaluate: the syntax tree is bounded in depth and nodes,
chains are flat, evaluation never meets Python's recursion limit; `matches()` uses RE2."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from meshbatch.config import ConfigError
from meshbatch.config import parse as parse_config
from meshbatch.pipeline.expr_eval import compile_expr
from meshbatch.pipeline.expr_parse import MAX_DEPTH, MAX_NODES, ExprError, measure, parse


def test_a_two_thousand_term_chain_is_refused_at_check() -> None:
    text = "+".join(["a"] * 2000) + " > 0"  # 3999 characters: within the length limit
    with pytest.raises(ExprError, match=f"terms and operators \\(limit {MAX_NODES}\\)"):
        parse(text)
    config = ("listeners:\n  - name: l\n    listen: 127.0.0.1:0\n    routes:\n      - name: e\n        pipeline:\n"
              f"          - decode:\n          - filter: '{text}'\n        ingest: {{}}\n")
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert [str(p).split(": column")[0] for p in info.value.problems] == [
        "listeners[0].routes[0].pipeline[1].filter.expr"]


@pytest.mark.parametrize("op", ["or", "and", "+", "-", "*", "%"])
def test_long_chains_are_flat_and_evaluate(op: str) -> None:
    text = f" {op} ".join(["n"] * 300) + (" == 1" if op in "+-*%" else "")
    depth, count = measure(parse(text))
    assert depth <= 3 and count <= 303
    compile_expr(text)({"n": 1})


def at_stack_depth(frames: int, fn: Callable[[], Any]) -> Any:
    """Call `fn` with `frames` Python frames already on the stack (as deep handler stacks have)."""
    if frames <= 0:
        return fn()
    return at_stack_depth(frames - 1, fn)


def nested(kind: str, levels: int) -> str:
    if kind == "paren":
        return "(" * levels + "n" + ")" * levels + " == 1"
    if kind == "not":
        return "not " * levels + "n"
    if kind == "neg":
        return "-" * levels + "n == 1"
    if kind == "call":
        return "len(" * levels + "n" + ")" * levels + " == null"
    if kind == "list":
        return "[" * levels + "n" + "]" * levels + " != 1"
    return "".join("(1 + 2 * " for _ in range(levels)) + "n" + ")" * levels + " > 0"  # 2 tree levels per paren


@pytest.mark.parametrize("kind", ["paren", "not", "neg", "call", "list", "mixed"])
def test_the_deepest_accepted_expression_evaluates_even_on_a_deep_stack(kind: str) -> None:
    accepted = None
    for levels in range(1, 200):
        try:
            parse(nested(kind, levels))
        except ExprError as exc:
            assert "levels deep" in str(exc) or "nested more than" in str(exc)
            break
        accepted = levels
    assert accepted is not None and accepted <= MAX_DEPTH
    predicate = compile_expr(nested(kind, accepted))
    room = sys.getrecursionlimit() - 300  # what is left for the predicate: its tree is at most MAX_DEPTH deep
    at_stack_depth(room - len_stack(), lambda: predicate({"n": 1}))


def len_stack() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return depth


def test_a_tree_deeper_than_the_bound_is_refused_though_its_nesting_is_not() -> None:
    with pytest.raises(ExprError, match="levels deep"):
        parse(nested("mixed", 30))  # 30 parentheses (under MAX_DEPTH) but twice as many tree levels


def test_a_list_of_literals_is_one_node() -> None:
    text = "site in [" + ", ".join(f'"s{i}"' for i in range(500)) + "]"
    assert measure(parse(text))[1] == 3
    assert compile_expr(text)({"site": "s499"}) is True


def test_matches_uses_re2() -> None:
    predicate = compile_expr('matches(name, "^(a+)+$")')
    start = time.perf_counter()
    assert predicate({"name": "a" * 5000 + "!"}) is False
    assert time.perf_counter() - start < 0.2
    assert predicate({"name": "aaa"}) is True
    assert predicate({"name": 5}) is False
    assert compile_expr('matches(device, "^sensor-[0-9]+$") and n > 0')({"device": "sensor-12", "n": 1}) is True


@pytest.mark.parametrize(("expr", "message"), [
    ('matches(a, "(?=x)")', "matches(): invalid perl operator: (?= (RE2 has no lookahead)"),
    ('matches(a, "(x)\\\\1")', "matches(): invalid escape sequence: \\1"),
    ("matches(a, b)", "matches() takes a string literal as its pattern"),
])
def test_matches_refuses_what_re2_cannot_run(expr: str, message: str) -> None:
    with pytest.raises(ExprError) as info:
        parse(expr)
    assert message in str(info.value) and info.value.column == 1
