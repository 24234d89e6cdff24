"""Closed-loop keyed load for the `replicas` scenario, on one asyncio loop.

`concurrency` keep-alive connections each send a POST, wait for its answer and send the next; every request
carries a batch key in `x-tenant`, drawn uniformly from `keys` names (seeded, so every run draws alike), or
with `hot_share`, that share of the requests on the first key. Each
answer's `x-meshbatch-batch-id` and `x-meshbatch-batch-size` say which upstream batch carried the item: the
batch sizes are exact, one entry per batch (ids are unique across processes: a random prefix per route, so the
prefix also tells which replica a key's items met at).
Requests started in the warm-up, or still unanswered when the time is up, are not counted.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

HEAD_LIMIT = 65_536


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, answered 200 in the window
    batches: dict[str, int] = field(default_factory=dict)  # batch id -> items in it
    per_key: Counter[str] = field(default_factory=Counter)
    key_replicas: dict[str, set[str]] = field(default_factory=dict)  # key -> batch id prefixes (one per replica)
    errors: Counter[str] = field(default_factory=Counter)
    unbatched: int = 0  # 200 answers without the batch headers


def request_bytes(path: str, key: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: service\r\ncontent-type: application/json\r\n"
            f"x-tenant: {key}\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > HEAD_LIMIT:
        raise ValueError("answer head too long")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers


async def _worker(address: tuple[str, int], path: str, keys: list[str], hot_share: float, rng: random.Random,
                  warm_end: float, stop: float, tally: Tally) -> None:
    reader, writer = await asyncio.open_connection(*address)
    n = 0
    try:
        while time.perf_counter() < stop:
            key = keys[0] if hot_share and rng.random() < hot_share else rng.choice(keys)
            n += 1
            started = time.perf_counter()
            try:
                writer.write(request_bytes(path, key, b'{"id": %d}' % n))
                status, headers = await asyncio.wait_for(_read_answer(reader), max(0.001, stop + 5 - started))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                    TimeoutError) as exc:
                tally.errors[type(exc).__name__] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(*address)
                continue
            finished = time.perf_counter()
            if started < warm_end or finished > stop:
                continue
            if status != 200:
                tally.errors[f"status {status}"] += 1
                continue
            tally.latencies.append(finished - started)
            tally.per_key[key] += 1
            batch_id, size = headers.get("x-meshbatch-batch-id"), headers.get("x-meshbatch-batch-size")
            if batch_id is None or size is None or not size.isdigit():
                tally.unbatched += 1
            else:
                tally.batches[batch_id] = int(size)
                tally.key_replicas.setdefault(key, set()).add(batch_id.rpartition("-")[0])
    finally:
        writer.close()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def summarize_tally(tally: Tally, seconds: float) -> dict[str, Any]:
    sizes = list(tally.batches.values())
    answered = len(tally.latencies)
    return {
        "answered": answered,
        "items_per_s": answered / seconds if seconds > 0 else None,
        "p50_ms": None if not answered else 1000 * (_percentile(tally.latencies, 0.50) or 0.0),
        "p99_ms": None if not answered else 1000 * (_percentile(tally.latencies, 0.99) or 0.0),
        "batches": len(sizes),
        "mean_batch": statistics.fmean(sizes) if sizes else None,
        "p50_batch": statistics.median(sizes) if sizes else None,
        "max_batch": max(sizes) if sizes else None,
        # the size of the batch an average item rode in (weighted by items, so bigger than the mean per batch)
        "item_weighted_batch": sum(s * s for s in sizes) / sum(sizes) if sizes else None,
        "keys_answered": len(tally.per_key),
        # each replica's batch ids share a prefix: how many replicas a key's items met at, and the most keys
        # one replica served
        "replicas_per_key": (statistics.fmean(len(v) for v in tally.key_replicas.values())
                             if tally.key_replicas else None),
        "busiest_keys": max(Counter(p for v in tally.key_replicas.values() for p in v).values(), default=None),
        "unbatched": tally.unbatched,
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors.most_common(5)),
    }


async def _run(address: tuple[str, int], path: str, keys: list[str], concurrency: int, seconds: float,
               warmup: float, seed: int, hot_share: float) -> Tally:
    tally = Tally()
    now = time.perf_counter()
    warm_end, stop = now + warmup, now + warmup + seconds
    await asyncio.gather(*(_worker(address, path, keys, hot_share, random.Random(seed * 1_000_003 + i), warm_end,
                                   stop, tally) for i in range(concurrency)))
    return tally


def keyed_load(address: tuple[str, int], path: str, keys: int, concurrency: int, seconds: float,
               warmup: float = 0.5, seed: int = 1, hot_share: float = 0.0) -> dict[str, Any]:
    """Closed-loop load on `path` for `warmup` + `seconds`; the counted window's figures. `hot_share`: that share
    of the requests go to the first key (a hot key), the rest are drawn uniformly."""
    names = [f"tenant-{n:03d}" for n in range(max(1, keys))]
    tally = asyncio.run(_run(address, path, names, max(1, concurrency), seconds, warmup, seed,
                             min(1.0, max(0.0, hot_share))))
    return summarize_tally(tally, seconds)


__all__ = ["Tally", "keyed_load", "request_bytes", "summarize_tally"]
