"""The structure of src/meshbatch, checked from its source (ast, nothing imported):

(a) no module imports a package above its own level in the layer table of docs/architecture.md ("Packages,
    lowest first"; that table is the one place the order is written, and this test reads it);
(b) no import cycle between modules;
(c) no file over MAX_LINES lines.

Which imports count. For (a): every import of a meshbatch module, wherever it is written: at the top, under
`if TYPE_CHECKING:` (a type names what the module depends on just as much) and inside a function (a lazy import
delays the dependency, it does not remove it). For (b): the imports at module level, `if TYPE_CHECKING:` ones
included: two modules that each need the other to be read are one tangle, whether or not the guard keeps the
interpreter from tripping over it; an import inside a function does not count (it is how a module that is
imported rarely, such as a check, reaches what it needs). An import names the module it loads:
`from meshbatch.x import y` is `meshbatch.x.y` when that is a module, else `meshbatch.x`; the package `__init__`
the interpreter loads on the way is not counted (each `__init__.py` is a module of its own, checked like the
others).

Exceptions: none beyond KNOWN. The package root (`meshbatch/__init__.py`, only the version) is level 0.

KNOWN lists the violations of today, each with its reason. The test fails when a violation appears that is not
in the list, and when a listed one is gone: remove it from the list, which only ever shrinks.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "meshbatch"
TABLE_DOC = ROOT / "docs" / "architecture.md"
TABLE_HEADING = "## Packages, lowest first"
MAX_LINES = 400

# Today's violations, each with why it is there. Keys: "layer: SOURCE -> TARGET", "unplaced: MODULE",
# "cycle: MODULE, MODULE, ..." (the modules of one cycle, sorted), "size: PATH".
KNOWN: dict[str, str] = {}


# -- the layer table ------------------------------------------------------------------------------------------


def layer_table(text: str | None = None) -> dict[str, int]:
    """`docs/architecture.md`'s table as {dotted module prefix: level}: `core/` is the package meshbatch.core,
    `telemetry/metrics` the module meshbatch.telemetry.metrics (the longest prefix of a module decides)."""
    text = TABLE_DOC.read_text() if text is None else text
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    table: dict[str, int] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].isdigit():
            continue
        for name in re.findall(r"`([^`]+)`", cells[1]):
            table["meshbatch." + name.strip("/").replace("/", ".")] = int(cells[0])
    assert table, f"no layer table under {TABLE_HEADING!r} in {TABLE_DOC}"
    return table


def level_of(module: str, table: dict[str, int]) -> int | None:
    if module == "meshbatch":  # the package root holds only the version
        return 0
    found = [(len(prefix), level) for prefix, level in table.items()
             if module == prefix or module.startswith(prefix + ".")]
    return max(found)[1] if found else None


def show_table(table: dict[str, int]) -> str:
    rows: dict[int, list[str]] = {}
    for prefix, level in table.items():
        rows.setdefault(level, []).append(prefix.removeprefix("meshbatch."))
    return "\n".join(f"  {level:>2}  {', '.join(names)}" for level, names in sorted(rows.items()))


# -- modules and their imports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    module_level: bool  # not inside a function (under `if TYPE_CHECKING:` or not)
    type_checking: bool  # under `if TYPE_CHECKING:`


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(body: list[ast.stmt], top: bool = True,
                typing: bool = False) -> Iterator[tuple[ast.stmt, bool, bool]]:
    """Every statement, with whether it is at module level and whether it is under `if TYPE_CHECKING:`."""
    for node in body:
        yield node, top, typing
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(node.body, False, typing)
        elif isinstance(node, ast.If):
            yield from _statements(node.body, top, typing or _is_type_checking(node.test))
            yield from _statements(node.orelse, top, typing)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, []):
                    if isinstance(child, ast.ExceptHandler | ast.match_case):
                        yield from _statements(child.body, top, typing)
                    elif isinstance(child, ast.stmt):
                        yield from _statements([child], top, typing)


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    for node, top, typing in _statements(tree.body):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target.startswith("meshbatch") and target in known and target != name:
                yield Import(name, target, node.lineno, top, typing)


@functools.cache
def all_imports(root: Path = PACKAGE) -> list[Import]:
    known = modules(root)
    return [imp for name, path in known.items() for imp in imports(name, path, known)]


# -- the three rules --------------------------------------------------------------------------------------------


def layer_violations(found: list[Import], table: dict[str, int], root: Path = PACKAGE) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in modules(root):
        if level_of(name, table) is None:
            out[f"unplaced: {name}"] = "no row of the layer table names it"
    for imp in found:
        mine, theirs = level_of(imp.source, table), level_of(imp.target, table)
        if mine is not None and theirs is not None and theirs > mine:
            out.setdefault(f"layer: {imp.source} -> {imp.target}",
                           f"level {mine} imports level {theirs} at line {imp.line}"
                           f"{' (TYPE_CHECKING)' if imp.type_checking else ''}"
                           f"{'' if imp.module_level else ' (in a function)'}")
    return out


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one module (each a set of modules in a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def a_cycle(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One cycle through the first module of a component, as a path that ends where it starts."""
    members, start = set(component), component[0]
    paths = [[start]]
    seen = {start}
    while paths:
        path = paths.pop(0)
        for nxt in sorted(graph[path[-1]] & members):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                paths.append([*path, nxt])
    return component


