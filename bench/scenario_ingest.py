"""Scenario `ingest`: events/s accepted with `fsync` acknowledgement from 64 concurrent producers.

`meshbatch run` with one ingest route (the embedded SQLite log, group commit with fsync) delivering to the SQLite
sink, then to PostgreSQL when one answers at MESHBATCH_PG_URL. wrk posts a small JSON event on 64 keep-alive
connections; each 202 means the event was on disk. After the load, the time for the backlog to drain says whether
the sink kept up. The ceiling is SQLite's own bulk-insert rate measured in the same round on the same disk: the
same rows, 64 to a transaction (what 64 producers can share), `synchronous=FULL` in WAL mode, no HTTP at all;
and, for reference, 1000 to a transaction.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from .common import (
    LOOPBACK,
    BenchError,
    CorePlan,
    Service,
    cpu_seconds,
    free_port,
    http_get,
    machine_facts,
    plan_cores,
    process_tree,
    ratio,
    require_tools,
    summarize,
)
from .peers import meshbatch_bin
from .report import num, spread, table
from .runner import RunContext, ScenarioResult
from .wrk import DONE_LUA, run_wrk

NAME = "ingest"
SUMMARY = "ingestion: events/s accepted with fsync acks from 64 producers, vs SQLite's bulk-insert rate"
ORDER = 30
EVENT = '{"temperature": 31.5, "site": "eu", "sensor": "s-0042", "unit": "C"}'
PG_URL = os.environ.get("MESHBATCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None, help="seconds of load per run (10; --quick 3)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent producers (keep-alive)")
    parser.add_argument("--sinks", default="sqlite,postgres", help="sinks to measure, comma-separated")
    parser.add_argument("--pin", action="store_true", help="pin the proxy to one core and wrk to the other")


def _post_script(workdir: Path) -> Path:
    path = workdir / "ingest_post.lua"
    path.write_text('wrk.method = "POST"\n'
                    f"wrk.body = '{EVENT}'\n"
                    'wrk.headers["Content-Type"] = "application/json"\n' + DONE_LUA)
    return path


def sqlite_ceiling(workdir: Path, seconds: float, per_commit: int = 64) -> float:
    """Rows/s of multi-row INSERTs in transactions of `per_commit` rows, fsync'd (WAL, synchronous=FULL)."""
    path = workdir / "ceiling.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT, body BLOB, received REAL, attempts INTEGER)")
    sql = "INSERT INTO events VALUES " + ",".join(["(?,?,?,?,0)"] * per_commit)
    body = EVENT.encode()
    rows, seq = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        params: list[Any] = []
        for _ in range(per_commit):
            seq += 1
            params += (seq, f"id-{seq}", body, time.time())
        db.execute(sql, params)
        rows += per_commit
    elapsed = time.perf_counter() - start
    db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return rows / elapsed


def _config(workdir: Path, port: int, admin: int, sink: dict[str, Any]) -> Path:
    config = {
        "admin": {"listen": f"{LOOPBACK}:{admin}"},
        "listeners": [{"name": "main", "listen": f"{LOOPBACK}:{port}", "routes": [
            {"name": "events", "match": {"path_prefix": "/events"},
             "ingest": {"ack": "fsync", "log": {"path": str(workdir / "log.db")}, "sink": sink}}]}],
    }
    path = workdir / "ingest.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _ingest_state(admin: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{admin}/ingest", timeout=5) as answer:
        state: dict[str, Any] = json.load(answer)["ingest"]["events"]
    return state


