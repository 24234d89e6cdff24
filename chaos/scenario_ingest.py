"""Ingestion under faults, ack levels side by side (`fsync`: 202 once the event is in the log on disk;
`delivered`: 202 once the sink has stored it; `memory`, in `ingest-kill` only: 202 once the event is queued for
the log's next group commit):

- `ingest-kill`: the proxy is SIGKILLed mid-load (while the flusher delivers) and started again on the same port
  and log files; producers then retry, with the same idempotency key, every event that got no 202. `fsync` and
  `delivered`: every event acknowledged before the kill is in the sink exactly once; after the retries every
  event sent is, exactly once. `memory`: a kill loses only the events acknowledged shortly before it (those not
  yet in a completed commit: within `ACKED_LOSS_WINDOW` of the kill); nothing is stored twice, and after the
  retries every other event sent is stored exactly once.
- `sink-outage`: PostgreSQL goes away (a TCP relay in front of it is cut, every connection reset) and comes back.
  `fsync` keeps answering 202 (the log holds the backlog); `delivered` callers wait, then get 504 while the
  event stays in the log. Afterwards every admitted event (202 or 504) is in PostgreSQL exactly once, nothing
  dead-lettered.
"""

from __future__ import annotations

import asyncio
import bisect
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from meshbatch.ingest.record import key_of

from .accounting import Sides, stream_figures
from .common import ChaosError, Context, Scenario, ScenarioResult, wait_until
from .harness import Step, Timeline, drive, fault_cycles, leak_checks, planned_requests
from .loadgen import RESPONSE, LoadGen, StreamSpec
from .mesh import Proxy, config, listener
from .upstream import free_port

ROUTES = ("fsync", "delivered")
KILL_ROUTES = (*ROUTES, "memory")  # ingest-kill also exercises the weakest ack level
# A `memory` 202 is given when the event is queued for the next group commit, and a commit starts as soon as the
# previous one ends: an acknowledged event is on disk after at most two commits (a few ms each, some 100 ms on a
# busy disk). A kill may lose only events sent within this window before it (the send time bounds the 202 from
# below; the kill time is taken once the process is reaped, so the age is an upper bound).
ACKED_LOSS_WINDOW = 1.0


def ingest_route(name: str, ack: str, log: Path, sink: dict[str, Any], timeout_ms: int = 5000,
                 delivery: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "match": {"path_prefix": f"/{name}"}, "timeout_ms": timeout_ms,
            "ingest": {"ack": ack, "log": {"path": str(log)}, "sink": sink,
                       "delivery": {"max_items": 64, **(delivery or {})}}}


def ingest_streams(short: bool) -> list[StreamSpec]:
    return [StreamSpec("fsync", "fsync", "/fsync", "F", connections=16, rate=300, id_field="event.key"),
            StreamSpec("delivered", "delivered", "/delivered", "D", connections=32, rate=150, id_field="event.key")]


def kill_streams(short: bool) -> list[StreamSpec]:
    """ingest-kill's streams: sink-outage's two, and `memory` at the rate of `fsync`."""
    return [*ingest_streams(short), StreamSpec("memory", "memory", "/memory", "M", connections=16, rate=300,
                                               id_field="event.key")]


def acked(load: LoadGen, name: str) -> set[str]:
    stream = load.streams[name]
    return {stream.id(i) for i, (o, s) in enumerate(zip(stream.outcome, stream.status, strict=True))
            if o == RESPONSE and s == 202}


def sent_ids(load: LoadGen, name: str) -> set[str]:
    stream = load.streams[name]
    return {stream.id(i) for i in range(stream.total)}


def ingest_state(proxy: Proxy) -> dict[str, Any]:
    state: dict[str, Any] = proxy.json("/ingest")["ingest"]
    return state


def backlog_empty(proxy: Proxy) -> bool:
    try:
        state = ingest_state(proxy)
    except OSError:
        return False
    return all(r["log"]["backlog"] == 0 and not r["delivery"].get("in_flight") for r in state.values())


def retry(address: tuple[str, int], specs: list[StreamSpec], missing: dict[str, list[str]]) -> LoadGen:
    """The producers' retry: every id that got no 202, again with the same idempotency key."""
    again = LoadGen(address, [StreamSpec(s.name, s.route, s.path, s.tag, connections=s.connections, rate=0.0,
                                         id_field=s.id_field) for s in specs]).start()
    for name, ids in missing.items():
        again.resend(name, ids)
    total = sum(len(ids) for ids in missing.values())
    wait_until(lambda: again.settled() >= total, 60, "the producers' retries")
    again.stop()
    again.wait_idle(30)
    return again


WARM = "warm-"  # ids of the warm-up events (not part of the accounting)


