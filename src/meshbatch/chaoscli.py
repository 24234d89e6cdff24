"""`meshbatch chaos ...`: finds the repository's `chaos/` directory and hands the command line to it.

The chaos and soak suite lives in `chaos/` beside `src/` (plain modules, results under `chaos/results/`), as the
benchmarks live in `bench/`: it drives the test suite's upstream and proxy helpers (`tests/support`), which a
package user does not have. `chaos/` is found at `$MESHBATCH_CHAOS_DIR`, by walking up from this package, or
from the current directory (meshbatch.harness).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

from meshbatch import harness

ENV_VAR = "MESHBATCH_CHAOS_DIR"
PACKAGE = "meshbatch_chaos"  # the name chaos/ is loaded under, so its modules never clash with others
MARKER = harness.MARKER


class ChaosNotFoundError(harness.HarnessNotFoundError):
    pass


def find_chaos_dir() -> Path:
    return harness.find("chaos", ENV_VAR, ChaosNotFoundError)


def load_chaos(path: Path) -> ModuleType:
    """Import `path` as the package PACKAGE (its modules use relative imports)."""
    return harness.load(path, PACKAGE, ChaosNotFoundError)


def main(argv: list[str]) -> int:
    """Run `meshbatch chaos ARGV...`; returns the exit code."""
    return harness.run("chaos", ENV_VAR, PACKAGE, argv, ChaosNotFoundError)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
