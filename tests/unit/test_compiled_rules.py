"""What the modules compiled with mypyc (`HOT_PATH` in setup.py) must not do, checked from their source (ast).

A compiled coroutine or generator has no exception state of its own: the exception an `except` or `finally` block
is handling is set on the thread, and a suspension inside the block leaves it there for whatever the loop runs
next, then puts back a stale one when the block ends. Measured with this repository's mypyc on Python 3.11 (ten
tasks at a time, 50 rounds; docs/performance.md, "What compiled code must not do"):

- an `await` in an `except` block: the other tasks see the handled exception as their `sys.exc_info()`, and
  each new exception takes the stale one as its `__context__`: a chain of 266 exceptions, each holding its
  traceback and message, that grows as long as errors come;
- an `await` in a `finally` block: the same, 500;
- a `yield` in either, in a compiled generator: the same (99 for 100 generators);
- an `async with` whose `__aexit__` suspends while an exception goes through it: `TypeError: invalid exception
  object` in the task's wake-up, and the task never finishes.

Interpreted code keeps the state per coroutine and shows none of this. The rules below keep every such
suspension out of compiled code: a handler records what happened and the code after the block does the waiting;
`async with` only over `asyncio.timeout` / `asyncio.timeout_at`, whose exit never suspends.

One more rule: a compiled class whose base is an interpreted class (one of meshbatch's modules outside
HOT_PATH) defines no class attribute but `__slots__`. mypyc makes such an attribute an instance default the
interpreted `__init__` never sets, so the class reads its base's: a 422 of `ProxyError` answered 500 once, and
`DeliveryFailed.default_reason` read `bad_upstream_response`. Those errors live in interpreted modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUSPENDING = (ast.Await, ast.AsyncWith, ast.AsyncFor, ast.Yield, ast.YieldFrom)
SAFE_ASYNC_WITH = {"asyncio.timeout", "asyncio.timeout_at"}
BLOCKS = {"except": "an `except` block", "finally": "a `finally` block"}


def hot_path() -> list[str]:
    """setup.py's HOT_PATH list, read as a literal."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HOT_PATH" for t in node.targets):
            paths: list[str] = ast.literal_eval(node.value)
            return paths
    raise AssertionError("no HOT_PATH list in setup.py")


def _walk_body(nodes: list[ast.stmt], block: str | None) -> Iterator[tuple[ast.AST, str | None]]:
    """Every node under `nodes` with the innermost handling block it sits in (`except`, `finally` or None),
    not entering nested functions, lambdas or classes (they run elsewhere)."""
    for node in nodes:
        yield from _walk(node, block)


def _walk(node: ast.AST, block: str | None) -> Iterator[tuple[ast.AST, str | None]]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
        return
    yield node, block
    if isinstance(node, (ast.Try, ast.TryStar)):
        yield from _walk_body(node.body, block)
        for handler in node.handlers:
            yield from _walk_body(handler.body, "except")
        yield from _walk_body(node.orelse, block)
        yield from _walk_body(node.finalbody, "finally")
        return
    for child in ast.iter_child_nodes(node):
        yield from _walk(child, block)


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def violations(source: str, path: str = "<source>") -> list[str]:
    """Each broken rule in `source`, as `path:line: what`."""
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node, block in _walk_body(function.body, None):
            where = f"{path}:{getattr(node, 'lineno', function.lineno)}: {function.name}"
            if isinstance(node, SUSPENDING) and block is not None:
                found.append(f"{where}: {type(node).__name__.lower()} in {BLOCKS[block]}")
            if isinstance(node, ast.AsyncWith):
                for item in node.items:
                    call = item.context_expr
                    name = _dotted(call.func) if isinstance(call, ast.Call) else _dotted(call)
                    if name not in SAFE_ASYNC_WITH:
                        found.append(f"{where}: `async with {name}` (only {sorted(SAFE_ASYNC_WITH)} never "
                                     "suspend on the way out)")
    return found


