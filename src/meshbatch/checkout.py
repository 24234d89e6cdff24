"""`meshbatch bench` and `meshbatch chaos`: commands that run from a repository checkout, not from the package.

The benchmark and chaos harnesses are top-level folders of the repository (`bench/`, `chaos/`, beside the
`testbed/` package they share with the tests); they start nginx, haproxy, wrk and fleets of processes, which a
user of the installed package does not need, so a wheel does not carry them. This module finds the checkout
(`$MESHBATCH_BENCH_DIR` / `$MESHBATCH_CHAOS_DIR` pointing at the folder, else by walking up from this package,
as an editable install sits in one, then from the current directory), puts it on `sys.path` and imports the
harness's `runner` only when the command is run.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

ENV_VARS = {"bench": "MESHBATCH_BENCH_DIR", "chaos": "MESHBATCH_CHAOS_DIR"}
SHARED = "testbed"  # the package the harnesses share with the tests, beside them in the checkout


class CheckoutNotFoundError(RuntimeError):
    pass


def _is_checkout(root: Path, folder: str) -> bool:
    return all((root / name / "__init__.py").is_file() for name in (folder, SHARED)) \
        and (root / folder / "runner.py").is_file()


def _candidates() -> Iterator[Path]:
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        yield from (start, *start.parents)


def find(folder: str) -> Path:
    """The checkout whose `folder` (bench, chaos) is the harness: `$ENV_VAR`'s parent, or found by walking up."""
    env_var = ENV_VARS[folder]
    override = os.environ.get(env_var)
    if override:
        path = Path(override).expanduser().resolve()
        if path.name != folder or not _is_checkout(path.parent, folder):
            raise CheckoutNotFoundError(f"{env_var}={override} is not the {folder}/ folder of a meshbatch checkout "
                                        f"(with {folder}/runner.py and {SHARED}/ beside it)")
        return path.parent
    for root in _candidates():
        if _is_checkout(root, folder):
            return root
    raise CheckoutNotFoundError(
        f"the {folder} harness is not part of the installed package: run `meshbatch {folder}` from a meshbatch "
        f"repository checkout (`make venv` installs it editable, then `.venv/bin/meshbatch {folder}` or "
        f"`make {folder}`), or set {env_var} to the checkout's {folder}/ folder")


def load(folder: str) -> ModuleType:
    """The harness's `runner` module, imported from the checkout (which goes first on `sys.path`)."""
    root = find(folder)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    runner = importlib.import_module(f"{folder}.runner")
    where = Path(str(runner.__file__)).resolve().parent.parent
    if where != root:
        raise CheckoutNotFoundError(f"`{folder}` was already imported from {where}, not from the checkout {root}")
    return runner


def run(folder: str, argv: list[str]) -> int:
    """`meshbatch FOLDER ARGV...`: the harness's own command line; 2 when there is no checkout to run it from."""
    try:
        runner = load(folder)
    except CheckoutNotFoundError as exc:
        print(f"meshbatch {folder}: {exc}", file=sys.stderr)
        return 2
    code: int = runner.main(argv, prog=f"meshbatch {folder}")
    return code


__all__ = ["ENV_VARS", "CheckoutNotFoundError", "find", "load", "run"]
