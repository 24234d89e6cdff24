"""How many workers `--workers` (or the config's `workers:`) asks for. Pure but for reading the core count.

`auto` is the cores this process may run on (its CPU affinity, else `os.cpu_count()`); a number must be between 1
and four times the cores (more processes than that only share the same cores and multiply memory and upstream
connections)."""

from __future__ import annotations

import os
import re

CAP_PER_CORE = 4
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only (str.isdigit takes any script's)


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def workers_count(value: str | int, available: int | None = None) -> int:
    """The worker count `value` names (`auto` or a number); ValueError says why a value is refused."""
    n_cores = available if available is not None else cores()
    cap = CAP_PER_CORE * n_cores
    shown = str(value) if len(str(value)) <= 20 else f"{str(value)[:20]}..."
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return n_cores
        if not _INTEGER.fullmatch(text):
            raise ValueError(f"{shown!r}: a number of worker processes (1 to {cap}) or 'auto' ({n_cores}, "
                             "one per core)")
        value = int(text) if len(text) <= 12 else (cap + 1 if not text.startswith("-") else 0)
    if isinstance(value, bool) or value < 1:
        raise ValueError(f"{shown}: at least 1 worker process (or 'auto': one per core, {n_cores})")
    if value > cap:
        raise ValueError(f"{shown}: at most {cap} worker processes ({CAP_PER_CORE} per core, {n_cores} core(s) "
                         "here); 'auto' is one per core")
    return value


__all__ = ["CAP_PER_CORE", "cores", "workers_count"]