def interpreted_bases(source: str, compiled: set[str], path: str = "<source>") -> list[str]:
    """Each class of `source` that derives from a class imported from a meshbatch module not in `compiled` and
    defines class attributes (besides `__slots__`), as `path:line: what`."""
    tree = ast.parse(source)
    imported = {alias.asname or alias.name: node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [_dotted(b) for b in node.bases]
        foreign = [b for b in bases if (imported.get(b) or "").startswith("meshbatch") and imported[b] not in compiled]
        names = [ast.unparse(t) for s in node.body if isinstance(s, (ast.Assign, ast.AnnAssign))
                 for t in (s.targets if isinstance(s, ast.Assign) else [s.target])]
        attributes = [n for n in names if n != "__slots__"]
        if foreign and attributes:
            found.append(f"{path}:{node.lineno}: class {node.name}({', '.join(foreign)}) sets {attributes}")
    return found


def test_the_compiled_modules_never_suspend_while_handling_an_exception() -> None:
    paths = hot_path()
    assert len(paths) > 50
    found = [v for path in paths for v in violations((ROOT / path).read_text(), path)]
    assert found == [], "\n".join(found)


def test_no_compiled_class_sets_class_attributes_over_an_interpreted_base() -> None:
    paths = hot_path()
    compiled = {path.removeprefix("src/").removesuffix(".py").replace("/", ".") for path in paths}
    found = [v for path in paths for v in interpreted_bases((ROOT / path).read_text(), compiled, path)]
    assert found == [], "\n".join(found)


def test_a_class_attribute_over_an_interpreted_base_is_found() -> None:
    source = ("from meshbatch.errors import BadGateway\nfrom meshbatch.http.flow import Flow\n"
              "class A(BadGateway):\n    status, flag = 502, 'X'\n"
              "class B(BadGateway):\n    __slots__ = ()\n"
              "class C(Flow):\n    mode = 1\n"
              "class D(BadGateway):\n    reason: str = 'x'\n")
    found = interpreted_bases(source, {"meshbatch.http.flow"})
    assert [line.split(": ")[1] for line in found] == ["class A(BadGateway) sets ['(status, flag)']",
                                                       "class D(BadGateway) sets ['reason']"]


BROKEN = {
    "await in except": "async def f():\n    try:\n        pass\n    except E:\n        await g()\n",
    "await in finally": "async def f():\n    try:\n        pass\n    finally:\n        await g()\n",
    "await deep in except": "async def f():\n    try:\n        pass\n    except E:\n        if x:\n"
                            "            y = [await g()]\n",
    "yield in except": "def f():\n    try:\n        pass\n    except E:\n        yield 1\n",
    "yield from in finally": "def f():\n    try:\n        pass\n    finally:\n        yield from g()\n",
    "async for in except": "async def f():\n    try:\n        pass\n    except E:\n        async for x in g():\n"
                           "            pass\n",
    "async with a lock": "async def f():\n    async with lock:\n        pass\n",
    "async with a call": "async def f():\n    async with gate():\n        pass\n",
    "a nested try's finally": "async def f():\n    try:\n        pass\n    except E:\n        try:\n"
                              "            pass\n        finally:\n            await g()\n",
}

FINE = {
    "await in try and else": "async def f():\n    try:\n        await g()\n    except E:\n        pass\n"
                             "    else:\n        await h()\n",
    "a flag, then the wait": "async def f():\n    failed = False\n    try:\n        await g()\n    except E:\n"
                             "        failed = True\n    if failed:\n        await h()\n",
    "a timeout": "async def f():\n    async with asyncio.timeout(1):\n        await g()\n",
    "a coroutine defined in a handler": "def f():\n    try:\n        pass\n    except E:\n"
                                        "        async def later():\n            await g()\n",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_rule_is_found(name: str) -> None:
    assert len(violations(BROKEN[name])) == 1, violations(BROKEN[name])


@pytest.mark.parametrize("name", sorted(FINE))
def test_what_is_allowed_is_not_flagged(name: str) -> None:
    assert violations(FINE[name]) == []
