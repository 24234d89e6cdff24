"""`meshbatch chaos ...`: finds the repository's `chaos/` directory and hands the command line to it.

The chaos and soak suite lives in `chaos/` beside `src/` (plain modules, results under `chaos/results/`), as the
benchmarks live in `bench/`: it drives the test suite's upstream and proxy helpers (`tests/support`), which a
package user does not have. `chaos/` is found at `$MESHBATCH_CHAOS_DIR`, by walking up from this package (an
editable install from the repository), or by walking up from the current directory.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import meshbatch

ENV_VAR = "MESHBATCH_CHAOS_DIR"
PACKAGE = "meshbatch_chaos"  # the name chaos/ is loaded under, so its modules never clash with others
MARKER = "runner.py"


class ChaosNotFoundError(RuntimeError):
    pass


def _is_chaos_dir(path: Path) -> bool:
    return (path / "__init__.py").is_file() and (path / MARKER).is_file()


def find_chaos_dir() -> Path:
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override).expanduser().resolve()
        if not _is_chaos_dir(path):
            raise ChaosNotFoundError(f"{ENV_VAR}={override} is not a meshbatch chaos directory (no {MARKER})")
        return path
    for start in (Path(meshbatch.__file__).parent, Path.cwd()):
        for folder in (start.resolve(), *start.resolve().parents):
            if _is_chaos_dir(folder / "chaos"):
                return folder / "chaos"
    raise ChaosNotFoundError("cannot find the chaos suite: run from a meshbatch repository checkout "
                             f"(installed with `pip install -e .`), or set {ENV_VAR} to its chaos/ directory")


def load_chaos(path: Path) -> ModuleType:
    """Import `path` as the package PACKAGE (its modules use relative imports)."""
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None and Path(str(loaded.__file__)).parent == path:
        return loaded
    spec = importlib.util.spec_from_file_location(PACKAGE, path / "__init__.py", submodule_search_locations=[str(path)])
    if spec is None or spec.loader is None:
        raise ChaosNotFoundError(f"cannot load {path} as a package")
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)
    return package


def main(argv: list[str]) -> int:
    """Run `meshbatch chaos ARGV...`; returns the exit code."""
    try:
        load_chaos(find_chaos_dir())
    except ChaosNotFoundError as exc:
        print(f"meshbatch chaos: {exc}", file=sys.stderr)
        return 2
    runner = importlib.import_module(f"{PACKAGE}.runner")
    code: int = runner.main(argv, prog="meshbatch chaos")
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
