"""Harnesses that live beside `src/` in a repository checkout (`bench/`, `chaos/`): found and loaded as packages.

They are plain modules with relative imports, not part of the installed package: they start nginx, haproxy and
wrk, or drive the test suite's helpers, which a package user does not need. A harness folder is found, in order,
at its environment variable, by walking up from this package (an editable install from the repository), and by
walking up from the current directory; it is imported under its own package name, so its modules never clash
with others.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import importlib.util
import os
import platform
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import meshbatch

MARKER = "runner.py"  # every harness folder has one; its `main(argv, prog=...)` runs the command line


class HarnessNotFoundError(RuntimeError):
    pass


def _walk_up(start: Path) -> Iterator[Path]:
    start = start.resolve()
    yield from (start, *start.parents)


def is_harness_dir(path: Path) -> bool:
    return (path / "__init__.py").is_file() and (path / MARKER).is_file()


def find(folder: str, env_var: str, error: type[HarnessNotFoundError] = HarnessNotFoundError) -> Path:
    """The checkout's `folder` (e.g. "bench"), or `$env_var` when set."""
    override = os.environ.get(env_var)
    if override:
        path = Path(override).expanduser().resolve()
        if not is_harness_dir(path):
            raise error(f"{env_var}={override} is not a meshbatch {folder} directory (no {MARKER})")
        return path
    for start in (Path(meshbatch.__file__).parent, Path.cwd()):
        for parent in _walk_up(start):
            if is_harness_dir(parent / folder):
                return parent / folder
    raise error(f"cannot find the {folder} harness: run from a meshbatch repository checkout (installed with "
                f"`pip install -e .`), or set {env_var} to its {folder}/ directory")


def load(path: Path, package: str, error: type[HarnessNotFoundError] = HarnessNotFoundError) -> ModuleType:
    """Import `path` as the package `package` (once; again if it now points elsewhere)."""
    loaded = sys.modules.get(package)
    if loaded is not None and Path(str(loaded.__file__)).parent == path:
        return loaded
    spec = importlib.util.spec_from_file_location(package, path / "__init__.py", submodule_search_locations=[str(path)])
    if spec is None or spec.loader is None:
        raise error(f"cannot load {path} as a package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every process a harness started is stopped by the `finally` that owns it."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, Any]:
    """What a harness's results say about the machine they were measured on; each harness adds its own."""
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
    }


def run(folder: str, env_var: str, package: str, argv: list[str],
        error: type[HarnessNotFoundError] = HarnessNotFoundError) -> int:
    """`meshbatch FOLDER ARGV...`: find and load the harness, hand it the command line; the exit code."""
    try:
        load(find(folder, env_var, error), package, error)
    except HarnessNotFoundError as exc:
        print(f"meshbatch {folder}: {exc}", file=sys.stderr)
        return 2
    runner = importlib.import_module(f"{package}.runner")
    code: int = runner.main(argv, prog=f"meshbatch {folder}")
    return code


__all__ = ["MARKER", "HarnessNotFoundError", "cpu_model", "find", "is_harness_dir", "load", "machine_facts", "run",
           "sigterm_interrupts"]
