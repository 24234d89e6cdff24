"""`nats-node-kill`: ingestion on a 3-node JetStream cluster under node failures.

A 3-node NATS cluster of the scenario's own (testbed/nats_cluster.py: Debian's `nats-server`, loopback ports,
its own store directories) holds one stream with `replicas: 3`; three meshbatch replicas (real `meshbatch run`
processes) accept events on it (`ack: fsync`) and deliver them to one PostgreSQL table. Under steady load spread
over the three replicas: one NATS node (not the stream's leader) is SIGKILLed and started again, then the
stream's leader, then one meshbatch replica (its leased, unacknowledged events are redelivered once the
consumer's ack wait expires). `--short` kills the leader and the meshbatch replica only.

Checks: every 202 is stored exactly once; nothing stored that was not sent; requests refused (anything but a
202 from a live replica) for at most `REFUSAL_BOUND_S` after each NATS kill, or after a leader's kill the
election the scenario watches and `ELECTION_SLACK_S`, and only requests whose deadline passed before the new
leader was elected; delivery resumes (the sink grows again) within `RESUME_BOUND_S`; every replica still answers
and its backlog drains (none hangs).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import Counter
from typing import Any

from meshbatch.ingest.record import key_of
from testbed.fleet import wait_port_free

from .common import ChaosError, Context, Scenario, ScenarioResult, wait_until
from .mesh import Proxy, config, listener
from .scenario_ingest import exactly_once, postgres_reachable
from .upstream import free_port

# A leader's loss: the followers notice it missing (Raft election timeouts of the server) and elect a new one;
# meanwhile appends wait (retried) and only those whose deadline passes are refused. The election took 5.3 s on
# the quiet 2-core machine, 8.5-9 s on a busy one (nats-py alone, docs/ingestion.md): the bound is the longer of
# REFUSAL_BOUND_S and the election watched + ELECTION_SLACK_S, and a refusal the election does not explain fails.
REFUSAL_BOUND_S = 6.0
TIMEOUT_MS = 8000  # the route's
RESUME_BOUND_S = 15.0  # from a kill to the sink growing again (the consumer's ack wait included)
ACK_WAIT_MS = 3000
RATE = 120.0
DRAIN_S = 60.0


def _cluster() -> Any:
    from testbed.nats_cluster import NatsCluster, nats_server

    return NatsCluster, nats_server


class SinkWatch:
    """The PostgreSQL table's row count, sampled every 0.2 s: when delivery stalled and resumed."""

    def __init__(self, url: str, table: str) -> None:
        self.url, self.table = url, table
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def loop() -> None:
            import asyncpg

            conn = await asyncpg.connect(self.url)
            try:
                while not self._stop.is_set():
                    try:
                        n = await conn.fetchval(f"SELECT count(*) FROM {self.table}")
                    except asyncpg.UndefinedTableError:
                        n = 0
                    self.samples.append((time.monotonic(), int(n)))
                    await asyncio.sleep(0.2)
            finally:
                await conn.close()

        asyncio.run(loop())

    def start(self) -> SinkWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def resumed_after(self, at: float) -> float | None:
        """Seconds from `at` to the first sample whose count exceeds the count some 0.5 s after `at` (events in
        flight at the fault may still land); None if the sink never grew again."""
        base = next((n for t, n in self.samples if t >= at + 0.5), None)
        if base is None:
            return None
        return next((round(t - at, 2) for t, n in self.samples if t >= at + 0.5 and n > base), None)


def route_config(nats_url: str, stream: str, pg_url: str, table: str) -> dict[str, Any]:
    return {"name": "events", "match": {"path_prefix": "/events"}, "timeout_ms": TIMEOUT_MS,
            "ingest": {"ack": "fsync",
                       "log": {"backend": "jetstream", "url": nats_url, "stream": stream, "replicas": 3,
                               "subject": f"chaos.{stream.lower()}", "ack_wait_ms": ACK_WAIT_MS},
                       "sink": {"type": "postgres", "url": pg_url, "table": table, "pool_size": 2},
                       "delivery": {"max_items": 64, "backoff_initial_ms": 50, "backoff_max_ms": 500,
                                    "timeout_ms": 3000}}}


def stored_ids(pg_url: str, table: str) -> list[str]:
    from testbed.stores import sql

    try:
        rows = asyncio.run(sql(pg_url, f"SELECT event_id FROM {table}"))
    except Exception as exc:
        if "does not exist" in str(exc):
            return []
        raise
    return [key_of(r["event_id"]) or r["event_id"] for r in rows]


