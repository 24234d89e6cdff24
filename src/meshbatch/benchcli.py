"""`meshbatch bench ...`: finds the repository's `bench/` directory and hands the command line to it.

The harness and its scenarios live in `bench/` beside `src/` (plain modules, with results under
`bench/results/`), not in the installed package: they start nginx, haproxy and wrk, which a package user does
not need. `bench/` is found at `$MESHBATCH_BENCH_DIR`, by walking up from this package, or from the current
directory (meshbatch.harness).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

from meshbatch import harness

ENV_VAR = "MESHBATCH_BENCH_DIR"
PACKAGE = "meshbatch_bench"  # the name bench/ is loaded under, so its modules never clash with others
MARKER = harness.MARKER


class BenchNotFoundError(harness.HarnessNotFoundError):
    pass


def find_bench_dir() -> Path:
    return harness.find("bench", ENV_VAR, BenchNotFoundError)


def load_bench(path: Path) -> ModuleType:
    """Import `path` as the package PACKAGE (its modules use relative imports)."""
    return harness.load(path, PACKAGE, BenchNotFoundError)


def main(argv: list[str]) -> int:
    """Run `meshbatch bench ARGV...`; returns the exit code."""
    return harness.run("bench", ENV_VAR, PACKAGE, argv, BenchNotFoundError)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
