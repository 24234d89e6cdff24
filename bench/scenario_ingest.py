"""Scenario `ingest`: events/s accepted with `fsync` acknowledgement from 64 concurrent producers.

`meshbatch run` with one ingest route (the embedded SQLite log, group commit with fsync) delivering to the SQLite
sink, then to PostgreSQL when one answers at MESHBATCH_PG_URL. wrk posts on 64 keep-alive connections, in two
bodies (`--body`): `json`, one small JSON event a request, to a route without a pipeline; `ndjson`, a request of
`--events-per-request` such events, one a line, to a route whose pipeline is `decode: {format: ndjson}`. Each
202 means the request's events were on disk. After the load, the time for the backlog to drain says whether the
sink kept up, and every event the route accepted must have been delivered. The rate a core keeps up is the
events accepted over the load and the drain together (`kept up ev/s`): accepting faster than the sink takes
only fills the log, whose `max_events` then refuses (429, `log.on_full: reject`) or holds (`--on-full block`)
the producers. CPU per event is the proxy's and its
pipeline workers' (apart and together). The ceiling is SQLite's own bulk-insert rate measured in the same round
on the same disk: the same rows, 64 to a transaction (what 64 producers can share), `synchronous=FULL` in WAL
mode, no HTTP at all; and 1000 to a transaction (the ceiling of NDJSON requests, whose commits hold thousands).
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
SUMMARY = "ingestion: events/s accepted with fsync acks from 64 producers (single events, NDJSON), vs SQLite's " \
          "bulk-insert rate"
ORDER = 30
EVENT = '{"temperature": 31.5, "site": "eu", "sensor": "s-0042", "unit": "C"}'
PG_URL = os.environ.get("MESHBATCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None, help="seconds of load per run (10; --quick 3)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent producers (keep-alive)")
    parser.add_argument("--sinks", default="sqlite,postgres", help="sinks to measure, comma-separated")
    parser.add_argument("--pin", action="store_true", help="pin the proxy to one core and wrk to the other")
    parser.add_argument("--body", default="json,ndjson",
                        help="request bodies to measure, comma-separated: json (one event a request), ndjson "
                             "(--events-per-request events a request, decoded by the route's pipeline)")
    parser.add_argument("--events-per-request", type=int, default=100, help="events in an NDJSON request")
    parser.add_argument("--on-full", choices=("reject", "block"), default="reject",
                        help="the route's log.on_full: a full log refuses (429; wrk sends again at once) or holds "
                             "the producers")
    parser.add_argument("--log-max-events", type=int, default=None,
                        help="the route's log.max_events (default: the log's own, 1,000,000; its first "
                             "memory_events, 100,000, are kept in memory, the rest read back from disk)")


def ndjson_body(events: int) -> str:
    """`events` lines, each the bench's event with its own sensor."""
    return "".join(EVENT.replace("s-0042", f"s-{i:04d}") + "\n" for i in range(events))


def _post_script(workdir: Path, body: str, events: int) -> Path:
    path = workdir / "ingest_post.lua"
    if body == "ndjson":
        text, media = ndjson_body(events).replace("\n", "\\n"), "application/x-ndjson"
    else:
        text, media = EVENT, "application/json"
    path.write_text('wrk.method = "POST"\n'
                    f"wrk.body = '{text}'\n"
                    f'wrk.headers["Content-Type"] = "{media}"\n' + DONE_LUA)
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


def _config(workdir: Path, port: int, admin: int, sink: dict[str, Any], body: str = "json",
            on_full: str = "reject", max_events: int | None = None) -> Path:
    log: dict[str, Any] = {"path": str(workdir / "log.db"), "on_full": on_full}
    if max_events is not None:
        log["max_events"] = max_events
    route: dict[str, Any] = {"name": "events", "match": {"path_prefix": "/events"},
                             "ingest": {"ack": "fsync", "log": log, "sink": sink}}
    if body == "ndjson":
        route["pipeline"] = [{"decode": {"format": "ndjson"}}]
    config = {
        "admin": {"listen": f"{LOOPBACK}:{admin}"},
        "listeners": [{"name": "main", "listen": f"{LOOPBACK}:{port}", "routes": [route]}],
    }
    path = workdir / "ingest.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _ingest_state(admin: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{admin}/ingest", timeout=5) as answer:
        state: dict[str, Any] = json.load(answer)["ingest"]["events"]
    return state


def _workers_ready(admin: int) -> bool:
    status, text = http_get(admin, "/metrics")
    return status == 200 and b'meshbatch_pipeline_workers{route="events",state="alive"} 1.0' in text


