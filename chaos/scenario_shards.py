"""A sharded PostgreSQL sink under a shard's crash (`shard-kill`): three PostgreSQL servers started from the
installed binaries (testbed/postgres.py), one ingest route (ack `fsync`) sharding its events over them by the
event's `id`. Under steady load, shard 1 is stopped with `pg_ctl stop -m immediate` (its processes die at once,
no checkpoint) and started again later. Every 202 must end in PostgreSQL exactly once, on the shard its key
hashes to; the two live shards keep storing during the outage; nothing is dead-lettered; the figures say how long
after the restart the shard took events again and how long its backlog took to drain.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from meshbatch.ingest.record import key_of
from meshbatch.ingest.sinks.hashing import Rendezvous

from .accounting import Sides, stream_figures
from .common import Context, Scenario, ScenarioResult, wait_until
from .harness import Timeline, drive, fault_cycles, leak_checks, planned_requests
from .loadgen import LoadGen, StreamSpec
from .mesh import Proxy, config, listener
from .scenario_ingest import (
    WARM,
    acked,
    backlog_empty,
    exactly_once,
    ingest_route,
    ingest_state,
    nothing_unknown,
    sent_ids,
    warm_up,
)

TABLE = "chaos_shards"
RING = Rendezvous(["0", "1", "2"])


def _rows(url: str) -> list[str]:
    """The event keys stored on one shard ([] while it is down or before its table exists)."""
    from testbed.stores import sql

    try:
        rows = asyncio.run(sql(url, f"SELECT event_id FROM {TABLE}"))
    except Exception:  # down, or no table yet
        return []
    return [key_of(r["event_id"]) or r["event_id"] for r in rows]


def shard_kill(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("shard-kill", SCENARIOS[0].title)
    from testbed.postgres import local_postgres_servers, postgres_bin

    if postgres_bin() is None:
        result.skipped = "PostgreSQL binaries (initdb, pg_ctl under /usr/lib/postgresql/*/bin) are not installed"
        return result
    work = ctx.dir("shard-kill")
    with local_postgres_servers(3) as servers:
        urls = [s.url for s in servers]
        sink = {"type": "postgres", "shards": urls, "shard_by": "id", "table": TABLE, "pool_size": 2}
        delivery = {"backoff_initial_ms": 50, "backoff_max_ms": 400, "timeout_ms": 1000}
        route = ingest_route("fsync", "fsync", work / "log.db", sink, delivery=delivery)
        proxy = Proxy(work / "proxy.yaml", config([listener("main", [route])], [], drain_timeout_ms=5000))
        try:
            specs = [StreamSpec("fsync", "fsync", "/fsync", "F", connections=16, rate=300, id_field="event.key")]
            warm_up(proxy, specs)  # every shard's pool is open: part of the floor
            floor = proxy.floor()
            load = LoadGen(proxy.address(), specs)
            outages: list[dict[str, Any]] = []

            def down() -> None:
                servers[1].kill()
                outages.append({"at_s": round(load.elapsed, 2), "live_rows_at_kill": [len(_rows(urls[0])),
                                                                                     len(_rows(urls[2]))]})

            def up() -> None:
                outage = outages[-1]
                try:  # the live shards took events while shard 1 was down
                    live = wait_until(lambda: (n := [len(_rows(urls[0])), len(_rows(urls[2]))]) and all(
                        a > b for a, b in zip(n, outage["live_rows_at_kill"], strict=True)) and n, 10,
                        "the live shards to store events during the outage")
                    outage["live_rows_before_restart"] = live
                finally:
                    servers[1].start()
                    restarted = time.monotonic()
                    outage["seconds"] = round(load.elapsed - outage["at_s"], 2)
                    wait_until(lambda: ingest_state(proxy)["fsync"]["sink"]["shards"][1]["up"], 15,
                               "shard 1 taking events again")
                    outage["resumed_s_after_restart"] = round(time.monotonic() - restarted, 2)

            steps = fault_cycles(1 if ctx.short else 3, 0.2, 0.4, ("shard 1 killed (pg_ctl stop -m immediate)",
                                                                   down), ("shard 1 restarted", up))
            timeline = Timeline()
            started = time.monotonic()
            drive(ctx, load, planned_requests(specs, ctx.seconds(5, 40)), steps, timeline)
            result.figures["load_seconds"] = round(time.monotonic() - started, 2)
            result.figures["timeline"] = timeline.events
            result.figures["outages"] = outages
            ctx.status("waiting for the backlog to drain into the shards")
            ended = time.monotonic()
            wait_until(lambda: backlog_empty(proxy), 60, "the ingest backlog to drain")
            result.figures["drained_s_after_load"] = round(time.monotonic() - ended, 2)
            state = ingest_state(proxy)["fsync"]
            per_shard = [[i for i in _rows(url) if not i.startswith(WARM)] for url in urls]
            stored = [i for rows in per_shard for i in rows]
            sent = sent_ids(load, "fsync")
            exactly_once(result, "fsync", stored, acked(load, "fsync"), "every acknowledged (202) event")
            nothing_unknown(result, "fsync", stored, sent)
            wrong = sum(1 for index, rows in enumerate(per_shard) for i in rows if RING.place(i.encode()) != index)
            result.check("every event on the shard its key hashes to", wrong == 0, f"{wrong} on another shard")
            live_ok = all("live_rows_before_restart" in o for o in outages)
            result.check("the live shards kept storing during each outage", live_ok and bool(outages),
                          f"{len(outages)} outage(s)")
            figures = stream_figures(load.streams["fsync"], Sides(upstream_ids=Counter(stored)))
            result.figures["streams"] = {"fsync": figures}
            result.check("fsync: every event accepted during the outages", figures["ok"] == figures["sent"],
                         f"{figures['ok']}/{figures['sent']} answered 202; failures {figures['failed']}")
            dead = state.get("log", {}).get("dead_letters")
            result.check("nothing dead-lettered", dead == 0, f"{dead} dead letter(s)")
            result.figures["ingest"] = {
                "acked": len(acked(load, "fsync")), "stored": len(stored), "per_shard": [len(r) for r in per_shard],
                "held": state.get("delivery", {}).get("held"), "dead_letters": dead,
                "shard_outages": [s.get("outages") for s in state.get("sink", {}).get("shards", [])]}
            ctx.status("settling")
            leak_checks(result, proxy, floor)
        finally:
            proxy.terminate()
    return result


SCENARIOS = [
    Scenario("shard-kill", "A shard of a sharded PostgreSQL sink crashes and comes back", 75, shard_kill),
]
