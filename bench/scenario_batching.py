"""Scenario `batching`: items/s and latency of a batch-friendly upstream, called one by one vs through meshbatch.

The upstream (`batch_upstream.py`) has ONE worker that serves calls one at a time, each costing a fixed 2 ms plus
20 us per item (waited, not burnt: see that module). Its bulk limit, the per-item cost alone, is 1 / 20 us =
50,000 items/s; one by one it cannot pass 1 / 2.02 ms = 495 items/s. Callers (wrk, closed loop, keep-alive,
16 / 64 / 256 connections) POST one small JSON item each: (a) straight to the upstream's `POST /item`, (b) to
`meshbatch run` whose route batches them into `POST /batch` (json-array codec). meshbatch runs on its own core;
the upstream and the load generators share the other. Then an open-loop run through meshbatch at half of the
batched saturation rate measured in the same round gives the latency meshbatch adds (see `_open_loop`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
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
    wait_ready,
)
from .peers import meshbatch_bin, versions
from .report import num, spread, table
from .runner import RunContext, ScenarioResult
from .wrk import DONE_LUA, run_wrk

NAME = "batching"
SUMMARY = "microbatching: items/s and latency into a 2 ms + 20 us/item single-worker upstream, direct vs meshbatch"
ORDER = 20
TARGETS = ("direct", "meshbatch")
ITEM = '{"id": 42, "sku": "A-1001", "qty": 3}'
UPSTREAM = Path(__file__).with_name("batch_upstream.py")
POST_LOADGEN = Path(__file__).with_name("post_loadgen.py")


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"comma-separated integers: {text}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"positive integers: {text}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=_ints, default=None, help="callers per run (16,64,256; --quick 64)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per closed-loop run (5; --quick 2)")
    parser.add_argument("--open-duration", type=float, default=None, help="seconds per open-loop run (5; --quick 2)")
    parser.add_argument("--base-ms", type=float, default=2.0, help="upstream: fixed cost per call")
    parser.add_argument("--per-item-us", type=float, default=20.0, help="upstream: cost per item")
    parser.add_argument("--max-items", type=int, default=64, help="batch: max_items")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batch: max_wait_ms")
    parser.add_argument("--max-in-flight", type=int, default=2, help="batch: max_in_flight (1 or 2 for one worker)")


def _settings(ctx: RunContext) -> dict[str, Any]:
    args = ctx.args
    return {
        "concurrency": args.concurrency or ([64] if ctx.quick else [16, 64, 256]),
        "seconds": args.duration or (2.0 if ctx.quick else 5.0),
        "open_seconds": args.open_duration or (2.0 if ctx.quick else 5.0),
        "warmup_s": 0 if ctx.quick else 1,
        "repeat": ctx.repeat,
        "upstream": {"base_ms": args.base_ms, "per_item_us": args.per_item_us, "workers": 1,
                     "cost": "waited (timer sleep + loop poll to the exact end), not burnt"},
        "batch": {"max_items": args.max_items, "max_wait_ms": args.max_wait_ms, "max_in_flight": args.max_in_flight,
                  "codec": "json-array", "upstream_path": "/batch"},
        "item": ITEM,
        "bulk_limit_items_per_s": 1e6 / args.per_item_us,
        "one_by_one_limit_items_per_s": 1000 / (args.base_ms + args.per_item_us / 1000),
    }


# ---------------------------------------------------------------- processes


def _config(workdir: Path, port: int, admin: int, upstream: int, batch: dict[str, Any]) -> Path:
    config = {
        "admin": {"listen": f"{LOOPBACK}:{admin}"},
        "listeners": [{"name": "bench", "listen": f"{LOOPBACK}:{port}", "routes": [
            {"name": "items", "match": {"path_prefix": "/item", "methods": ["POST"]}, "cluster": "upstream",
             "timeout_ms": 10_000, "batch": batch}]}],
        "clusters": [{"name": "upstream", "endpoints": [f"{LOOPBACK}:{upstream}"]}],
    }
    path = workdir / "batching.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _start_upstream(workdir: Path, cores: CorePlan, settings: dict[str, Any]) -> tuple[Service, int]:
    port = free_port()
    up = settings["upstream"]
    argv = [*cores.prefix("load"), sys.executable, str(UPSTREAM), "--port", str(port),
            "--base-ms", str(up["base_ms"]), "--per-item-us", str(up["per_item_us"])]
    service = Service("batch-upstream", argv, workdir)
    try:
        wait_ready(service, port, b"ok")
    except BaseException:
        service.stop()
        raise
    return service, port


def _start_meshbatch(workdir: Path, cores: CorePlan, upstream: int, settings: dict[str, Any]) -> tuple[Service, int]:
    port, admin = free_port(), free_port()
    config = _config(workdir, port, admin, upstream, settings["batch"])
    service = Service("meshbatch-batching", [*cores.prefix("proxy"), meshbatch_bin(), "run", "--config",
                                             str(config)], workdir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not service.alive():
            raise BenchError(f"meshbatch exited before it was ready:\n{service.log_tail()}")
        try:
            if http_get(admin, "/ready")[0] == 200:
                return service, port
        except OSError:
            pass
        time.sleep(0.05)
    service.stop()
    raise BenchError(f"meshbatch not ready within 30s:\n{service.log_tail()}")


def _upstream(port: int, path: str) -> dict[str, Any]:
    method = "POST" if path == "/reset" else "GET"
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", method=method, data=b"" if method == "POST"
                                     else None)
    with urllib.request.urlopen(request, timeout=5) as answer:
        data: dict[str, Any] = json.load(answer)
    return data


def _post_script(workdir: Path) -> Path:
    path = workdir / "batching_post.lua"
    path.write_text('wrk.method = "POST"\n'
                    f"wrk.body = '{ITEM}'\n"
                    'wrk.headers["Content-Type"] = "application/json"\n' + DONE_LUA)
    return path


# ---------------------------------------------------------------- runs


def _closed(wrk: str, target: str, port: int, up_port: int, callers: int, settings: dict[str, Any],
            cores: CorePlan, script: Path, mesh_pids: list[int]) -> dict[str, Any]:
    if settings["warmup_s"]:
        run_wrk(wrk, port, connections=callers, seconds=settings["warmup_s"], cores=cores, script=script,
                path="/item")
    _upstream(up_port, "/reset")
    cpu_before = cpu_seconds(mesh_pids) if target == "meshbatch" else 0.0
    result = run_wrk(wrk, port, connections=callers, seconds=settings["seconds"], cores=cores, script=script,
                     path="/item")
    cpu = cpu_seconds(mesh_pids) - cpu_before if target == "meshbatch" else None
    stats = _upstream(up_port, "/stats")
    calls = int(stats["calls"])
    return {
        "target": target, "concurrency": callers, "items_per_s": result.rps, "requests": result.requests,
        "errors": result.errors, "p50_ms": result.p50_ms, "p90_ms": result.p90_ms, "p99_ms": result.p99_ms,
        "max_ms": result.max_ms, "upstream_calls": calls, "upstream_items": int(stats["items"]),
        "mean_batch_size": stats["items"] / calls if calls else None,
        "upstream_service_ms": stats["service_ms"], "upstream_lock_wait_ms": stats["lock_wait_ms"],
        "meshbatch_cpu_us_per_item": round(cpu / max(1, result.requests) * 1e6, 1) if cpu is not None else None,
    }


def _open_loop(target: str, port: int, up_port: int, rate: float, settings: dict[str, Any],
               cores: CorePlan) -> dict[str, Any]:
    """One fixed-rate run; "added" p99 = the callers' p99 minus the p99 of the upstream's own call service time
    (the work itself, measured in the upstream, lock wait excluded) over the same run. So everything that is not
    the upstream computing is charged to the path: batching hold, waiting for the other batch in flight at the
    single worker, proxying, the load generator. The direct path cannot run at meshbatch's rate (it saturates at
    ~495 items/s), so a like-for-like direct run at that rate does not exist; the direct open-loop run is at half
    of *its* own saturation, for reference, with the same subtraction."""
    _upstream(up_port, "/reset")
    seconds = settings["open_seconds"]
    argv = [*cores.prefix("load"), sys.executable, str(POST_LOADGEN), "--port", str(port), "--path", "/item",
            "--rate", f"{rate:.1f}", "--duration", str(seconds), "--warmup", "1", "--max-conns", "512",
            "--body", ITEM]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"open-loop load did not finish within {seconds + 60:.0f}s") from exc
    if done.returncode != 0:
        raise BenchError(f"open-loop load exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    stats = _upstream(up_port, "/stats")
    calls = int(stats["calls"])
    service_p99 = stats["service_ms"]["p99"]
    p99 = result["latency_ms"]["p99"]
    return {
        "target": target, "rate": rate, "achieved_items_per_s": result["achieved_rps"], "ok": result["ok"],
        "errors": result["errors"], "error_reasons": result["error_reasons"], "latency_ms": result["latency_ms"],
        "send_lag_ms": result["send_lag_ms"], "upstream_service_ms": stats["service_ms"],
        "upstream_lock_wait_ms": stats["lock_wait_ms"],
        "mean_batch_size": stats["items"] / calls if calls else None,
        "added_p99_ms": p99 - service_p99 if service_p99 is not None else None,
        "cdf_ms": result["cdf_ms"],
    }


def run(ctx: RunContext) -> ScenarioResult:
    tools = require_tools(["wrk"])
    settings = _settings(ctx)
    cores = plan_cores()
    if not cores.pinned:
        ctx.note("warning: fewer than 2 usable cores or no taskset; running unpinned")
    concurrency: list[int] = settings["concurrency"]
    closed: list[dict[str, Any]] = []
    opened: list[dict[str, Any]] = []
    failures: list[str] = []
    ctx.begin(ctx.repeat * (len(concurrency) * len(TARGETS) + 2), "starting")
    with tempfile.TemporaryDirectory(prefix="meshbatch-batching-") as tmp:
        workdir = Path(tmp)
        script = _post_script(workdir)
        upstream, up_port = _start_upstream(workdir, cores, settings)
        mesh: Service | None = None
        try:
            mesh, mesh_port = _start_meshbatch(workdir, cores, up_port, settings)
            mesh_pids = process_tree(mesh.pid)
            ports = {"direct": up_port, "meshbatch": mesh_port}
            for round_no in range(ctx.repeat):
                order = list(TARGETS) if round_no % 2 == 0 else list(reversed(TARGETS))
                for callers in concurrency:
                    for target in order:
                        ctx.step(f"round {round_no + 1}: {target}, {callers} callers")
                        try:
                            measured = _closed(tools["wrk"], target, ports[target], up_port, callers, settings,
                                               cores, script, mesh_pids)
                            measured["round"] = round_no + 1
                            closed.append(measured)
                            if measured["errors"]:
                                failures.append(f"{target} {callers} callers round {round_no + 1}: "
                                                f"{measured['errors']} errors")
                        except BenchError as exc:
                            failures.append(f"{target} {callers} callers round {round_no + 1}: {exc}")
                        ctx.done()
                for target in order:
                    mine = [r["items_per_s"] for r in closed if r["round"] == round_no + 1 and r["target"] == target]
                    rate = max(mine) / 2 if mine else 0.0
                    ctx.step(f"round {round_no + 1}: {target} open loop at {rate:,.0f} items/s")
                    if rate > 0:
                        try:
                            measured = _open_loop(target, ports[target], up_port, rate, settings, cores)
                            measured["round"] = round_no + 1
                            opened.append(measured)
                            if measured["errors"]:
                                failures.append(f"{target} open loop round {round_no + 1}: "
                                                f"{measured['errors']} errors {measured['error_reasons']}")
                        except BenchError as exc:
                            failures.append(f"{target} open loop round {round_no + 1}: {exc}")
                    ctx.done()
        finally:
            if mesh is not None:
                mesh.stop()
            upstream.stop()
    data = _summarize(ctx, settings, closed, opened, failures, cores)
    return ScenarioResult(data=data, markdown=_markdown(data), failures=failures)


# ---------------------------------------------------------------- summary and report


def _summarize(ctx: RunContext, settings: dict[str, Any], closed: list[dict[str, Any]], opened: list[dict[str, Any]],
               failures: list[str], cores: CorePlan) -> dict[str, Any]:
    bulk = settings["bulk_limit_items_per_s"]
    by_conc: dict[str, Any] = {}
    for callers in settings["concurrency"]:
        entry: dict[str, Any] = {}
        for target in TARGETS:
            mine = [r for r in closed if r["concurrency"] == callers and r["target"] == target]
            entry[target] = {
                field: summarize([r[field] for r in mine if r[field] is not None])
                for field in ("items_per_s", "p50_ms", "p99_ms", "mean_batch_size")
            }
            entry[target]["x_bulk_limit"] = summarize([r["items_per_s"] / bulk for r in mine])
        paired = []
        for round_no in range(1, settings["repeat"] + 1):
            d = [r for r in closed if r["round"] == round_no and r["concurrency"] == callers
                 and r["target"] == "direct"]
            m = [r for r in closed if r["round"] == round_no and r["concurrency"] == callers
                 and r["target"] == "meshbatch"]
            if d and m:
                value = ratio(m[0]["items_per_s"], d[0]["items_per_s"])
                if value is not None:
                    paired.append(value)
        entry["meshbatch_x_direct"] = summarize(paired)
        by_conc[str(callers)] = entry
    open_summary: dict[str, Any] = {}
    for target in TARGETS:
        mine = [r for r in opened if r["target"] == target]
        open_summary[target] = {
            "rate": summarize([r["rate"] for r in mine]),
            "p50_ms": summarize([r["latency_ms"]["p50"] for r in mine]),
            "p99_ms": summarize([r["latency_ms"]["p99"] for r in mine]),
            "upstream_service_p99_ms": summarize([r["upstream_service_ms"]["p99"] for r in mine
                                                  if r["upstream_service_ms"]["p99"] is not None]),
            "added_p99_ms": summarize([r["added_p99_ms"] for r in mine if r["added_p99_ms"] is not None]),
            "mean_batch_size": summarize([r["mean_batch_size"] for r in mine if r["mean_batch_size"] is not None]),
        }
    top = str(max(settings["concurrency"]))
    ratio_top = by_conc[top]["meshbatch_x_direct"]["median"]
    added = open_summary["meshbatch"]["added_p99_ms"]["median"]
    added_bar = settings["batch"]["max_wait_ms"] + 2.0
    bars = {
        "concurrency": int(top),
        "throughput_ratio": ratio_top, "throughput_bar": 10.0,
        "throughput_ok": ratio_top is not None and ratio_top >= 10.0 if int(top) >= 256 else None,
        "added_p99_ms": added, "added_p99_bar_ms": added_bar,
        "added_p99_ok": added is not None and added <= added_bar,
    }
    return {
        "scenario": NAME, "mode": "quick" if ctx.quick else "full", "settings": settings, "failures": failures,
        "pinned": cores.describe(), "targets": list(TARGETS),
        "closed_loop": {"by_concurrency": by_conc, "runs": closed},
        "open_loop": {"summary": open_summary, "runs": opened},
        "bars": bars, "machine": machine_facts(versions({"wrk": find_wrk()})),
    }


def find_wrk() -> str:
    return require_tools(["wrk"])["wrk"]


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("**met**" if ok else "**NOT met**")


def _markdown(data: dict[str, Any]) -> str:
    s = data["settings"]
    bars = data["bars"]
    up, batch = s["upstream"], s["batch"]
    rows = []
    for callers, entry in data["closed_loop"]["by_concurrency"].items():
        for target in TARGETS:
            e = entry[target]
            rows.append([callers, target, spread(e["items_per_s"], 0),
                         spread(entry["meshbatch_x_direct"], 1) if target == "meshbatch" else "1",
                         spread(e["x_bulk_limit"], 3), spread(e["p50_ms"], 2), spread(e["p99_ms"], 2),
                         spread(e["mean_batch_size"], 1)])
    open_rows = []
    for target in TARGETS:
        o = data["open_loop"]["summary"][target]
        open_rows.append([target, spread(o["rate"], 0), spread(o["p50_ms"], 2), spread(o["p99_ms"], 2),
                          spread(o["upstream_service_p99_ms"], 2), spread(o["added_p99_ms"], 2),
                          spread(o["mean_batch_size"], 1)])
    mode = "quick smoke run" if data["mode"] == "quick" else "full"
    lines = [
        f"## batching ({mode}, {s['repeat']} round(s), medians [min-max])",
        "",
        f"Upstream: ONE worker, calls served one at a time, each {num(up['base_ms'])} ms + "
        f"{num(up['per_item_us'], 0)} us/item, the cost {up['cost']} (it stands for work done elsewhere, and the "
        "upstream shares a core with the load generators, so burning CPU would measure contention instead). "
        f"Bulk limit (per-item cost alone): {num(s['bulk_limit_items_per_s'], 0)} items/s; one by one: "
        f"{num(s['one_by_one_limit_items_per_s'], 0)} items/s.",
        f"meshbatch route: max_items {batch['max_items']}, max_wait_ms {num(batch['max_wait_ms'], 1)}, "
        f"max_in_flight {batch['max_in_flight']}, codec json-array to /batch.",
        "",
        f"- items/s through meshbatch vs direct at {bars['concurrency']} callers: "
        f"{num(bars['throughput_ratio'], 1)}x (bar >= 10x): {_verdict(bars['throughput_ok'])}",
        f"- added p99 at half of batched saturation: {num(bars['added_p99_ms'])} ms "
        f"(bar <= max_wait_ms + 2 = {num(bars['added_p99_bar_ms'], 1)} ms): {_verdict(bars['added_p99_ok'])}",
        "",
        f"Closed loop: wrk, keep-alive, one JSON item per POST, {num(s['seconds'], 0)} s per run after "
        f"{s['warmup_s']} s warm-up; mean batch size = upstream items / upstream calls over the run.",
        "",
        table(["callers", "target", "items/s", "x direct", "x bulk limit", "p50 ms", "p99 ms", "mean batch"], rows),
        "",
        f"Open loop: `post_loadgen.py` at half of each target's best closed-loop items/s in the same round, "
        f"{num(s['open_seconds'], 0)} s. Added p99 = callers' p99 minus the p99 of the upstream's own call service "
        "time in the same run (the work itself; waiting for the single worker is charged to the path). The direct "
        "path cannot sustain meshbatch's rate, so its row is at half of its own saturation, for reference.",
        "",
        table(["target", "rate items/s", "p50 ms", "p99 ms", "upstream service p99 ms", "added p99 ms",
               "mean batch"], open_rows),
    ]
    if data["failures"]:
        lines += ["", *(f"- failed: {f}" for f in data["failures"])]
    return "\n".join(lines)


def plot(data: dict[str, Any], out_dir: Path) -> list[Path]:
    from matplotlib.figure import Figure

    colors = {"direct": "#888888", "meshbatch": "#e8590c"}
    by_conc = data["closed_loop"]["by_concurrency"]
    xs = [int(c) for c in by_conc]
    fig = Figure(figsize=(11, 4.2))
    ax_t, ax_l = fig.subplots(1, 2)
    for target in TARGETS:
        values = [by_conc[str(c)][target]["items_per_s"]["median"] or 0 for c in xs]
        ax_t.plot(xs, values, "o-", color=colors[target], label=target)
        for field, style in (("p50_ms", "--"), ("p99_ms", "-")):
            lat = [by_conc[str(c)][target][field]["median"] or 0 for c in xs]
            ax_l.plot(xs, lat, style, marker="o", color=colors[target], label=f"{target} {field[:3]}")
    s = data["settings"]
    ax_t.axhline(s["bulk_limit_items_per_s"], color="#2b8a3e", linestyle=":", label="bulk limit (20 us/item)")
    ax_t.axhline(s["one_by_one_limit_items_per_s"], color="#555555", linestyle=":", label="one-by-one limit")
    for ax in (ax_t, ax_l):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("concurrent callers (closed loop)")
        ax.legend(fontsize=8)
    ax_t.set_ylabel("items/s (median)")
    ax_t.set_title("throughput vs concurrency")
    ax_l.set_ylabel("latency ms (median)")
    ax_l.set_title("latency vs concurrency (p50 dashed, p99 solid)")
    fig.suptitle(f"batching: single-worker upstream {s['upstream']['base_ms']} ms + {s['upstream']['per_item_us']} "
                 f"us/item, max_items {s['batch']['max_items']}, {s['repeat']} round(s)")
    fig.tight_layout()
    path = out_dir / "batching.png"
    fig.savefig(path, dpi=110)
    return [path]
