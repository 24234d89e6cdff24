"""The total of the workers' admin JSON answers (`/batchers`, `/clusters`, `/listeners`, `/ingest`). Pure.

The total has the shape of one worker's answer, so that what reads one proxy (`meshbatch top`, scripts) reads the
total alike:
- numbers are summed (counts, rates such as `items_per_s`, queue depths, capacities), except ages, latencies,
  percentiles, means and versions (keys ending in `_ms`, `_age_s`, `_p50`, `_p99`, `_mean`, or named in `HIGHEST`),
  which take the highest value, and a histogram's `bounds`, the same in every worker, kept as they are;
- objects merge key by key; lists of objects merge item by item matched by their name (`name`, `route`,
  `address`, `key`), other lists positionally when as long, else are kept from the first worker;
- a null beside numbers is no figure (left out); other values (strings, booleans, nulls) are kept when every
  worker agrees, else become the list of the values seen (a batcher `serving` in one worker and `draining` in
  another reads `["serving", "draining"]`).
"""

from __future__ import annotations

from typing import Any

HIGHEST = frozenset({"version", "oldest_ms", "age", "lag_ms", "loaded_at", "p50_ms", "p99_ms", "p999_ms",
                     "window_s"})
KEPT = frozenset({"bounds"})  # the first worker's (every worker's histograms have the same bounds)
MATCH_KEYS = ("name", "route", "address", "key")


def _highest(key: str) -> bool:
    return key in HIGHEST or key.endswith(("_ms", "_age_s", "_seconds_ago", "_p50", "_p99", "_p999", "_mean"))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _identity(item: Any) -> Any:
    if isinstance(item, dict):
        for key in MATCH_KEYS:
            if key in item:
                value = item[key]
                return (key, tuple(value) if isinstance(value, list) else value)
    return None


def _merge_lists(values: list[list[Any]]) -> list[Any]:
    ids = [[_identity(item) for item in value] for value in values]
    if all(i is not None for row in ids for i in row):
        order: list[Any] = []
        groups: dict[Any, list[Any]] = {}
        for row, value in zip(ids, values, strict=True):
            for ident, item in zip(row, value, strict=True):
                if ident not in groups:
                    order.append(ident)
                    groups[ident] = []
                groups[ident].append(item)
        return [merge(groups[ident]) for ident in order]
    if len({len(v) for v in values}) == 1:
        return [merge(list(items)) for items in zip(*values, strict=True)]
    return values[0]


def merge(values: list[Any], key: str = "") -> Any:
    """The total of one field across the workers' answers (`values`, one per worker that has it)."""
    if not values:
        return None
    if key in KEPT:
        return values[0]
    figures = [v for v in values if v is not None]  # null: no figure (no traffic that second, say)
    if figures and all(_number(v) for v in figures):
        total = max(figures) if _highest(key) else sum(figures)
        return round(total, 6) if isinstance(total, float) else total
    if all(isinstance(v, dict) for v in values):
        keys: list[str] = []
        for value in values:
            keys.extend(k for k in value if k not in keys)
        return {k: merge([v[k] for v in values if k in v], k) for k in keys}
    if all(isinstance(v, list) for v in values):
        return _merge_lists(values)
    distinct: list[Any] = []
    for value in values:
        if value not in distinct:
            distinct.append(value)
    return distinct[0] if len(distinct) == 1 else distinct


def total_and_workers(answers: list[tuple[int, int, Any]]) -> dict[str, Any]:
    """`answers`: (worker, pid, its JSON answer, or None when it did not answer). The total's keys at the top,
    and `workers`: each worker's own answer with its index and pid (or `error` when it did not answer)."""
    present = [answer for _, _, answer in answers if isinstance(answer, dict)]
    out: dict[str, Any] = merge(present) if present else {}
    out["workers"] = [
        {"worker": worker, "pid": pid, **answer} if isinstance(answer, dict) else
        {"worker": worker, "pid": pid, "error": "no answer (starting, restarting or stopped)"}
        for worker, pid, answer in answers
    ]
    return out


__all__ = ["merge", "total_and_workers"]
