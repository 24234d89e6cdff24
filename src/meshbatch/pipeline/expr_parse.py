"""The filter expression language: tokens and a recursive-descent parser into a small syntax tree.

    temperature > 30 and site == "eu"
    not (status in [500, 502, 503]) or exists(retry)
    reading.unit == 'C' and len(tags) > 0 and startswith(lower(site), "eu")
    matches(device, "^sensor-[0-9]+$")

Grammar (lowest precedence first):
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := sum (OP sum)?          OP: == != < <= > >= in "not in"
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/" | "%") unary)*
    unary   := "-" unary | primary
    primary := NUMBER | STRING | true | false | null | "(" or ")" | "[" [or ("," or)*] "]"
             | NAME "(" [or ("," or)*] ")" | path
    path    := NAME ("." NAME | "[" (STRING | NUMBER) "]")*
Nothing here runs code: the tree is compiled into closures over a fixed set of operations (`expr_eval`).

What `meshbatch check` accepts, `run` can evaluate. The evaluator recurses once per level of the TREE, so the
tree is what is bounded (depth and node count), not only the parser's recursion: chains of one operator
(`a or b or c ...`, `a + b - c ...`) become one node with a list of operands instead of a left-leaning tower as
deep as the chain is long; a list of literals becomes one literal. `matches` takes a literal pattern, compiled
once here with RE2 (linear time, no backtracking), so a bad pattern is a config error with its column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from meshbatch.pipeline.regex import RegexError, compile_regex

MAX_LENGTH = 4096
MAX_DEPTH = 48  # levels of the syntax tree (and of the parser's nesting)
MAX_NODES = 1000  # nodes of the syntax tree: bounds the work per event
FUNCTIONS = {"exists": 1, "len": 1, "lower": 1, "upper": 1, "startswith": 2, "endswith": 2, "contains": 2,
             "matches": 2}
KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}


class ExprError(ValueError):
    """A syntax error, with the 1-based column where it was found."""

    def __init__(self, message: str, column: int) -> None:
        self.column = column
        super().__init__(f"column {column}: {message}")


@dataclass(frozen=True, slots=True)
class ExprToken:
    kind: str  # num str name op end
    value: Any
    column: int


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.|\+|-|\*|/|%)
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "/": "/"}


def _unquote(text: str, column: int) -> str:
    out: list[str] = []
    i, body = 0, text[1:-1]
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2:i + 6]):
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        else:
            raise ExprError(f"unknown escape \\{nxt} in a string", column + i + 1)
    return "".join(out)


def tokenize(text: str) -> list[ExprToken]:
    if len(text) > MAX_LENGTH:
        raise ExprError(f"the expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    tokens: list[ExprToken] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            what = "an unterminated string" if text[pos] in "\"'" else f"unexpected character {text[pos]!r}"
            raise ExprError(what, pos + 1)
        kind = match.lastgroup
        raw = match.group()
        if kind == "num":
            number: float | int = float(raw) if any(c in raw for c in ".eE") else int(raw)
            if len(raw) > 40:
                raise ExprError("number too long", pos + 1)
            tokens.append(ExprToken("num", number, pos + 1))
        elif kind == "str":
            tokens.append(ExprToken("str", _unquote(raw, pos + 1), pos + 1))
        elif kind == "name":
            tokens.append(ExprToken("kw" if raw in KEYWORDS else "name", raw, pos + 1))
        elif kind == "op":
            tokens.append(ExprToken("op", raw, pos + 1))
        pos = match.end()
    tokens.append(ExprToken("end", None, len(text) + 1))
    return tokens


# Syntax tree: tuples, (kind, ...). ("lit", value) ("path", (parts...)) ("list", [nodes]) ("call", name, [nodes])
# ("matches", node, pattern) ("not", node) ("neg", node) ("and", [nodes]) ("or", [nodes]) ("cmp", op, a, b)
# ("arith", first, ((op, node), ...)): `and`/`or` and chains of + - or * / % are flat, evaluated in a loop.
Node = tuple[Any, ...]
_COMPARE = {"==", "!=", "<", "<=", ">", ">="}


class _Parser:
    def __init__(self, tokens: list[ExprToken]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    @property
    def tok(self) -> ExprToken:
        return self.tokens[self.pos]

    def take(self) -> ExprToken:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def accept(self, kind: str, value: str) -> bool:
        tok = self.tok
        if tok.kind == kind and tok.value == value:
            self.pos += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept("op", value):
            raise ExprError(f"expected {value!r}, found {_describe(self.tok)}", self.tok.column)

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"nested more than {MAX_DEPTH} levels deep", self.tok.column)

    def parse(self) -> Node:
        node = self.or_()
        if self.tok.kind != "end":
            raise ExprError(f"unexpected {_describe(self.tok)}", self.tok.column)
        return node

    def or_(self) -> Node:
        first = self.and_()
        if not (self.tok.kind == "kw" and self.tok.value == "or"):
            return first
        items = [first]
        while self.accept("kw", "or"):
            items.append(self.and_())
        return ("or", items)

    def and_(self) -> Node:
        first = self.not_()
        if not (self.tok.kind == "kw" and self.tok.value == "and"):
            return first
        items = [first]
        while self.accept("kw", "and"):
            items.append(self.not_())
        return ("and", items)

    def not_(self) -> Node:
        if self.accept("kw", "not"):
            self.nest()
            node = ("not", self.not_())
            self.depth -= 1
            return node
        return self.compare()

    def compare(self) -> Node:
        left = self.sum()
        tok = self.tok
        if tok.kind == "op" and tok.value in _COMPARE:
            self.pos += 1
            return ("cmp", tok.value, left, self.sum())
        if self.accept("kw", "in"):
            return ("cmp", "in", left, self.sum())
        if tok.kind == "kw" and tok.value == "not" and self.tokens[self.pos + 1].value == "in":
            self.pos += 2
            return ("cmp", "not in", left, self.sum())
        return left

    def sum(self) -> Node:
        first = self.product()
        rest: list[tuple[str, Node]] = []
        while self.tok.kind == "op" and self.tok.value in ("+", "-"):
            rest.append((self.take().value, self.product()))
        return ("arith", first, tuple(rest)) if rest else first

    def product(self) -> Node:
        first = self.unary()
        rest: list[tuple[str, Node]] = []
        while self.tok.kind == "op" and self.tok.value in ("*", "/", "%"):
            rest.append((self.take().value, self.unary()))
        return ("arith", first, tuple(rest)) if rest else first

    def unary(self) -> Node:
        if self.accept("op", "-"):
            self.nest()
            node = ("neg", self.unary())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind in ("num", "str"):
            return ("lit", tok.value)
        if tok.kind == "kw" and tok.value in ("true", "false", "null"):
            return ("lit", {"true": True, "false": False, "null": None}[tok.value])
        if tok.kind == "op" and tok.value in ("(", "["):
            self.nest()
            if tok.value == "(":
                node = self.or_()
                self.expect(")")
            else:
                items = self.items("]")
                # A list of literals is one literal: `site in ["a", "b", ...]` costs one node, whatever its length.
                node = (("lit", [n[1] for n in items]) if all(n[0] == "lit" for n in items) else ("list", items))
            self.depth -= 1
            return node
        if tok.kind == "name":
            if self.accept("op", "("):
                return self.call(tok)
            return self.path(tok)
        raise ExprError(f"expected a value, found {_describe(tok)}", tok.column)

    def items(self, close: str) -> list[Node]:
        out: list[Node] = []
        if self.accept("op", close):
            return out
        while True:
            out.append(self.or_())
            if self.accept("op", close):
                return out
            self.expect(",")

    def call(self, name: ExprToken) -> Node:
        arity = FUNCTIONS.get(name.value)
        if arity is None:
            raise ExprError(f"unknown function {name.value!r}; known: {', '.join(sorted(FUNCTIONS))}",
                            name.column)
        self.nest()
        args = self.items(")")
        self.depth -= 1
        if len(args) != arity:
            raise ExprError(f"{name.value}() takes {arity} argument(s), got {len(args)}", name.column)
        if name.value == "matches":
            pattern = args[1]
            if pattern[0] != "lit" or not isinstance(pattern[1], str):
                raise ExprError("matches() takes a string literal as its pattern", name.column)
            try:
                compile_regex(pattern[1])
            except RegexError as exc:
                raise ExprError(f"matches(): {exc}", name.column) from None
            return ("matches", args[0], pattern[1])
        return ("call", name.value, args)

    def path(self, first: ExprToken) -> Node:
        parts: list[str | int] = [first.value]
        while True:
            if self.accept("op", "."):
                tok = self.take()
                if tok.kind not in ("name", "kw"):
                    raise ExprError(f"expected a field name after '.', found {_describe(tok)}", tok.column)
                parts.append(tok.value)
            elif self.accept("op", "["):
                negative = self.accept("op", "-")
                tok = self.take()
                if tok.kind not in ("str", "num") or isinstance(tok.value, float) or (negative and tok.kind == "str"):
                    raise ExprError("an index is a string or a whole number", tok.column)
                parts.append(-tok.value if negative else tok.value)
                self.expect("]")
            else:
                return ("path", tuple(parts))


def _describe(tok: ExprToken) -> str:
    if tok.kind == "end":
        return "the end of the expression"
    if tok.kind == "str":
        return f"string {tok.value!r}"
    return repr(str(tok.value))


def children(node: Node) -> list[Node]:
    kind = node[0]
    if kind in ("lit", "path"):
        return []
    if kind in ("list", "and", "or"):
        return list(node[1])
    if kind == "call":
        return list(node[2])
    if kind in ("not", "neg", "matches"):
        return [node[1]]
    if kind == "cmp":
        return [node[2], node[3]]
    return [node[1], *(operand for _, operand in node[2])]  # arith


def measure(node: Node) -> tuple[int, int]:
    """(depth, node count) of a tree, without recursion (the tree may come from anywhere)."""
    depth = count = 0
    stack = [(node, 1)]
    while stack:
        current, level = stack.pop()
        count += 1
        depth = max(depth, level)
        stack.extend((child, level + 1) for child in children(current))
    return depth, count


def parse(text: str) -> Node:
    """The syntax tree of `text`, or ExprError with the column of the first problem."""
    if not text.strip():
        raise ExprError("the expression is empty", 1)
    tree = _Parser(tokenize(text)).parse()
    depth, count = measure(tree)
    if depth > MAX_DEPTH:
        raise ExprError(f"the expression nests {depth} levels deep (limit {MAX_DEPTH})", 1)
    if count > MAX_NODES:
        raise ExprError(f"the expression has {count} terms and operators (limit {MAX_NODES})", 1)
    return tree


__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_NODES",
    "ExprError",
    "ExprToken",
    "Node",
    "children",
    "measure",
    "parse",
    "tokenize",
]
