"""Where a plain proxy's resident memory goes, part by part (docs/performance.md, "Memory").

    .venv/bin/python -m bench.memory_parts                                   # the pure build
    PYTHONPATH=.venv/compiled .venv/bin/python -m bench.memory_parts         # the compiled build
    .venv/bin/python -m bench.memory_parts --modules LIST --without msgspec,meshbatch.config.plain

Without options: VmRSS after each import in the order `meshbatch run` imports them (each line what that import
added; a module two parts need counts in the first). With `--modules FILE` (the module names a run printed with
`meshbatch run --print-modules`, one per line or space-separated): VmRSS after importing every one of them, and
with `--without A,B`, after importing them all but A and B (and their submodules), each replaced by an empty
stand-in whose names are stand-ins too, so that the modules importing them still load. That is a projection of a
process that never imports A and B (their stand-ins hold nothing), not a run of one: it says what not importing
a library would give back before anyone rewrites what uses it.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# What `meshbatch run` imports, in its order: the config reaches it validated (by a child process that imports
# pydantic, the models and PyYAML: runtime/validation.py), as the plain run-time classes.
STEPS = ("asyncio", "uvloop", "msgspec", "meshbatch.config.plain", "meshbatch.cli", "meshbatch.runtime.app")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _StandIn:
    """Anything a stand-in module is asked for: callable, subscriptable, a base class, a decorator."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        return _StandIn()

    def __class_getitem__(cls, item: Any) -> Any:
        return cls

    def __or__(self, other: Any) -> Any:
        return self

    __ror__ = __or__


class _Without(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def blocks(self, name: str) -> bool:
        return any(name == n or name.startswith(n + ".") for n in self.names)

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True) if self.blocks(fullname) else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = lambda name: type(name, (_StandIn,), {}) if name[:1].isupper() else _StandIn()  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def steps() -> None:
    before = rss_mb()
    print(f"{before:6.1f} MB  the interpreter")
    for name in STEPS:
        importlib.import_module(name)
        now = rss_mb()
        print(f"{now:6.1f} MB  +{now - before:4.1f}  {name}")
        before = now


def replay(names: Sequence[str], without: Sequence[str]) -> None:
    finder = _Without(without)
    if without:
        sys.meta_path.insert(0, finder)
    failed = []
    for name in names:
        if finder.blocks(name) or name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # a C extension's internal module, a stand-in not enough for one: said below
            failed.append(name)
    gc.collect()
    print(f"{rss_mb():6.1f} MB  {len(sys.modules)} modules imported; without: {', '.join(without) or 'nothing'}")
    if failed:
        print(f"         not imported: {' '.join(failed)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--modules", type=Path, help="the module names of a run (meshbatch run --print-modules)")
    parser.add_argument("--without", default="", help="comma-separated packages to leave out (with --modules)")
    args = parser.parse_args(argv)
    if args.modules is None:
        steps()
    else:
        text = args.modules.read_text().replace("meshbatch: modules ", " ")
        replay(text.split(), [n for n in args.without.split(",") if n])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
