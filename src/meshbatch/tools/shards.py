"""`meshbatch shards plan`: which keys a change to a sharded sink's shards moves, before making it.

The keys come from a file or stdin (one key a line, as its text: `device-7`, `42`), or from the shards' own tables
(`--from-sinks`: the distinct values of the `shard_by` field, read from the column that maps it, else from the
payload column's JSON). The plan places every key with the current shard names and with the new ones (the same
rendezvous hash as the sink: meshbatch.ingest.sinks.hashing) and reports how many move, from where to where;
`--list` prints each moved key (`KEY<TAB>FROM<TAB>TO`), the input of a migration script. With `--from-sinks` it
also counts keys found on a shard they do not hash to (rows left behind by an earlier change); with no change
given, that count alone (a check after a migration).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import orjson

from meshbatch import extras
from meshbatch.config import ConfigError, load
from meshbatch.config.model import IngestRoute
from meshbatch.config.plain import Column, of
from meshbatch.config.plain import Sink as SinkConfig
from meshbatch.config.redact import redact_text
from meshbatch.ingest.sinks.hashing import Rendezvous, key_text
from meshbatch.ingest.sinks.mapping import quote


class PlanError(Exception):
    """Why no plan can be made (printed as is)."""


def sharded_sink(path: str, route_name: str) -> SinkConfig:
    config = load(path, log_notes=False)
    routes = [r for lst in config.listeners for r in lst.routes if r.name == route_name]
    if not routes:
        raise PlanError(f"no route named {route_name!r} in {path}")
    route = routes[0]
    if not isinstance(route, IngestRoute) or not route.ingest.sink.shards:
        raise PlanError(f"route {route_name!r} has no sharded sink (ingest.sink.shards)")
    sink: SinkConfig = of(route.ingest.sink)  # the run-time form the sinks read
    return sink


def read_keys(stream: TextIO) -> Iterator[bytes]:
    """One key a line (the line's end removed; empty lines skipped)."""
    for line in stream:
        text = line.rstrip("\r\n")
        if text:
            yield text.encode("utf-8")


def _source(sink: SinkConfig) -> tuple[str, tuple[Any, ...], bool]:
    """The SQL expression that reads the shard key from a row, its parameter (the field path: never spliced into
    the statement), and whether the value comes back as JSON text (postgres `jsonb`)."""
    assert sink.shard_by is not None
    for name, spec in sink.columns.items():
        if (spec.field if isinstance(spec, Column) else spec) == sink.shard_by:
            return quote(name), (), False
    payload = sink.payload_column or (None if sink.columns else "payload")
    if payload is None:
        raise PlanError(f"no column holds {sink.shard_by!r} and the sink keeps no payload column: give the keys "
                        "with --keys")
    parts = sink.shard_by.split(".")
    if sink.type == "sqlite" and any('"' in part for part in parts):
        raise PlanError(f"SQLite's JSON paths cannot name a field with a double quote ({sink.shard_by!r}): give "
                        "the keys with --keys")
    if sink.type == "postgres":
        return f"{quote(payload)} #> $1::text[]", (parts,), True
    return f"json_extract({quote(payload)}, ?)", ("$." + ".".join(orjson.dumps(p).decode() for p in parts),), False


def _decode(value: Any, json_text: bool) -> bytes | None:
    if json_text and isinstance(value, str):
        value = orjson.loads(value)
    return key_text(value)


def sample_sinks(sink: SinkConfig, limit: int) -> list[tuple[str, list[bytes]]]:
    """(shard name, its distinct keys) for every shard, read from its table (at most `limit` keys a shard)."""
    expression, params, json_text = _source(sink)
    statement = f"SELECT DISTINCT {expression} FROM {quote(sink.table)} LIMIT {int(limit)}"
    out: list[tuple[str, list[bytes]]] = []
    for name, shard in zip(sink.shard_names(), sink.shards, strict=True):
        try:
            values = _read_postgres(shard.url or "", statement, params) if sink.type == "postgres" else \
                _read_sqlite(shard.path or "", statement, params)
        except Exception as exc:  # any driver error: this shard cannot be sampled
            raise PlanError(f"shard {name}: cannot read its keys: {redact_text(str(exc))}") from exc
        out.append((name, [k for k in (_decode(v, json_text) for v in values) if k is not None]))
    return out


def _read_sqlite(path: str, statement: str, params: tuple[Any, ...]) -> list[Any]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [row[0] for row in db.execute(statement, params)]
    finally:
        db.close()


def _read_postgres(url: str, statement: str, params: tuple[Any, ...]) -> list[Any]:
    import asyncpg

    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(os.path.expandvars(url), timeout=10)
        try:
            return [row[0] for row in await conn.fetch(statement, *params, timeout=60)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def plan(before: list[str], after: list[str], keys: Iterable[bytes],
         found_on: dict[bytes, set[str]] | None = None) -> dict[str, Any]:
    """The plan of moving from shard names `before` to `after` for `keys`; `found_on`: the shards each key was
    read from (a key read from a shard it does not hash to now is `misplaced`)."""
    old, new = Rendezvous(before), Rendezvous(after)
    moved: list[tuple[str, str, str]] = []
    per_shard: Counter[str] = Counter()
    flows: Counter[tuple[str, str]] = Counter()
    count = misplaced = 0
    for key in dict.fromkeys(keys):
        count += 1
        a, b = old.names[old.place(key)], new.names[new.place(key)]
        per_shard[a] += 1
        if found_on is not None and found_on.get(key, {a}) - {a}:
            misplaced += 1
        if a != b:
            moved.append((key.decode("utf-8", "replace"), a, b))
            flows[(a, b)] += 1
    result: dict[str, Any] = {
        "keys": count, "moved": len(moved), "moved_fraction": len(moved) / count if count else 0.0,
        "before": {name: per_shard[name] for name in before},
        "flows": [{"from": a, "to": b, "keys": n} for (a, b), n in sorted(flows.items())],
        "moves": moved,
    }
    if found_on is not None:
        result["misplaced"] = misplaced
    return result


def run_plan(args: argparse.Namespace) -> int:
    try:
        sink = sharded_sink(args.config, args.route)
        before = sink.shard_names()
        after = list(before)
        change = ""
        if args.add is not None:
            name = args.name or str(len(before))
            if name in before:
                raise PlanError(f"a shard named {name!r} exists already: give the new one --name")
            after.append(name)
            change = f"adding shard {name!r} ({redact_text(args.add)})"
        for name in args.remove or []:
            if name not in after:
                raise PlanError(f"no shard named {name!r}; shards: {', '.join(before)}")
            after.remove(name)
            change += ("; " if change else "") + f"removing shard {name!r}"
        if not change and not args.from_sinks:
            raise PlanError("say what changes: --add TARGET (with --name) and/or --remove NAME; or check where "
                            "the stored keys are with --from-sinks alone")
        change = change or "no change: where the stored keys are"
        if not after:
            raise PlanError("no shard would be left")
        found_on: dict[bytes, set[str]] | None = None
        keys: Iterable[bytes]
        if args.from_sinks:
            if sink.type == "postgres":
                extras.require("postgres", "meshbatch shards plan --from-sinks")
            found_on = {}
            for name, sampled in sample_sinks(sink, args.limit):
                for key in sampled:
                    found_on.setdefault(key, set()).add(name)
            keys = list(found_on)
            source = "the shards' tables"
        else:
            stream = sys.stdin if args.keys in (None, "-") else open(args.keys, encoding="utf-8")  # noqa: SIM115
            with stream:
                keys = list(read_keys(stream))
            source = "stdin" if args.keys in (None, "-") else args.keys
        result = plan(before, after, keys, found_on)
    except (PlanError, ConfigError, OSError, UnicodeDecodeError) as exc:
        print(f"meshbatch shards plan: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    result.update({"route": args.route, "shard_by": sink.shard_by, "shards_before": before, "shards_after": after,
                   "source": source})
    if args.json:
        if not args.list:
            result.pop("moves")
        print(orjson.dumps(result).decode())
        return 0
    if args.list:
        try:
            for key, a, b in result["moves"]:
                print(f"{key}\t{a}\t{b}")
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (no second error when Python flushes at exit)
        return 0
    print(f"route {args.route}: shard_by {sink.shard_by}, shards {', '.join(before)} -> {', '.join(after)} "
          f"({change})")
    print(f"keys: {result['keys']} distinct, from {source}")
    print(f"moving: {result['moved']} keys ({100 * result['moved_fraction']:.1f}%)")
    for flow in result["flows"]:
        share = flow["keys"] / max(1, result["before"].get(flow["from"], 0))
        print(f"  {flow['from']} -> {flow['to']}: {flow['keys']} keys ({100 * share:.1f}% of shard {flow['from']})")
    print(f"staying: {result['keys'] - result['moved']} keys")
    if "misplaced" in result:
        print(f"already on a shard they do not hash to: {result['misplaced']} keys")
    print("(--list prints each moved key: KEY, FROM, TO)")
    return 0


__all__ = ["PlanError", "plan", "read_keys", "run_plan", "sample_sinks", "sharded_sink"]
