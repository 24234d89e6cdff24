"""The markdown of a `replicas` result: ratios against round robin first, then each balancer's figures."""

from __future__ import annotations

from typing import Any

from .report import num, spread, table


def _ratio_cell(cell: dict[str, Any] | None, digits: int = 2) -> str:
    """`2.10x [1.90-2.30]`: the median ratio, then its range over the rounds."""
    text = spread(cell, digits)
    if text == "-":
        return text
    median, _, rest = text.partition(" ")
    return f"{median}x {rest}".rstrip()


def _per_item(settings: dict[str, Any]) -> str:
    item_us = settings.get("item_us") or 0
    return f" plus {item_us} us an item" if item_us else ""


def _keys_drawn(settings: dict[str, Any]) -> str:
    hot = settings.get("hot_share") or 0
    if not hot:
        return "keys drawn uniformly"
    return f"{hot:.0%} of the requests on one hot key, the others drawn uniformly"


def render(data: dict[str, Any]) -> str:
    settings = data["settings"]
    rounds = len({r["round"] for r in data["runs"]}) if data["runs"] else 0
    lines = [
        "## Batches across replicas",
        "",
        f"{settings['replicas']} batching replicas (batch key `header:x-tenant`, {settings['max_in_flight']} "
        f"batches in flight each, up to {settings['max_items']} items) in front of one upstream that takes "
        f"{settings['upstream_ms']} ms a batch{_per_item(settings)}; one caller-side sidecar balances over the "
        f"replicas. "
        f"{settings['concurrency']} closed-loop connections, {_keys_drawn(settings)}; median (min-max) over {rounds} "
        f"round(s) of {num(settings['seconds'], 1)} s per balancer.",
        "",
    ]
    ratio_rows = []
    for keys, block in data["summary"].items():
        for lb, cell in block["vs_round_robin"].items():
            ratio_rows.append([keys, lb, _ratio_cell(cell["mean_batch"]), _ratio_cell(cell["items_per_s"]),
                               _ratio_cell(cell["p99_ms"])])
    if ratio_rows:
        lines += ["Hashed against round robin (same round):", "",
                  table(["keys", "lb", "mean batch", "items/s", "p99"], ratio_rows), ""]
    rows = []
    for keys, block in data["summary"].items():
        for lb, cell in block["by_lb"].items():
            rows.append([keys, lb, spread(cell["mean_batch"], 2), spread(cell["p50_batch"], 1),
                         spread(cell["item_weighted_batch"], 2), spread(cell["items_per_s"], 0),
                         spread(cell["p50_ms"], 1), spread(cell["p99_ms"], 1),
                         spread(cell["busiest_share"], 2), spread(cell.get("replicas_per_key"), 2),
                         spread(cell.get("busiest_keys"), 0)])
    lines += [
        table(["keys", "lb", "mean batch", "p50 batch", "batch per item", "items/s", "p50 ms", "p99 ms",
               "busiest replica", "replicas a key met", "keys on busiest"], rows),
        "",
        "Mean and p50 batch: over the batches (exact, from each answer's `x-meshbatch-batch-size`); batch per "
        "item: the size of the batch an average item rode in; busiest replica: its share of the items; replicas a key "
        "met: how many replicas a key's items reached (from the batch ids' per-replica prefix); keys on busiest: "
        "the most keys one replica served.",
        "",
    ]
    return "\n".join(lines)


__all__ = ["render"]
