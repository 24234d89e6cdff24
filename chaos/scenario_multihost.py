"""`multi-host`: a mesh over three hosts (network namespaces on a bridge, chaos/multihost.py) under network
faults. The producer on host A posts orders to A's sidecar, which sends them over mTLS to B's and C's sidecars
(found in etcd on one route, in DNS on the other); they batch them to their consumer, which stores each in
PostgreSQL before answering. Phases, each under steady load:

    baseline -> B: 100 ms latency and 5% loss on its outgoing packets (tc netem, or NFQUEUE where the kernel has
    no netem) -> B healed (and, when the loss had it ejected, back in A's balancing); C's link cut -> C's link
    restored -> C removed from etcd and DNS -> C announced again

Checks: every 200 the producer got is in PostgreSQL (nothing lost) and nothing unsent is; every order answered
200 outside the two network faults, >= 95% under them (the others answered 504, none left without an answer);
duplicate deliveries (a retried order stored by both hosts) <= retries; retries within the retry budget; C is
ejected while cut off; C takes nothing once withdrawn (after DISCOVERY_BOUND_S). Figures per phase: sent, 200s,
failures, p50/p99/max, which host answered; ejections, retries and budget refusals of A's sidecar.

Needs root (namespaces, veth, bridge) and etcd: refused with the reason otherwise, a failure under
MESHBATCH_REQUIRE_SERVICES (as in CI, which runs as root), else reported as skipped with that reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from typing import Any

from testbed.etcd import etcd_binary
from testbed.netns import unavailable

from .common import ChaosError, Context, Scenario, ScenarioResult, wait_until
from .multihost import BUDGET, CONSUMERS, INBOUND, MultiHost
from .producer import Producer
from .scenario_ingest import postgres_reachable

DISCOVERY_BOUND_S = 2.0  # etcd's watch is immediate; DNS answers live 1 s
MIN_OK_UNDER_FAULTS = 0.95  # the rest answered 504 (per-try timeouts whose retry the budget refused)
LATENCY, CUT = "b: 100 ms latency, 5% loss", "c: link cut"
FAULTS = (LATENCY, CUT)


def _rows(pg_url: str, table: str) -> list[dict[str, Any]]:
    from testbed.stores import sql

    return [dict(r) for r in asyncio.run(sql(pg_url, f"SELECT id, host, at, deliveries FROM {table}"))]


def _sql(pg_url: str, statement: str) -> None:
    from testbed.stores import sql

    asyncio.run(sql(pg_url, statement))


def _takes_traffic(mesh: MultiHost, host: str) -> bool:
    """Whether A's sidecar balances to `host` in both of its clusters (not ejected, not failing checks)."""
    a = mesh.sidecars["a"]
    text = a.metrics()
    address = f"{mesh.network.hosts[host].address}:{INBOUND}"
    return all(a.metric("meshbatch_upstream_endpoint_healthy", text, cluster=name, endpoint=address) == 1
               for name in ("consumers", "consumers-dns"))


def _settled(producer: Producer, since: float, host: str, n: int = 20) -> bool:
    """Whether the last `n` orders sent after `since` (time.monotonic) were all answered 200, some of them by `host`,
    on both paths: the mesh is whole again. A connection that lost packets keeps an inflated retransmission
    timeout for a while after the loss ends, and a request on it can outlast the per-try timeout."""
    done = [o for o in list(producer.records) if o.sent >= since and o.done]
    last = done[-n:]
    return (len(last) == n and all(o.status == 200 for o in last) and any(o.host == host for o in last)
            and len({o.path for o in last}) > 1)


def _a_metrics(mesh: MultiHost) -> dict[str, Any]:
    a = mesh.sidecars["a"]
    text = a.metrics()
    (mesh.folder / "sidecar-a.metrics").write_text(text)  # the last scrape, for a look after the run
    out: dict[str, Any] = {}
    for name in ("etcd", "dns"):
        out[name] = {"first": int(a.metric("meshbatch_route_attempts_total", text, route=name, kind="first")),
                     "retries": int(a.metric("meshbatch_route_attempts_total", text, route=name, kind="retry")),
                     "denied_by_budget": int(a.metric("meshbatch_retries_denied_total", text, route=name,
                                                      reason="budget"))}
    ejections: dict[str, int] = {}
    for cluster_name in ("consumers", "consumers-dns"):
        for host, h in mesh.network.hosts.items():
            n = a.metric("meshbatch_upstream_endpoint_ejections_total", text, cluster=cluster_name,
                         endpoint=f"{h.address}:{INBOUND}")
            if n:
                ejections[f"{cluster_name}/{host}"] = int(n)
    out["ejections"] = ejections
    return out