def cycles(found: list[Import]) -> dict[str, str]:
    graph: dict[str, set[str]] = {}
    for imp in found:
        if imp.module_level:
            graph.setdefault(imp.source, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    return {f"cycle: {', '.join(c)}": " -> ".join(a_cycle(c, graph)) for c in strongly_connected(graph)}


def large_files(root: Path = PACKAGE) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in modules(root).values():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            out[f"size: {path.relative_to(root.parent.parent)}"] = f"{lines} lines"
    return out


# Config models (config/model/) are named after what they configure and are always named through the package
# (`model.Cluster` configures `upstream.cluster.Cluster`), as a proto message and the object built from it are;
# every other class name is defined once.
MODELS = ("config/model/", "config/plain/")  # the models, and their run-time forms (the same names)


def twice_named(root: Path = PACKAGE) -> dict[str, str]:
    where: dict[str, list[str]] = {}
    for path in modules(root).values():
        rel = str(path.relative_to(root))
        if rel.startswith(MODELS):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(rel)
    return {f"name: {name}": ", ".join(files) for name, files in where.items() if len(files) > 1}


def judge(found: dict[str, str], kind: str | tuple[str, ...], hint: str = "") -> None:
    known = {key for key in KNOWN if key.startswith(kind)}
    new = sorted(set(found) - known)
    gone = sorted(known - set(found))
    report = []
    if new:
        report.append("new violations (fix them; list one in KNOWN, with its reason, only if it must stay):")
        report += [f"  {key}   [{found[key]}]" for key in new]
    if gone:
        report.append("fixed, so remove from KNOWN (the list only shrinks):")
        report += [f"  {key}" for key in gone]
    assert not report, "\n".join([*report, hint])


def test_no_module_imports_a_package_above_its_level() -> None:
    table = layer_table()
    judge(layer_violations(all_imports(), table), ("layer", "unplaced"),
          f"the layer table ({TABLE_DOC.relative_to(ROOT)}), lowest first:\n{show_table(table)}")


def test_no_import_cycles() -> None:
    judge(cycles(all_imports()), "cycle")


def test_no_file_is_over_the_size_limit() -> None:
    judge(large_files(), "size", f"limit: {MAX_LINES} lines")


def test_every_class_name_is_defined_once() -> None:
    judge(twice_named(), "name", f"(config models, in {' and '.join(MODELS)}, are named after what they configure)")


# -- the checker itself, on a small package made for it ----------------------------------------------------------


TABLE = f"""
{TABLE_HEADING}

| level | package | what |
| --- | --- | --- |
| 0 | `low`, `core/` | the bottom |
| 1 | `mid/`, `top/low_part` | the middle |
| 2 | `top/` | the top |

## Next
"""


def test_the_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    root = tmp_path / "src" / "meshbatch"
    files = {
        "__init__.py": "",
        "low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from meshbatch.mid import thing\n",
        "core/__init__.py": "", "core/a.py": "from meshbatch.core import b\n", "core/b.py": "from . import a\n",
        "mid/__init__.py": "", "mid/thing.py": "def f():\n    from meshbatch.top import x\n",
        "top/__init__.py": "", "top/x.py": "import meshbatch.low\n",
        "top/low_part.py": "from meshbatch.mid import thing\n",
        "stray.py": "x = 1\n" * (MAX_LINES + 1),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    table = layer_table(TABLE)
    assert table == {"meshbatch.low": 0, "meshbatch.core": 0, "meshbatch.mid": 1, "meshbatch.top.low_part": 1,
                     "meshbatch.top": 2}
    found = all_imports(root)
    assert set(layer_violations(found, table, root)) == {
        "layer: meshbatch.low -> meshbatch.mid.thing",  # under TYPE_CHECKING
        "layer: meshbatch.mid.thing -> meshbatch.top.x",  # in a function
        "unplaced: meshbatch.stray",
    }
    assert cycles(found) == {"cycle: meshbatch.core.a, meshbatch.core.b":
                             "meshbatch.core.a -> meshbatch.core.b -> meshbatch.core.a"}
    assert set(large_files(root)) == {"size: src/meshbatch/stray.py"}


def test_tarjan_finds_every_cycle_and_nothing_else() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}, "g": set()}
    assert sorted(strongly_connected(graph)) == [["a", "b", "c"], ["d", "e"]]
    assert a_cycle(["a", "b", "c"], graph) == ["a", "b", "c", "a"]