def exactly_once(result: ScenarioResult, label: str, stored: list[str], expected: set[str], what: str) -> None:
    counts = Counter(stored)
    twice = sum(1 for n in counts.values() if n > 1)
    missing = expected - counts.keys()
    result.check(f"{label}: {what} in the sink exactly once", not missing and not twice,
                 f"{len(expected)} expected, {len(missing)} missing {sorted(missing)[:3]}, {twice} stored twice")


def nothing_unknown(result: ScenarioResult, label: str, stored: list[str], sent: set[str]) -> None:
    unknown = {i for i in stored if not i.startswith(WARM)} - sent
    result.check(f"{label}: nothing stored that was not sent", not unknown, f"{len(unknown)} unknown id(s)")


def warm_up(proxy: Proxy, specs: list[StreamSpec], n: int = 20) -> None:
    """A few events per route, delivered, so that lazily opened sink connections are part of the floor."""
    again = retry(proxy.address(), specs, {s.name: [f"{WARM}{s.name}-{i}" for i in range(n)] for s in specs})
    bad = sum(1 for s in again.streams.values() for st in s.status if st != 202)
    if bad:
        raise ChaosError(f"{bad} warm-up event(s) were not accepted")
    wait_until(lambda: backlog_empty(proxy), 20, "the warm-up events to be delivered")


# -- SIGKILL mid-ingestion ---------------------------------------------------------------------------------
def sqlite_ids(path: Path) -> list[str]:
    from testbed.stores import sqlite_rows

    rows: list[str] = sqlite_rows(path)
    return rows


def acked_lost(load: LoadGen, name: str, stored: set[str], kills: list[float]) -> dict[str, Any]:
    """The events that got a 202 and are not in the sink, each charged to the kill of the process that acknowledged
    it: the first kill after the request was sent (`kills`: when each killed process was reaped, on the clock of
    the streams' times, time.monotonic). Per kill: how many; over all: the largest age, kill time - send time (an
    upper bound of how long before the kill the 202 was given); `unexplained`: acknowledged by a process that was
    never killed."""
    stream = load.streams[name]
    per_kill = [0] * len(kills)
    ids: set[str] = set()
    unexplained: list[str] = []
    max_age = 0.0
    for seq, (o, s) in enumerate(zip(stream.outcome, stream.status, strict=True)):
        ident = stream.id(seq)
        if o != RESPONSE or s != 202 or ident in stored:
            continue
        ids.add(ident)
        k = bisect.bisect_right(kills, stream.sent[seq])
        if k == len(kills):
            unexplained.append(ident)
            continue
        per_kill[k] += 1
        max_age = max(max_age, kills[k] - stream.sent[seq])
    return {"per_kill": per_kill, "max_age_s": max_age, "ids": ids, "unexplained": unexplained}