def multi_host(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("multi-host", SCENARIOS[0].title)
    reason = unavailable() or (None if etcd_binary() else "etcd is not installed (apt-get install etcd-server)")
    if reason is not None:  # refused; under MESHBATCH_REQUIRE_SERVICES (CI, as root) a failure, never a skip
        if os.environ.get("MESHBATCH_REQUIRE_SERVICES"):
            raise ChaosError(f"refused: {reason}")
        result.skipped = f"refused: {reason}"
        return result
    from testbed.stores import PG_URL

    if not postgres_reachable(PG_URL):
        result.skipped = f"PostgreSQL is not reachable at {PG_URL} (MESHBATCH_PG_URL)"
        return result
    table = f"chaos_multihost_{secrets.token_hex(4)}"
    from testbed.order_consumer import create_table_sql

    _sql(PG_URL, create_table_sql(table))
    work = ctx.dir("multi-host")
    mesh = MultiHost(work, PG_URL)
    producer: Producer | None = None
    try:
        ctx.status("building hosts a, b, c (namespaces, bridge, etcd, DNS, sidecars, consumers)")
        started = time.monotonic()
        mesh.start(table)
        result.figures["setup_s"] = round(time.monotonic() - started, 2)
        result.figures["setup_steps_s"] = mesh.timings
        if mesh.network.left_over:
            result.notes.append(f"removed leftovers of an earlier run: {mesh.network.left_over}")
        host, port = mesh.sidecars["a"].address()
        producer = Producer(mesh.network.hosts["a"].ns, f"http://{host}:{port}", ["/etcd/orders", "/dns/orders"],
                            rate=ctx.seconds(80, 120)).start()
        wait_until(lambda: producer.ok_on_every_path(10) or producer.error, 20,
                   "the first orders through the mesh on both routes")
        if producer.error:
            raise ChaosError(f"producer: {producer.error}")
        phases: list[dict[str, Any]] = []

        def phase(name: str, seconds: float, **facts: Any) -> None:
            ctx.status(name)
            producer.phase = name
            phases.append({"phase": name, "at": time.monotonic(), "wall": time.time(), **facts})
            time.sleep(seconds)  # steady load for the phase's length: the load, not a wait for a timer
            phases[-1]["sidecar_a"] = _a_metrics(mesh)  # counters at its end (an endpoint re-added starts at 0)

        result.figures["warm_up_s"] = round(time.monotonic() - started - result.figures["setup_s"], 2)
        warm = _a_metrics(mesh)
        phase("baseline", ctx.seconds(0.8, 10.0))
        how = mesh.network.impair("b", 100, 5)
        phase(LATENCY, ctx.seconds(1.2, 20.0), mechanism=how)
        mesh.network.clear("b")
        healed = time.monotonic()
        # B's loss may have had it ejected (three connects in a row lost to a dropped SYN), and A's connections to B
        # that lost packets answer late for a while (their retransmission timeouts grew): three per-try timeouts
        # on them eject B again. The cut starts once B takes traffic and the last orders all got 200, so that the
        # cut measures C's ejection and the retries to B, not a mesh whose only reachable endpoint sits out its
        # ejection (at most half of a cluster's endpoints are ejected: C stays in)
        wait_until(lambda: _takes_traffic(mesh, "b") and _settled(producer, healed, "b"), 20.0,
                   "B back in A's balancing after its loss, the last 20 orders answered 200", interval=0.1)
        mesh.network.cut("c")
        phase(CUT, ctx.seconds(2.5, 15.0))  # > the per-try timeout: C is ejected
        mesh.network.restore("c")
        phase("c: link restored", ctx.seconds(0.5, 10.0))
        mesh.withdraw("c")
        phase("c: removed from discovery", ctx.seconds(2.5, 15.0))  # > DISCOVERY_BOUND_S
        mesh.announce("c")
        phase("c: announced again", ctx.seconds(0.5, 10.0))
        producer.stop()
        ended = time.monotonic()
        result.figures["load_seconds"] = round(ended - phases[0]["at"], 2)
        if producer.error:
            raise ChaosError(f"producer: {producer.error}")
        metrics = phases[-1]["sidecar_a"]
        t0 = phases[0]["at"]
        (work / "orders.json").write_text(json.dumps([[r.id, r.phase, round(r.sent - t0, 3), round(
            r.done - r.sent, 3), r.status, r.host, r.detail] for r in producer.records]))
        rows = _rows(PG_URL, table)
        _account(result, producer, phases, rows, warm, metrics, ended)
    finally:
        if producer is not None:
            producer.stop()
        mesh.close()
        try:
            _sql(PG_URL, f"DROP TABLE IF EXISTS {table}")
        except Exception as exc:  # pragma: no cover - cleanup only
            result.notes.append(f"could not drop {table}: {exc}")
    return result


def _account(result: ScenarioResult, producer: Producer, phases: list[dict[str, Any]], rows: list[dict[str, Any]],
             warm: dict[str, Any], metrics: dict[str, Any], ended: float) -> None:
    stored = {r["id"]: r for r in rows}
    records = [r for r in producer.records if r.phase != "warm-up"]
    sent_ids = {r.id for r in producer.records}
    acked = [r for r in producer.records if r.status == 200]
    lost = [r.id for r in acked if r.id not in stored]
    unknown = [i for i in stored if i not in sent_ids]
    result.check("nothing lost: every 200 in PostgreSQL", not lost, f"{len(lost)} of {len(acked)} missing")
    result.check("nothing stored that was not sent", not unknown, f"{len(unknown)} unknown id(s)")
    ok = sum(1 for r in records if r.status == 200)
    calm = [r for r in records if r.phase not in FAULTS]
    failed = [f"{r.phase}: {r.status}" for r in calm if r.status != 200]
    result.check("every order answered 200 outside the network faults (the withdrawal and return included)",
                 not failed, f"{len(failed)} failed: {failed[:3]}")
    under = [r for r in records if r.phase in FAULTS]
    under_ok = sum(1 for r in under if r.status == 200)
    result.check(f">= {MIN_OK_UNDER_FAULTS:.0%} answered 200 under latency and loss and under the link cut",
                 under_ok >= MIN_OK_UNDER_FAULTS * len(under), f"{under_ok}/{len(under)}")
    hung = sum(1 for r in records if r.status == 0)
    result.check("every order answered (none left without an answer)", hung == 0, f"{hung} without an answer")
    retries = sum(metrics[r]["retries"] for r in ("etcd", "dns"))
    first = sum(metrics[r]["first"] for r in ("etcd", "dns"))
    duplicates = sum(int(r["deliveries"]) - 1 for r in rows)
    result.check("duplicate deliveries <= retries", duplicates <= retries, f"{duplicates} / {retries}")
    seconds = ended - producer.records[0].sent  # the warm-up's requests and retries count too
    allowed = BUDGET["budget_percent"] / 100 * first + BUDGET["min_retries_per_second"] * seconds * 2
    result.check("retries within the retry budget", retries <= allowed,
                 f"{retries} retries for {first} first tries (budget {allowed:.0f} over {seconds:.1f} s, 2 clusters)")
    cut = [p["sidecar_a"]["ejections"] for p in phases if p["phase"] in (CUT, "c: link restored")]
    ejected_c = max((sum(n for k, n in e.items() if k.endswith("/c")) for e in cut), default=0)
    result.check("c ejected (outlier detection) while cut off", ejected_c >= 1, f"ejections {cut}")
    withdrawn = next(p for p in phases if p["phase"] == "c: removed from discovery")
    back = next(p for p in phases if p["phase"] == "c: announced again")
    quiet = (withdrawn["wall"] + DISCOVERY_BOUND_S, back["wall"])
    late = [r["id"] for r in rows if r["host"] == "c" and quiet[0] < r["at"] < quiet[1]]
    result.check(f"c takes nothing {DISCOVERY_BOUND_S:g} s after its removal from etcd and DNS", not late,
                 f"{len(late)} order(s) stored by c")
    per_phase = []
    before = {r: warm[r] for r in ("etcd", "dns")}
    for p in phases:
        counters = p.pop("sidecar_a")
        p["attempts"] = {r: {k: counters[r][k] - before[r][k] for k in before[r]} for r in before}
        p["ejections"] = counters["ejections"]
        before = {r: counters[r] for r in before}
        figures = producer.phase_figures(p["phase"])
        per_phase.append({"phase": p["phase"], **{k: v for k, v in p.items() if k not in ("phase", "at", "wall")},
                          **figures, "lost": sum(1 for r in acked if r.phase == p["phase"] and r.id not in stored)})
    result.figures["phases"] = per_phase
    result.figures["requests"] = {"sent": len(records), "ok": ok, "acked_with_warm_up": len(acked),
                                  "lost": len(lost), "stored": len(stored), "duplicate_deliveries": duplicates,
                                  "stored_by": {h: sum(1 for r in rows if r["host"] == h) for h in CONSUMERS}}
    result.figures["sidecar_a"] = metrics
    result.notes.append("Phases by send time; p50/p99/max over the 200s of the orders sent in the phase. "
                        "Retries and budget refusals from A's sidecar (meshbatch_route_attempts_total, "
                        "meshbatch_retries_denied_total{reason=budget}); ejections from "
                        "meshbatch_upstream_endpoint_ejections_total per cluster and host.")


SCENARIOS = [
    Scenario("multi-host", "Three hosts (network namespaces), mTLS sidecars, etcd and DNS discovery, under "
             "latency, loss, a link cut and a withdrawal", 80, multi_host, ("root", "etcd", "postgresql")),
]
