"""Reading a config file into plain data, with bounds a hostile or broken file cannot get past.

A config is written by an operator, but it may come from a templating pipeline, a shared volume or a careless
edit, and `meshbatch check` is run on files nobody has read yet. So reading it is bounded:

- **size**: at most `MAX_CONFIG_BYTES` are read (a 100 MB file is refused after reading that much, never
  slurped whole);
- **aliases**: YAML anchors and aliases share one node between several places, so a few hundred bytes can
  describe a document of billions of nodes ("billion laughs"). The parser itself shares the node, but everything
  after it (validation, the checks) walks the document as a tree. The composed graph is measured first, each
  shared node counted once per place it appears, and a document that expands beyond `MAX_EXPANDED_NODES` nodes,
  or that refers to itself, is refused before anything walks it;
- **duplicate keys** are an error (the last one silently winning hides mistakes), with both line numbers.

libyaml does the scanning and composing when PyYAML has it (ten times faster than the pure-Python parser); the
results are the same.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

MAX_CONFIG_BYTES = 8 * 1024 * 1024
MAX_EXPANDED_NODES = 1_000_000

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SourceError(Exception):
    """The file cannot be read as a config; `where` is a line/column or "" and `message` says why."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _place(text: str, mark: Any) -> tuple[int, int]:
    """The 0-based line and column of `mark` as the user counts them: a mark past the last line (an unclosed
    quote or bracket found at the end of the stream) is put at the end of the last line that has text."""
    lines = text.splitlines()
    line, column = mark.line, mark.column
    if line >= len(lines) or (column == 0 and not lines[line].strip()):
        line = max((i for i, part in enumerate(lines[:line]) if part.strip()), default=0)
        column = len(lines[line].rstrip()) if lines else 0
    return line, column


# `KEY: value` on a line whose key looks secret: the value is not quoted (credentials inside URLs are redacted
# from every message by meshbatch.config.redact).
_KEY_VALUE = re.compile(r"^(?P<key>\s*(?:-\s+)?[\"']?(?P<name>[\w.-]+)[\"']?\s*:\s+)\S")
_SECRET_NAME = re.compile(r"(?i)(pass(word|wd|phrase)?$|secret|token|credential|creds|^auth|_auth|api_?key|private|"
                          r"dsn|cookie|bearer|^key$|_key$|signing)")


def _unsecret(line: str) -> str:
    match = _KEY_VALUE.match(line)
    if match is None or not _SECRET_NAME.search(match["name"]):
        return line
    return match["key"] + "<redacted>"


def excerpt(text: str, line: int, column: int) -> str:
    """The line `line` (0-based) of `text`, quoted, with a caret under `column`; the value of a key that looks
    secret is not quoted."""
    lines = text.splitlines()
    if not 0 <= line < len(lines):
        return ""
    quoted = _unsecret(lines[line].expandtabs(1).rstrip())
    return f"\n    {quoted}\n    {' ' * min(column, len(quoted))}^"


def expanded_size(root: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> int:
    """The number of nodes of the document once every alias is expanded (each shared node counted once per
    place it appears). Raises SourceError beyond `limit` or on a node that contains itself. Iterative: a deep
    document cannot exhaust the stack, and linear in the number of distinct nodes."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > limit:
                raise SourceError(f"the document expands to more than {limit:,} nodes (YAML aliases repeat "
                                  "shared parts; write them out or share less)", _where(node.start_mark))
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise SourceError("an alias refers to a node that contains it (a recursive document)",
                              _where(node.start_mark))
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise SourceError("an alias refers to a node that contains it (a recursive document)",
                                  _where(child.start_mark))
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


class ConfigLoader(_Base):  # type: ignore[misc]
    """PyYAML's safe loader (libyaml's when available), with duplicate keys refused and aliases bounded."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        expanded_size(node)
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base constructor says so with its mark
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, ConfigLoader.construct_mapping)


def parse_yaml(text: str) -> Any:
    """The data of one YAML document; SourceError with the place for bad YAML, duplicate keys, alias bombs."""
    try:
        return yaml.load(text, Loader=ConfigLoader)
    except (yaml.scanner.ScannerError, yaml.parser.ParserError) as exc:  # syntax: the place, quoted
        mark, message = exc.problem_mark or exc.context_mark, str(exc.problem or exc.context or exc)
        if mark is None:
            raise SourceError(message, "yaml") from None
        if exc.context_mark is not None and mark.line >= len(text.splitlines()):  # the end: where it began
            mark, message = exc.context_mark, f"{message} {exc.context}" if exc.context else message
        line, column = _place(text, mark)
        raise SourceError(message + excerpt(text, line, column),
                          f"line {line + 1}, column {column + 1}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SourceError(str(exc.problem or exc.context or exc), _where(mark) or "yaml") from None
    except yaml.YAMLError as exc:
        raise SourceError(str(exc), "yaml") from None
    except RecursionError:
        raise SourceError("the document is nested too deeply", "yaml") from None


def read_text(path: str | Path, limit: int = MAX_CONFIG_BYTES) -> str:
    """The file's text, read without ever holding more than `limit` + 1 bytes. Raises SourceError (unreadable,
    too large, not UTF-8)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise SourceError(f"{path} is {size:,} bytes; a config may be at most {limit:,} bytes")
            data = handle.read(limit + 1)  # a file that grows (or is not a regular file) is bounded too
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise SourceError(f"{path} is larger than {limit:,} bytes, the most a config may be")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path} is not UTF-8 text (byte {exc.start})") from None


__all__ = ["MAX_CONFIG_BYTES", "MAX_EXPANDED_NODES", "ConfigLoader", "SourceError", "excerpt", "expanded_size",
           "parse_yaml", "read_text"]
