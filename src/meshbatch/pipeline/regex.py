"""Regular expressions for the pipeline, on RE2: time linear in the input, whatever the pattern.

Python's `re` backtracks: `^(a+)+$` against 26 `a`s and a `!` takes seconds, and the input is the caller's.
RE2 (an automaton, no backtracking) answers in microseconds, at the price of a smaller syntax: no
backreferences (`\\1`), no lookaround (`(?=...)`, `(?<!...)`), `\\z` rather than `\\Z`. A pattern RE2 cannot
compile is refused when the config loads (`meshbatch check`), never run by another engine behind the scenes.

Patterns from the config are compiled once and cached (the config is bounded); a pattern that arrives in an
event (the JSON Schema `regex` format) is compiled on its own, never cached, within RE2's memory budget.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TypeAlias

import re2


def _options(max_mem: int) -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # errors become exceptions with the reason, not lines on stderr
    options.max_mem = max_mem  # RE2's cap on one program's memory: a huge pattern fails to compile
    return options


_CONFIG = _options(8 << 20)
_UNTRUSTED = _options(1 << 20)
Regex: TypeAlias = "re2._Regexp[str]"  # (generic in the stubs only)


class RegexError(ValueError):
    """A pattern RE2 cannot compile; the message says why (e.g. `invalid perl operator: (?=`)."""


_HINTS = (  # what RE2 says -> what it means for a pattern written for Python or ECMA-262
    ("invalid perl operator: (?=", "RE2 has no lookahead"),
    ("invalid perl operator: (?!", "RE2 has no lookahead"),
    ("invalid perl operator: (?<", "RE2 has no lookbehind"),
    ("invalid perl operator: (?>", "RE2 has no atomic groups"),
    ("invalid escape sequence: \\Z", "write \\z for the end of the text"),
    ("bad repetition operator: ++", "RE2 has no possessive quantifiers"),
    ("bad repetition operator: *+", "RE2 has no possessive quantifiers"),
)


def _message(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else exc
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if "invalid escape sequence: \\" in text and text[-1:].isdigit():
        return f"{text} (RE2 has no backreferences)"
    hint = next((h for found, h in _HINTS if found in text), None)
    return f"{text} ({hint})" if hint else text


def compile_untrusted(pattern: str) -> Regex:
    """Compile a pattern that arrived with a request (not through `re2.compile`, whose cache would keep it);
    raises RegexError."""
    try:
        return re2._Regexp(pattern, _UNTRUSTED)
    except re2.error as exc:
        raise RegexError(_message(exc)) from None


@lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> Regex:
    """Compile (once) a pattern from the config; raises RegexError."""
    try:
        return re2._Regexp(pattern, _CONFIG)
    except re2.error as exc:
        raise RegexError(_message(exc)) from None


__all__ = ["Regex", "RegexError", "compile_regex", "compile_untrusted"]