def kill_restart(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("ingest-kill", SCENARIOS[0].title)
    work = ctx.dir("ingest-kill")
    port = free_port()
    sinks = {name: work / f"sink-{name}.db" for name in KILL_ROUTES}
    cfg = config([listener("main", [ingest_route(name, name, work / f"log-{name}.db",
                                                 {"type": "sqlite", "path": str(sinks[name])})
                                    for name in KILL_ROUTES])], [], drain_timeout_ms=5000)
    cfg["listeners"][0]["listen"] = f"127.0.0.1:{port}"
    proxies = [Proxy(work / "proxy.yaml", cfg)]
    acked_before_kill: dict[str, set[str]] = {}
    kill_times: list[float] = []  # time.monotonic() once each killed proxy was reaped (the clock of Stream times)
    try:
        floor = proxies[0].floor()
        specs = kill_streams(ctx.short)
        load = LoadGen(("127.0.0.1", port), specs)

        def kill() -> None:
            proxies[-1].kill()
            kill_times.append(time.monotonic())
            for name in KILL_ROUTES:  # the 202s given so far: with fsync and delivered every one must survive
                acked_before_kill.setdefault(name, set()).update(acked(load, name))
            proxies.append(Proxy(work / "proxy.yaml", cfg))  # same port, same log files

        kills = 1 if ctx.short else 4
        steps = [Step((i + 0.4) / kills, f"SIGKILL the proxy and start it again ({i + 1}/{kills})", kill)
                 for i in range(kills)]
        timeline = Timeline()
        started = time.monotonic()
        drive(ctx, load, planned_requests(specs, ctx.seconds(4, 40)), steps, timeline)
        result.figures["load_seconds"] = round(time.monotonic() - started, 2)
        result.figures["timeline"] = timeline.events
        proxy = proxies[-1]
        ctx.status("producers retry what got no 202")
        missing = {name: sorted(sent_ids(load, name) - acked(load, name)) for name in KILL_ROUTES}
        again = retry(("127.0.0.1", port), specs, missing)
        ctx.status("waiting for the log to drain")
        wait_until(lambda: backlog_empty(proxy), 30, "the ingest backlog to drain")
        state = ingest_state(proxy)
        stored = {name: sqlite_ids(sinks[name]) for name in KILL_ROUTES}
        sent_all = {name: sent_ids(load, name) for name in KILL_ROUTES}
        for name in KILL_ROUTES:
            sent = sent_all[name]
            lost = acked_lost(load, name, set(stored[name]), kill_times)
            if name == "memory":  # a kill may lose the latest 202s, nothing else
                age, unexplained = lost["max_age_s"], lost["unexplained"]
                result.check(f"{name}: acknowledged events lost only at a kill, each sent at most "
                             f"{ACKED_LOSS_WINDOW:g} s before it", not unexplained and age <= ACKED_LOSS_WINDOW,
                             f"{len(lost['ids'])} acknowledged and not stored: {lost['per_kill']} per kill, sent at "
                             f"most {1000 * age:.1f} ms before the kill; {len(unexplained)} acknowledged by a proxy "
                             f"that was never killed{f' {unexplained[:3]}' if unexplained else ''}")
                exactly_once(result, name, stored[name], sent - lost["ids"],
                             "after the producers' retries, every event sent but those acknowledged then lost")
            else:
                exactly_once(result, name, stored[name], acked_before_kill.get(name, set()),
                             "every event acknowledged before the kill")
                exactly_once(result, name, stored[name], sent, "after the producers' retries, every event sent")
            nothing_unknown(result, name, stored[name], sent)
            figures = stream_figures(load.streams[name], Sides(upstream_ids=Counter(stored[name])))
            # In flight when the proxy was SIGKILLed: no answer can come (not a broken promise, the process died);
            # their producers retried them below. Shown as `in_doubt_at_kill`, not as lost.
            in_doubt = figures["lost"]
            figures["lost"] = 0
            retried_ok = len(acked(again, name))
            result.figures.setdefault("streams", {})[name] = figures
            route = state.get(name, {})
            result.figures.setdefault("ingest", {})[name] = {
                "acked_before_kill": len(acked_before_kill.get(name, set())), "acked": len(acked(load, name)),
                "in_doubt_at_kill": in_doubt, "retried": len(missing[name]), "retried_acked": retried_ok,
                "stored": len(stored[name]), "dead_letters": route.get("log", {}).get("dead_letters"),
                "duplicates_ignored": route.get("sink", {}).get("duplicates_ignored"),
                "acked_lost": lost["per_kill"], "acked_lost_max_age_ms": round(1000 * lost["max_age_s"], 1)}
            result.check(f"{name}: every retry acknowledged", retried_ok == len(missing[name]),
                         f"{retried_ok} of {len(missing[name])} retried events got 202")
            result.check(f"{name}: nothing dead-lettered", route.get("log", {}).get("dead_letters") == 0,
                         f"{route.get('log', {}).get('dead_letters')} dead letter(s)")
        result.notes.append("closed_before_response: requests in flight when the proxy was SIGKILLed (in_doubt_at_kill "
                            "when the event had been stored); stored or not, the producers' retries with the same key "
                            "settle them exactly once. refused: sent while no proxy was listening. acked_lost: "
                            "events that got a 202 and are not in the sink, per kill (by design with ack memory "
                            "only: queued for a group commit that the kill prevented), with the largest time from "
                            "their send to the kill.")
        ctx.status("settling")
        leak_checks(result, proxy, floor, "restarted proxy")
    finally:
        for p in proxies:
            if p.alive:
                p.terminate()
    return result


# -- PostgreSQL goes away and comes back ---------------------------------------------------------------
def _postgres() -> tuple[str, Any, Any]:
    from testbed.relay import Relay
    from testbed.stores import PG_URL, sql

    return PG_URL, Relay, sql


def postgres_reachable(url: str) -> bool:
    import socket

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def sink_outage(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("sink-outage", SCENARIOS[1].title)
    pg_url, relay_class, sql = _postgres()
    if not postgres_reachable(pg_url):
        result.skipped = f"PostgreSQL is not reachable at {pg_url} (MESHBATCH_PG_URL)"
        return result
    work = ctx.dir("sink-outage")
    target = urlsplit(pg_url)
    relay = relay_class((target.hostname or "127.0.0.1", target.port or 5432))
    relay.up()
    via_relay = pg_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{relay.port}")
    tables = {name: f"chaos_{name}_{secrets.token_hex(4)}" for name in ROUTES}
    delivery = {"backoff_initial_ms": 50, "backoff_max_ms": 400, "timeout_ms": 1000}
    routes = [ingest_route(name, name, work / f"log-{name}.db",
                           {"type": "postgres", "url": via_relay, "table": tables[name], "pool_size": 2},
                           timeout_ms=1500 if name == "delivered" else 5000, delivery=delivery) for name in ROUTES]
    proxy = Proxy(work / "proxy.yaml", config([listener("main", routes)], [], drain_timeout_ms=5000))

    def ids(name: str) -> list[str]:
        try:
            rows = asyncio.run(sql(pg_url, f"SELECT event_id FROM {tables[name]}"))
            return [key_of(r["event_id"]) or r["event_id"] for r in rows]
        except Exception as exc:  # the table appears with the first delivery
            if "does not exist" in str(exc):
                return []
            raise

    try:
        specs = ingest_streams(ctx.short)
        warm_up(proxy, specs)  # the sink's connection pools are open: part of the floor
        floor = proxy.floor()
        load = LoadGen(proxy.address(), specs)
        outages: list[dict[str, Any]] = []

        def down() -> None:
            relay.down()
            outages.append({"at_s": round(load.elapsed, 2)})

        def up() -> None:
            try:  # the proxy has seen the outage (its flusher backs off) before the sink returns
                seen = wait_until(lambda: (s := ingest_state(proxy)) and all(
                    r["delivery"].get("consecutive_outages", 0) >= 1 for r in s.values()) and s, 10,
                    "the outage to be seen")
                outages[-1]["failed_deliveries"] = {n: r["delivery"]["consecutive_outages"] for n, r in seen.items()}
            finally:
                relay.up()
                outages[-1]["seconds"] = round(load.elapsed - outages[-1]["at_s"], 2)

        steps = fault_cycles(1 if ctx.short else 3, 0.2, 0.4, ("PostgreSQL unreachable", down),
                             ("PostgreSQL back", up))
        timeline = Timeline()
        started = time.monotonic()
        drive(ctx, load, planned_requests(specs, ctx.seconds(5, 40)), steps, timeline)
        result.figures["load_seconds"] = round(time.monotonic() - started, 2)
        result.figures["timeline"] = timeline.events
        result.figures["outages"] = outages
        ctx.status("waiting for the backlog to drain into PostgreSQL")
        wait_until(lambda: backlog_empty(proxy), 60, "the ingest backlog to drain")
        state = ingest_state(proxy)
        for name in ROUTES:
            stream = load.streams[name]
            stored = [i for i in ids(name) if not i.startswith(WARM)]
            sent = sent_ids(load, name)
            admitted = acked(load, name) | {stream.id(i) for i, (o, s) in enumerate(
                zip(stream.outcome, stream.status, strict=True)) if o == RESPONSE and s == 504}
            exactly_once(result, name, stored, acked(load, name), "every acknowledged (202) event")
            exactly_once(result, name, stored, admitted, "every admitted event (202, or 504 still in the log)")
            nothing_unknown(result, name, stored, sent)
            figures = stream_figures(stream, Sides(upstream_ids=Counter(stored)))
            result.figures.setdefault("streams", {})[name] = figures
            route = state.get(name, {})
            result.figures.setdefault("ingest", {})[name] = {
                "acked": len(acked(load, name)), "admitted": len(admitted), "stored": len(stored),
                "delivered": route.get("delivery", {}).get("delivered"),
                "dead_letters": route.get("log", {}).get("dead_letters"),
                "duplicates_ignored": route.get("sink", {}).get("duplicates_ignored")}
            result.check(f"{name}: nothing lost", figures["lost"] == 0 and figures["not_admitted"] == 0,
                         f"{figures['lost']} unanswered, {figures['not_admitted']} not admitted")
            result.check(f"{name}: nothing dead-lettered", route.get("log", {}).get("dead_letters") == 0,
                         f"{route.get('log', {}).get('dead_letters')} dead letter(s)")
        fsync = result.figures["streams"]["fsync"]
        result.check("fsync: every event accepted during the outage", fsync["ok"] == fsync["sent"],
                     f"{fsync['ok']}/{fsync['sent']} answered 202; failures {fsync['failed']}")
        ctx.status("settling")
        leak_checks(result, proxy, floor)
    finally:
        proxy.terminate()
        relay.down()
        for table in tables.values():
            try:
                asyncio.run(sql(pg_url, f"DROP TABLE IF EXISTS {table}"))
            except Exception as exc:  # pragma: no cover - cleanup only
                result.notes.append(f"could not drop {table}: {exc}")
    return result


SCENARIOS = [
    Scenario("ingest-kill", "The proxy is SIGKILLed during ingestion and restarted", 60, kill_restart),
    Scenario("sink-outage", "The database sink goes away and comes back", 70, sink_outage, ("postgresql",)),
]