def _ready(service: Service, admin: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise BenchError(f"meshbatch exited before it was ready:\n{service.log_tail()}")
        try:
            if http_get(admin, "/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    service.stop()
    raise BenchError(f"meshbatch not ready within {timeout:.0f}s:\n{service.log_tail()}")


def measure(ctx: RunContext, wrk: str, sink_kind: str, seconds: float, cores: CorePlan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="meshbatch-ingest-") as tmp:
        workdir = Path(tmp)
        port, admin = free_port(), free_port()
        sink: dict[str, Any] = {"type": "sqlite", "path": str(workdir / "sink.db")}
        if sink_kind == "postgres":
            sink = {"type": "postgres", "url": PG_URL, "table": f"bench_ingest_{os.getpid()}_{port}"}
        config = _config(workdir, port, admin, sink)
        service = Service("meshbatch-ingest", [*cores.prefix("proxy"), meshbatch_bin(), "run", "--config",
                                               str(config)], workdir)
        try:
            _ready(service, admin)
            pids = process_tree(service.pid)
            cpu_before = cpu_seconds(pids)
            result = run_wrk(wrk, port, connections=ctx.args.connections, seconds=seconds, cores=cores,
                             script=_post_script(workdir), path="/events")
            cpu = cpu_seconds(pids) - cpu_before
            state = _ingest_state(admin)
            backlog_at_end = int(state["log"]["backlog"])
            start = time.monotonic()
            while state["log"]["backlog"] and time.monotonic() - start < 60:
                time.sleep(0.05)
                state = _ingest_state(admin)
            drain = time.monotonic() - start
            return {
                "sink": sink_kind, "accepted_per_s": result.rps, "requests": result.requests,
                "errors": result.errors, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
                "backlog_at_end": backlog_at_end, "drain_s": round(drain, 3),
                "delivered": state["delivery"]["delivered"], "left": state["log"]["backlog"],
                "events_per_commit": state["log"]["events_per_append_commit"],
                "cpu_us_per_event": round(cpu / max(1, result.requests) * 1e6, 1),
            }
        finally:
            service.stop()
            if sink_kind == "postgres":
                _drop_pg_table(sink["table"])


def _drop_pg_table(table: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
        finally:
            await conn.close()

    try:
        asyncio.run(drop())
    except (OSError, asyncpg.PostgresError):
        pass


def _pg_reachable() -> bool:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(PG_URL)
    try:
        with socket.create_connection((parts.hostname or LOOPBACK, parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def run(ctx: RunContext) -> ScenarioResult:
    tools = require_tools(["wrk"])
    seconds = ctx.args.duration or (3.0 if ctx.quick else 10.0)
    kinds = [k.strip() for k in str(ctx.args.sinks).split(",") if k.strip()]
    unknown = sorted(set(kinds) - {"sqlite", "postgres"})
    if unknown:
        raise BenchError(f"unknown sinks {unknown}; choose from sqlite, postgres")
    notes: list[str] = []
    if "postgres" in kinds and not _pg_reachable():
        kinds.remove("postgres")
        notes.append(f"PostgreSQL not reachable at {PG_URL}: not measured")
    cores = plan_cores() if ctx.args.pin else CorePlan(load=None, proxy=None)
    runs: list[dict[str, Any]] = []
    ceilings: list[float] = []
    bulk: list[float] = []
    failures: list[str] = []
    ctx.begin(ctx.repeat * (1 + len(kinds)), "starting")
    for round_no in range(ctx.repeat):
        ctx.step(f"round {round_no + 1}: SQLite bulk-insert ceiling")
        with tempfile.TemporaryDirectory(prefix="meshbatch-ceiling-") as tmp:
            ceilings.append(sqlite_ceiling(Path(tmp), min(seconds, 5.0)))
            bulk.append(sqlite_ceiling(Path(tmp), min(seconds, 5.0), per_commit=1000))
        ctx.done()
        for kind in kinds:
            ctx.step(f"round {round_no + 1}: {kind} sink, {ctx.args.connections} producers")
            try:
                measured = measure(ctx, tools["wrk"], kind, seconds, cores)
                measured["round"] = round_no + 1
                measured["ratio_to_ceiling"] = ratio(measured["accepted_per_s"], ceilings[-1])
                runs.append(measured)
            except BenchError as exc:
                failures.append(f"{kind} round {round_no + 1}: {exc}")
            ctx.done()
    rows = []
    summary: dict[str, Any] = {"sqlite_bulk_insert_rows_per_s": summarize(ceilings),
                               "sqlite_bulk_insert_1000_rows_per_s": summarize(bulk)}
    for kind in kinds:
        mine = [r for r in runs if r["sink"] == kind]
        rates = summarize([r["accepted_per_s"] for r in mine])
        ratios = summarize([r["ratio_to_ceiling"] for r in mine if r["ratio_to_ceiling"] is not None])
        summary[kind] = {"accepted_per_s": rates, "ratio_to_ceiling": ratios}
        if mine:
            last = mine[-1]
            rows.append([kind, spread(rates, 0), spread(ratios, 3), num(last["p50_ms"]), num(last["p99_ms"]),
                         str(last["backlog_at_end"]), num(last["drain_s"]), num(last["events_per_commit"], 1),
                         num(last["cpu_us_per_event"], 1), str(last["errors"])])
    markdown = "\n".join([
        f"## Ingest: fsync acknowledgement, {ctx.args.connections} producers, {seconds:.0f} s per run",
        "",
        f"SQLite bulk-insert ceiling (64-row fsync'd transactions, same disk): "
        f"{spread(summarize(ceilings), 0)} rows/s; in 1000-row transactions: {spread(summarize(bulk), 0)} rows/s",
        "",
        table(["sink", "accepted ev/s", "x ceiling", "p50 ms", "p99 ms", "backlog at end", "drain s",
               "events/commit", "CPU us/event", "errors"], rows),
        "",
        *(f"- {note}" for note in notes),
    ])
    data = {"settings": {"seconds": seconds, "connections": ctx.args.connections, "sinks": kinds,
                         "pinned": cores.pinned, "event": EVENT},
            "summary": summary, "runs": runs, "ceilings": ceilings, "bulk_1000": bulk,
            "machine": machine_facts({"meshbatch": "this checkout"})}
    return ScenarioResult(data=data, markdown=markdown, failures=failures)
