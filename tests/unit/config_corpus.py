"""Every config written in the repository, for tests that must hold for all of them: the YAML files (examples/,
deploy/, the YAML blocks of the docs and README), the YAML texts and the config dicts written in the tests, the
benchmarks, the testbed, the chaos suite and the demo. A text or dict that names variables, or that the models
refuse, is left out (a fragment, or a config written to be refused)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from meshbatch.config.model import Config
from meshbatch.config.source import SourceError, parse_yaml

ROOT = Path(__file__).resolve().parents[2]
PYTHON_FOLDERS = ("tests", "bench", "testbed", "chaos", "src/meshbatch/demo")
_YAML_BLOCK = re.compile(r"```ya?ml\n(.*?)```", re.S)


def _yaml_documents(text: str) -> Iterator[Any]:
    """The documents of `text`, read with the config loader's bounds (an alias bomb is no example)."""
    for part in re.split(r"(?m)^---\s*$", text):
        try:
            yield parse_yaml(part)
        except SourceError:
            continue


class _Unknown(Exception):
    """A part of a dict written in Python that names a variable."""


_ADDRESS_KEYS = {"listen", "address"}


def _literal(node: ast.expr, key: object = None) -> Any:
    """A dict written in Python as data; an f-string's fields read as 1 (`f"127.0.0.1:{port}"`: port 1), a
    variable as an address where one is expected (`"listen": address`), else _Unknown."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                raise _Unknown
            name = _literal(k)
            out[name] = _literal(v, name)
        return out
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(item, key) for item in node.elts]
    if isinstance(node, ast.JoinedStr):
        return "".join(str(part.value) if isinstance(part, ast.Constant) else "1" for part in node.values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    if key in _ADDRESS_KEYS or key == "endpoints":
        return "127.0.0.1:1"
    raise _Unknown


def _configs_in(data: Any) -> Iterator[dict[str, Any]]:
    """A config mapping, or the configs a Kubernetes ConfigMap's data holds."""
    if not isinstance(data, dict):
        return
    if "listeners" in data:
        yield data
    for value in (data.get("data") or {}).values() if isinstance(data.get("data"), dict) else ():
        if isinstance(value, str) and "listeners:" in value:
            for doc in _yaml_documents(value):
                yield from _configs_in(doc)


def _from_files() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted([*ROOT.glob("examples/**/*.y*ml"), *ROOT.glob("deploy/**/*.y*ml")]):
        for doc in _yaml_documents(path.read_text()):
            for config in _configs_in(doc):
                yield str(path.relative_to(ROOT)), config
    for path in sorted([ROOT / "README.md", *ROOT.glob("docs/*.md")]):
        for block in _YAML_BLOCK.findall(path.read_text()):
            for doc in _yaml_documents(block):
                for config in _configs_in(doc):
                    yield str(path.relative_to(ROOT)), config


def _from_python() -> Iterator[tuple[str, dict[str, Any]]]:
    for folder in PYTHON_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            try:
                tree = ast.parse(path.read_text())
            except SyntaxError:
                continue
            where = str(path.relative_to(ROOT))
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and "listeners:" in node.value:
                    for doc in _yaml_documents(node.value):
                        for config in _configs_in(doc):
                            yield f"{where}:{node.lineno}", config
                elif isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "listeners"
                                                        for k in node.keys):
                    try:
                        data = _literal(node)
                    except (_Unknown, TypeError):
                        continue
                    yield f"{where}:{node.lineno}", data


@cache
def corpus() -> list[tuple[str, Config]]:
    """(where it is written, the validated config) for each distinct valid config of the repository."""
    seen: set[str] = set()
    out: list[tuple[str, Config]] = []
    for where, data in [*_from_files(), *_from_python()]:
        key = repr(data)[:100_000]
        if key in seen:
            continue
        seen.add(key)
        try:
            config = Config.model_validate(data)
        except (ValidationError, ValueError, TypeError):
            continue
        out.append((where, config))
    return out