def _warm(service: Service, port: int, admin: int, body: str, events: int, timeout: float = 30.0) -> list[int]:
    """One request of the load's kind answered 202, and the pipeline's worker started (its start-up is no part of
    the load's CPU, whether or not requests reach it); the pids of the workers."""
    data, media = (ndjson_body(events), "application/x-ndjson") if body == "ndjson" else (EVENT, "application/json")
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}/events", data=data.encode(), method="POST",
                                     headers={"content-type": media})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                if answer.status == 202 and (body != "ndjson" or _workers_ready(admin)):
                    return process_tree(service.pid)[1:]
        except OSError as exc:
            if time.monotonic() > deadline:
                raise BenchError(f"no 202 within {timeout:.0f}s ({exc}):\n{service.log_tail()}") from exc
        time.sleep(0.1)


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


def measure(ctx: RunContext, wrk: str, sink_kind: str, seconds: float, cores: CorePlan,
            body: str = "json") -> dict[str, Any]:
    per_request = ctx.args.events_per_request if body == "ndjson" else 1
    with tempfile.TemporaryDirectory(prefix="meshbatch-ingest-") as tmp:
        workdir = Path(tmp)
        port, admin = free_port(), free_port()
        sink: dict[str, Any] = {"type": "sqlite", "path": str(workdir / "sink.db")}
        if sink_kind == "postgres":
            sink = {"type": "postgres", "url": PG_URL, "table": f"bench_ingest_{os.getpid()}_{port}"}
        config = _config(workdir, port, admin, sink, body, ctx.args.on_full, ctx.args.log_max_events)
        service = Service("meshbatch-ingest", [*cores.prefix("proxy"), meshbatch_bin(), "run", "--config",
                                               str(config)], workdir)
        try:
            _ready(service, admin)
            workers = _warm(service, port, admin, body, per_request)
            accepted_before = int(_ingest_state(admin)["accepted"])
            proxy_before, workers_before = cpu_seconds([service.pid]), cpu_seconds(workers)
            result = run_wrk(wrk, port, connections=ctx.args.connections, seconds=seconds, cores=cores,
                             script=_post_script(workdir, body, per_request), path="/events")
            state = _ingest_state(admin)
            # the events the route accepted (202): a request refused (429 once the log is full) counts none
            events = max(1, int(state["accepted"]) - accepted_before)
            backlog_at_end = int(state["log"]["backlog"])
            start = time.monotonic()
            while state["log"]["backlog"] and time.monotonic() - start < 60:
                time.sleep(0.05)
                state = _ingest_state(admin)
            drain = time.monotonic() - start
            # the CPU of the load and of the drain: a sink that lags delivers part of the load's events after it
            proxy_cpu = cpu_seconds([service.pid]) - proxy_before
            workers_cpu = cpu_seconds(workers) - workers_before
            return {
                "body": body, "sink": sink_kind, "events_per_request": per_request,
                "accepted_per_s": round(events / result.seconds, 1) if result.seconds else 0.0,
                # the load's events, all delivered by the end of the drain: the rate the core keeps up
                "kept_up_per_s": round(events / (result.seconds + drain), 1) if result.seconds else 0.0,
                "load_s": round(result.seconds, 3),
                "requests_per_s": result.rps,
                "requests": result.requests, "errors": result.errors, "p50_ms": result.p50_ms,
                "p99_ms": result.p99_ms, "backlog_at_end": backlog_at_end, "drain_s": round(drain, 3),
                "accepted": state["accepted"], "delivered": state["delivery"]["delivered"],
                "left": state["log"]["backlog"], "events_per_commit": state["log"]["events_per_append_commit"],
                "cpu_us_per_event": round((proxy_cpu + workers_cpu) / events * 1e6, 2),
                "proxy_cpu_us_per_event": round(proxy_cpu / events * 1e6, 2),
                "workers_cpu_us_per_event": round(workers_cpu / events * 1e6, 2),
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


def _check(measured: dict[str, Any]) -> str | None:
    """Why a run lost events (None when every accepted event was delivered)."""
    if measured["left"] or measured["delivered"] != measured["accepted"]:
        return (f"{measured['accepted']} events accepted, {measured['delivered']} delivered, {measured['left']} "
                "left in the log after the drain")
    return None


def _row(body: str, kind: str, mine: list[dict[str, Any]]) -> list[str]:
    last = mine[-1]
    cpu = num(last["cpu_us_per_event"], 1)
    if body == "ndjson":
        cpu += f" ({num(last['proxy_cpu_us_per_event'], 1)} + {num(last['workers_cpu_us_per_event'], 1)})"
    return [f"{body} x{last['events_per_request']}", kind,
            spread(summarize([r["accepted_per_s"] for r in mine]), 0),
            spread(summarize([r["kept_up_per_s"] for r in mine]), 0),
            spread(summarize([r["requests_per_s"] for r in mine]), 0),
            spread(summarize([r["ratio_to_ceiling"] for r in mine if r["ratio_to_ceiling"] is not None]), 3),
            num(last["p50_ms"]), num(last["p99_ms"]), str(last["backlog_at_end"]), num(last["drain_s"]),
            num(last["events_per_commit"], 1), cpu, str(last["errors"])]


def run(ctx: RunContext) -> ScenarioResult:
    tools = require_tools(["wrk"])
    seconds = ctx.args.duration or (3.0 if ctx.quick else 10.0)
    kinds = [k.strip() for k in str(ctx.args.sinks).split(",") if k.strip()]
    unknown = sorted(set(kinds) - {"sqlite", "postgres"})
    if unknown:
        raise BenchError(f"unknown sinks {unknown}; choose from sqlite, postgres")
    bodies = [b.strip() for b in str(ctx.args.body).split(",") if b.strip()]
    if not bodies or set(bodies) - {"json", "ndjson"}:
        raise BenchError(f"unknown bodies {bodies}; choose from json, ndjson")
    if ctx.args.events_per_request < 1:
        raise BenchError("--events-per-request is at least 1")
    notes: list[str] = []
    if "postgres" in kinds and not _pg_reachable():
        kinds.remove("postgres")
        notes.append(f"PostgreSQL not reachable at {PG_URL}: not measured")
    cores = plan_cores() if ctx.args.pin else CorePlan(load=None, proxy=None)
    pairs = [(body, kind) for body in bodies for kind in kinds]
    runs: list[dict[str, Any]] = []
    ceilings: list[float] = []
    bulk: list[float] = []
    failures: list[str] = []
    ctx.begin(ctx.repeat * (1 + len(pairs)), "starting")
    for round_no in range(ctx.repeat):
        ctx.step(f"round {round_no + 1}: SQLite bulk-insert ceiling")
        with tempfile.TemporaryDirectory(prefix="meshbatch-ceiling-") as tmp:
            ceilings.append(sqlite_ceiling(Path(tmp), min(seconds, 5.0)))
            bulk.append(sqlite_ceiling(Path(tmp), min(seconds, 5.0), per_commit=1000))
        ctx.done()
        for body, kind in pairs:
            ctx.step(f"round {round_no + 1}: {body} bodies, {kind} sink, {ctx.args.connections} producers")
            try:
                measured = measure(ctx, tools["wrk"], kind, seconds, cores, body)
                measured["round"] = round_no + 1
                measured["ratio_to_ceiling"] = ratio(measured["accepted_per_s"],
                                                     bulk[-1] if body == "ndjson" else ceilings[-1])
                runs.append(measured)
                lost = _check(measured)
                if lost is not None:
                    failures.append(f"{body} {kind} round {round_no + 1}: {lost}")
            except BenchError as exc:
                failures.append(f"{body} {kind} round {round_no + 1}: {exc}")
            ctx.done()
    rows = []
    summary: dict[str, Any] = {"sqlite_bulk_insert_rows_per_s": summarize(ceilings),
                               "sqlite_bulk_insert_1000_rows_per_s": summarize(bulk)}
    for body, kind in pairs:
        mine = [r for r in runs if r["sink"] == kind and r["body"] == body]
        summary.setdefault(body, {})[kind] = {
            key: summarize([r[key] for r in mine if r.get(key) is not None])
            for key in ("accepted_per_s", "kept_up_per_s", "requests_per_s", "ratio_to_ceiling", "cpu_us_per_event",
                        "proxy_cpu_us_per_event", "workers_cpu_us_per_event", "p50_ms", "p99_ms")}
        if mine:
            rows.append(_row(body, kind, mine))
    markdown = "\n".join([
        f"## Ingest: fsync acknowledgement, {ctx.args.connections} producers, {seconds:.0f} s per run, a full "
        f"log: {ctx.args.on_full}",
        "",
        f"SQLite bulk-insert ceiling (64-row fsync'd transactions, same disk): "
        f"{spread(summarize(ceilings), 0)} rows/s; in 1000-row transactions: {spread(summarize(bulk), 0)} rows/s",
        "",
        table(["body", "sink", "accepted ev/s", "kept up ev/s", "req/s", "x ceiling", "p50 ms", "p99 ms",
               "backlog at end", "drain s", "events/commit", "CPU us/event", "errors"], rows),
        "",
        "kept up: the events accepted over the load and the drain after it (each delivered by then). "
        "x ceiling: single events against the 64-row ceiling, NDJSON against the 1000-row one. CPU us/event: "
        "over the load and the drain that follows it (deliveries included); of NDJSON requests, the proxy's + "
        "its pipeline workers'.",
        "",
        *(f"- {note}" for note in notes),
    ])
    data = {"scenario": NAME, "mode": "quick" if ctx.quick else "full",
            "settings": {"seconds": seconds, "connections": ctx.args.connections, "sinks": kinds,
                         "bodies": bodies, "events_per_request": ctx.args.events_per_request,
                         "on_full": ctx.args.on_full, "log_max_events": ctx.args.log_max_events,
                         "pinned": cores.pinned, "event": EVENT},
            "summary": summary, "runs": runs, "ceilings": ceilings, "bulk_1000": bulk, "failures": failures,
            "machine": machine_facts({"meshbatch": "this checkout"})}
    return ScenarioResult(data=data, markdown=markdown, failures=failures)
