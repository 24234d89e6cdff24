"""The filter expression language: tokens and a recursive-descent parser into a small syntax tree.

    temperature > 30 and site == "eu"
    not (status in [500, 502, 503]) or exists(retry)
    reading.unit == 'C' and len(tags) > 0 and startswith(lower(site), "eu")

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
Size and nesting are bounded, so a hostile expression cannot exhaust the stack or the parser's time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_LENGTH = 4096
MAX_DEPTH = 48
FUNCTIONS = {"exists": 1, "len": 1, "lower": 1, "upper": 1, "startswith": 2, "endswith": 2, "contains": 2}
KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}


class ExprError(ValueError):
    """A syntax error, with the 1-based column where it was found."""

    def __init__(self, message: str, column: int) -> None:
        self.column = column
        super().__init__(f"column {column}: {message}")


@dataclass(frozen=True, slots=True)
class Token:
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


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise ExprError(f"the expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    tokens: list[Token] = []
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
            tokens.append(Token("num", number, pos + 1))
        elif kind == "str":
            tokens.append(Token("str", _unquote(raw, pos + 1), pos + 1))
        elif kind == "name":
            tokens.append(Token("kw" if raw in KEYWORDS else "name", raw, pos + 1))
        elif kind == "op":
            tokens.append(Token("op", raw, pos + 1))
        pos = match.end()
    tokens.append(Token("end", None, len(text) + 1))
    return tokens


# Syntax tree: tuples, (kind, ...). ("lit", value) ("path", (parts...)) ("list", [nodes]) ("call", name, [nodes])
# ("not", node) ("neg", node) ("and", a, b) ("or", a, b) ("cmp", op, a, b) ("arith", op, a, b)
Node = tuple[Any, ...]
_COMPARE = {"==", "!=", "<", "<=", ">", ">="}


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
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
        node = self.and_()
        while self.accept("kw", "or"):
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.accept("kw", "and"):
            node = ("and", node, self.not_())
        return node

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
        node = self.product()
        while self.tok.kind == "op" and self.tok.value in ("+", "-"):
            node = ("arith", self.take().value, node, self.product())
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.tok.kind == "op" and self.tok.value in ("*", "/", "%"):
            node = ("arith", self.take().value, node, self.unary())
        return node

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
                node = ("list", self.items("]"))
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

    def call(self, name: Token) -> Node:
        arity = FUNCTIONS.get(name.value)
        if arity is None:
            raise ExprError(f"unknown function {name.value!r}; known: {', '.join(sorted(FUNCTIONS))}",
                            name.column)
        self.nest()
        args = self.items(")")
        self.depth -= 1
        if len(args) != arity:
            raise ExprError(f"{name.value}() takes {arity} argument(s), got {len(args)}", name.column)
        return ("call", name.value, args)

    def path(self, first: Token) -> Node:
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


def _describe(tok: Token) -> str:
    if tok.kind == "end":
        return "the end of the expression"
    if tok.kind == "str":
        return f"string {tok.value!r}"
    return repr(str(tok.value))


def parse(text: str) -> Node:
    """The syntax tree of `text`, or ExprError with the column of the first problem."""
    if not text.strip():
        raise ExprError("the expression is empty", 1)
    return _Parser(tokenize(text)).parse()


__all__ = ["FUNCTIONS", "MAX_DEPTH", "MAX_LENGTH", "ExprError", "Node", "Token", "parse", "tokenize"]
