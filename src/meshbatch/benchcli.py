"""`meshbatch bench ...`: finds the repository's `bench/` directory and hands the command line to it.

The harness and its scenarios live in `bench/` beside `src/` (plain modules, with results under
`bench/results/`), not in the installed package: they start nginx, haproxy and wrk, which a package user does
not need. `bench/` is found, in order, at `$MESHBATCH_BENCH_DIR`, by walking up from this package (an editable
install from the repository), and by walking up from the current directory.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import meshbatch

ENV_VAR = "MESHBATCH_BENCH_DIR"
PACKAGE = "meshbatch_bench"  # the name bench/ is loaded under, so its modules never clash with others
MARKER = "runner.py"


class BenchNotFoundError(RuntimeError):
    pass


def _walk_up(start: Path) -> Iterator[Path]:
    start = start.resolve()
    yield from (start, *start.parents)


def _is_bench_dir(path: Path) -> bool:
    return (path / "__init__.py").is_file() and (path / MARKER).is_file()


def find_bench_dir() -> Path:
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override).expanduser().resolve()
        if not _is_bench_dir(path):
            raise BenchNotFoundError(f"{ENV_VAR}={override} is not a meshbatch bench directory (no {MARKER})")
        return path
    starts = [Path(meshbatch.__file__).parent, Path.cwd()]
    for start in starts:
        for folder in _walk_up(start):
            if _is_bench_dir(folder / "bench"):
                return folder / "bench"
    raise BenchNotFoundError(
        "cannot find the benchmark harness: run from a meshbatch repository checkout "
        f"(installed with `pip install -e .`), or set {ENV_VAR} to its bench/ directory"
    )


def load_bench(path: Path) -> ModuleType:
    """Import `path` as the package PACKAGE (its modules use relative imports)."""
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None and Path(str(loaded.__file__)).parent == path:
        return loaded
    spec = importlib.util.spec_from_file_location(PACKAGE, path / "__init__.py", submodule_search_locations=[str(path)])
    if spec is None or spec.loader is None:
        raise BenchNotFoundError(f"cannot load {path} as a package")
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)
    return package


def main(argv: list[str]) -> int:
    """Run `meshbatch bench ARGV...`; returns the exit code."""
    try:
        bench_dir = find_bench_dir()
        load_bench(bench_dir)
    except BenchNotFoundError as exc:
        print(f"meshbatch bench: {exc}", file=sys.stderr)
        return 2
    runner = importlib.import_module(f"{PACKAGE}.runner")
    code: int = runner.main(argv, prog="meshbatch bench")
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