def backlog(proxy: Proxy) -> int | None:
    try:
        state = proxy.json("/ingest")["ingest"]["events"]
    except (OSError, KeyError, ValueError):
        return None
    return int(state["log"]["backlog"]) + int(state["log"].get("leased", 0))


def node_kill(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("nats-node-kill", SCENARIOS[0].title)
    cluster_class, binary = _cluster()
    from testbed.stores import PG_URL, sql

    if binary() is None:
        result.skipped = "nats-server is not installed (apt-get install nats-server)"
        return result
    if not postgres_reachable(PG_URL):
        result.skipped = f"PostgreSQL is not reachable at {PG_URL} (MESHBATCH_PG_URL)"
        return result
    from testbed.ingest_load import ELECTION_SLACK_S, IngestLoad

    work = ctx.dir("nats-node-kill")
    token = secrets.token_hex(4)
    stream, table = f"MBCHAOS_{token.upper()}", f"chaos_nats_{token}"
    ctx.status("starting a 3-node NATS cluster")
    cluster = cluster_class(work / "nats").start()
    proxies: list[Proxy] = []
    watch: SinkWatch | None = None
    load: IngestLoad | None = None
    try:
        ports = [free_port() for _ in range(3)]
        configs = []
        for i, port in enumerate(ports):
            cfg = config([listener("main", [route_config(cluster.url, stream, PG_URL, table)])], [],
                         drain_timeout_ms=5000)
            cfg["listeners"][0]["listen"] = f"127.0.0.1:{port}"
            configs.append(cfg)
            proxies.append(Proxy(work / f"replica{i}.yaml", cfg))
        cluster.wait_quorum(stream)
        watch = SinkWatch(PG_URL, table).start()
        load = IngestLoad([f"http://127.0.0.1:{p}/events" for p in ports], rate=RATE).start()
        faults: list[dict[str, Any]] = []
        phase = ctx.seconds(4.0, 8.0)

        def pause(seconds: float) -> None:  # steady load between faults, by the requests answered
            ctx.status(f"load for {seconds:g} s")
            target = len(load.records) + int(RATE * seconds)
            wait_until(lambda: load.answered >= target, 10 * seconds + 30, "the load to progress", interval=0.1)

        def kill_node(which: str) -> None:
            info = cluster.wait_quorum(stream)
            leader = info["leader"]
            node = cluster.node(leader) if which == "leader" else next(
                n for n in cluster.nodes if n.name != leader)
            ctx.status(f"SIGKILL NATS node {node.name} ({which})")
            at = cluster.kill(node)
            # a leader's loss: the load goes on while the stream elects another (the refusals it explains are
            # those of requests whose deadline passed before then)
            elected = cluster.wait_new_leader(stream, node.name) if which == "leader" else at
            pause(phase)
            ctx.status(f"restart NATS node {node.name}")
            cluster.start_node(node)
            cluster.wait_quorum(stream)
            faults.append({"fault": f"NATS {which} {node.name} SIGKILLed", "at": at, "back": time.monotonic(),
                           "elected": elected})

        def kill_replica(i: int) -> None:
            ctx.status(f"SIGKILL meshbatch replica {i}")
            at = time.monotonic()  # before the kill: requests in flight to it belong to this fault
            proxies[i].kill()
            wait_port_free(ports[i])
            proxies[i] = Proxy(work / f"replica{i}.yaml", configs[i])
            faults.append({"fault": f"meshbatch replica {i} SIGKILLed", "at": at, "back": time.monotonic(),
                           "replica": True})

        started = time.monotonic()
        pause(phase)
        if not ctx.short:
            kill_node("follower")
            pause(phase)
        kill_node("leader")
        pause(phase)
        kill_replica(1)
        pause(phase)
        load.stop()
        result.figures["load_seconds"] = round(time.monotonic() - started, 2)
        ctx.status("waiting for every replica's backlog to drain")
        acked = load.acked()
        try:
            wait_until(lambda: all(backlog(p) == 0 for p in proxies) and acked <= set(
                stored_ids(PG_URL, table)), DRAIN_S, "every acknowledged event in the sink", interval=0.5)
            drained = True
        except ChaosError:  # what is missing is told by the checks below
            drained = False
            result.figures["logs_after"] = [_log_state(p) for p in proxies]
            left = {**(cluster.stream_cluster(stream) or {}), **cluster.leftovers(stream)}
            in_sink = set(stored_ids(PG_URL, table))
            held = [key_of(i) or i for _, i in left.get("held", [])]
            left["held_in_sink"] = sum(1 for h in held if h in in_sink)
            left["held_acknowledged"] = sum(1 for h in held if h in acked)
            result.figures["stream_after"] = left
            result.notes += [f"replica {i} stderr (last lines):\n" + "\n".join(p.process.stderr.splitlines()[-15:])
                             for i, p in enumerate(proxies)]
        left = cluster.leftovers(stream, limit=0)
        result.figures["stream_messages_left"] = left.get("messages")  # acknowledged by the consumer, still held
        result.check(f"every replica's backlog drained within {DRAIN_S:g} s", drained,
                     f"backlogs {[backlog(p) for p in proxies]}")
        watch.stop()
        stored = stored_ids(PG_URL, table)
        exactly_once(result, "events", stored, acked, "every acknowledged (202) event")
        unknown = set(stored) - load.sent_keys()
        result.check("nothing stored that was not sent", not unknown, f"{len(unknown)} unknown id(s)")
        result.figures["requests"] = {"sent": len(load.records), "statuses": load.statuses(), "acked": len(acked),
                                      "stored": len(stored), "stored_twice": sum(
                                          1 for n in Counter(stored).values() if n > 1)}
        for k, fault in enumerate(faults):
            until = faults[k + 1]["at"] if k + 1 < len(faults) else None
            figures = load.refusals(fault["at"], until)
            figures["resumed_after_s"] = watch.resumed_after(fault["at"])
            figures["down_s"] = round(fault["back"] - fault["at"], 2)
            fault.update(figures)
            name = fault["fault"]
            if not fault.get("replica"):
                election = fault["elected"] - fault["at"]
                figures["election_s"] = round(election, 2)
                bound = max(REFUSAL_BOUND_S, election + ELECTION_SLACK_S)
                result.check(f"{name}: refusals for at most {REFUSAL_BOUND_S:g} s, or the election and "
                             f"{ELECTION_SLACK_S:g} s", figures["refusing_s"] <= bound,
                             f"{figures['refused']}/{figures['sent']} refused over {figures['refusing_s']} s "
                             f"(statuses {figures['statuses']}; election {election:.2f} s); slowest 202 "
                             f"{figures['slowest_202_s']} s")
                early = load.unexplained(fault["at"], until, fault["elected"], TIMEOUT_MS / 1000)
                result.check(f"{name}: refused only when the stream had no leader until the deadline", not early,
                             f"refused while the stream had a leader (election {election:.2f} s): {early[:3]}")
            resumed = figures["resumed_after_s"]
            result.check(f"{name}: delivery resumes within {RESUME_BOUND_S:g} s",
                         resumed is not None and resumed <= RESUME_BOUND_S, f"sink growing again after {resumed} s")
        result.figures["faults"] = [{k: v for k, v in f.items() if k not in ("at", "back", "replica", "elected")}
                                    for f in faults]
        answers = [_final_answer(p) for p in proxies]
        result.check("every replica answers after the faults (none hangs)", all(a == 202 for a in answers),
                     f"final posts answered {answers}")
        result.notes.append("refused: answers other than 202 for requests sent after the fault and before the next "
                            "(a meshbatch replica's own kill is not counted: its callers see connection refused); "
                            "refusing_s: from the kill to the last refused answer; resumed_after_s: from the kill "
                            "to the sink growing again. stream_messages_left: messages the stream still holds "
                            "though its consumer has acknowledged them (nats-server 2.9's work-queue streams can keep "
                            "some after a replica's restart; not part of the backlog: nothing left to deliver).")
    finally:
        if load is not None:
            load.stop()
        if watch is not None:
            watch.stop()
        for p in proxies:
            if p.alive:
                p.terminate()
        cluster.stop()
        try:
            asyncio.run(sql(PG_URL, f"DROP TABLE IF EXISTS {table}"))
        except Exception as exc:  # pragma: no cover - cleanup only
            result.notes.append(f"could not drop {table}: {exc}")
    return result


def _log_state(proxy: Proxy) -> Any:
    try:
        return proxy.json("/ingest")["ingest"]["events"]["log"]
    except (OSError, KeyError, ValueError) as exc:
        return str(exc)


def _final_answer(proxy: Proxy) -> int:
    import httpx

    host, port = proxy.address()
    try:
        return httpx.post(f"http://{host}:{port}/events", json={"final": True}, timeout=5).status_code
    except httpx.HTTPError:
        return 0


SCENARIOS = [
    Scenario("nats-node-kill", "NATS cluster nodes and a meshbatch replica SIGKILLed under ingest load", 75,
             node_kill, ("nats-server", "postgresql")),
]
