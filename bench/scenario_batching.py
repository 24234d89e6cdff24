"""Scenario `batching`: the same batch-friendly work served one at a time, through meshbatch, Ray Serve and BentoML.

Every system serves the work of `batch_work.py` with ONE worker: `fixed` (2 ms + 20 us per item, waited) and
`cpu` (a NumPy product per batch, computed). `direct` calls the HTTP upstream one item per call; `meshbatch`
batches single requests into the upstream's `POST /batch`; `ray-serve` and `bentoml` batch inside the framework
(`@serve.batch`, `@bentoml.api(batchable=True)`) with the same batch limits. Every process of the system under
test runs on one core, the load generators on the other. For each model, in each round, the targets run one
after another in rotating order, each started afresh: a closed-loop sweep of concurrency (wrk), then open-loop
runs at a common light rate (and meshbatch at half of its own saturation). Throughput at equal p99 is read off
each system's sweep (`batching_report`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import batching_report
from .batch_work import MODELS, sample_vector
from .batching_targets import BATCHING_TARGETS, PEERS, TARGETS, Target, WorkSpec, available, start_target
from .common import CLOCK_TICKS, BenchError, CorePlan, core_times, cpu_seconds, machine_facts, plan_cores, require_tools
from .peers import versions
from .runner import RunContext, ScenarioResult
from .wrk import DONE_LUA, parse_wrk_output, run_wrk

NAME = "batching"
SUMMARY = ("microbatching: one worker's batch-friendly work (fixed cost, NumPy) direct vs meshbatch vs Ray Serve "
           "vs BentoML")
ORDER = 20
FIXED_ITEM = '{"id": 42, "sku": "A-1001", "qty": 3}'
CPU_ITEM = json.dumps({"id": 42, "x": sample_vector()})
POST_LOADGEN = Path(__file__).with_name("post_loadgen.py")
CDF_QUANTILES = (*range(1, 100), 99.5, 99.9, 99.99, 100)
CDF_LUA = ("local cdf_done = done\n"
           "done = function(summary, latency, requests)\n"
           "  cdf_done(summary, latency, requests)\n"
           "  local parts = {}\n"
           "  for _, q in ipairs({" + ",".join(f"{q:g}" for q in CDF_QUANTILES) + "}) do\n"
           "    parts[#parts + 1] = string.format('[%d,%g]', latency:percentile(q), q / 100)\n"
           "  end\n"
           "  io.write('WRK_CDF [' .. table.concat(parts, ',') .. ']\\n')\n"
           "end\n")


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"comma-separated integers: {text}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"positive integers: {text}")
    return sorted(set(values))


def _names(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}: {text}")
        return [n for n in choices if n in names]

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--targets", type=_names(TARGETS), default=list(TARGETS),
                        help=f"systems to measure ({','.join(TARGETS)})")
    parser.add_argument("--models", type=_names(MODELS), default=list(MODELS), help="upstream work: fixed,cpu")
    parser.add_argument("--concurrency", type=_ints, default=None, help="callers per run (1,4,16,64,256; --quick 64)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per closed-loop run (5; --quick 2)")
    parser.add_argument("--open-duration", type=float, default=None, help="seconds per open-loop run (5; --quick 2)")
    parser.add_argument("--open-rate", type=float, default=None,
                        help="open-loop common rate, items/s (default 50: every system sustains it here)")
    parser.add_argument("--p99-target-ms", type=float, default=100.0,
                        help="the fixed p99 target of the equal-p99 reading (a second reading finds its own)")
    parser.add_argument("--base-ms", type=float, default=2.0, help="fixed model: cost per call")
    parser.add_argument("--per-item-us", type=float, default=20.0, help="fixed model: cost per item")
    parser.add_argument("--cpu-dim", type=int, default=4096, help="cpu model: columns of the 64 x N matrix")
    parser.add_argument("--max-items", type=int, default=64, help="max batch size, every batching system")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="max batch wait, every batching system")
    parser.add_argument("--max-in-flight", type=int, default=2, help="batches in flight (BentoML: always 1)")
    parser.add_argument("--timeout-ms", type=int, default=10_000, help="meshbatch timeout_ms = BentoML max_latency_ms")
    parser.add_argument("--bentoml-max-latency-ms", type=int, default=None,
                        help="BentoML's max_latency_ms (default: --timeout-ms); it also caps the hold it learns")
    parser.add_argument("--no-install", action="store_true",
                        help="do not install missing peers (--quick never installs)")


def _settings(ctx: RunContext) -> dict[str, Any]:
    args = ctx.args
    return {
        "targets": list(args.targets),
        "models": list(args.models),
        "concurrency": args.concurrency or ([64] if ctx.quick else [1, 4, 16, 64, 256]),
        "seconds": args.duration or (2.0 if ctx.quick else 5.0),
        "warmup_s": 0 if ctx.quick else 1,
        "start_warmup_s": 1 if ctx.quick else 2,
        "open_seconds": args.open_duration or (1.0 if ctx.quick else 5.0),
        "open_rate": {model: args.open_rate or 50.0 for model in args.models},
        "p99_target_ms": args.p99_target_ms,
        "repeat": ctx.repeat,
        "work": {
            "fixed": {"base_ms": args.base_ms, "per_item_us": args.per_item_us, "workers": 1,
                      "cost": "waited (timer sleep + loop poll to the exact end), not burnt",
                      "bulk_limit_items_per_s": 1e6 / args.per_item_us,
                      "one_by_one_limit_items_per_s": 1000 / (args.base_ms + args.per_item_us / 1000),
                      "item": FIXED_ITEM},
            "cpu": {"matrix": f"64 x {args.cpu_dim} float32", "workers": 1, "blas_threads": 1,
                    "cost": "computed on the system's core: one NumPy product per batch",
                    "item": '{"id": 42, "x": [64 floats]}'},
        },
        "batch": {"max_batch_size": args.max_items, "max_wait_ms": args.max_wait_ms,
                  "max_in_flight": args.max_in_flight, "timeout_ms": args.timeout_ms,
                  "bentoml_max_latency_ms": args.bentoml_max_latency_ms or args.timeout_ms},
        "peer_settings": {
            "meshbatch": f"max_items {args.max_items}, max_wait_ms {args.max_wait_ms:g}, max_in_flight "
                         f"{args.max_in_flight}, timeout_ms {args.timeout_ms}, codec json-array, max_queue 100000",
            "ray-serve": f"@serve.batch(max_batch_size={args.max_items}, batch_wait_timeout_s="
                         f"{args.max_wait_ms / 1000:g}, max_concurrent_batches={args.max_in_flight}); one replica, "
                         "max_ongoing_requests 4096; Ray Serve's HTTP proxy; access log off",
            "bentoml": f"@bentoml.api(batchable=True, max_batch_size={args.max_items}, max_latency_ms="
                       f"{args.bentoml_max_latency_ms or args.timeout_ms}); one worker; access log off; one batch at "
                       "a time (its dispatcher's fixed limit); the hold is learnt by its dispatcher (no separate "
                       "bound), max_latency_ms is its latency budget (a queued request that cannot meet it is "
                       "answered 503), set like meshbatch's timeout_ms",
        },
        "layout": "every process of the system under test (proxy, framework, work) on one core; wrk and the "
                  "open-loop generator on the other",
    }


def _work(settings: dict[str, Any], model: str, args: argparse.Namespace) -> WorkSpec:
    batch = settings["batch"]
    return WorkSpec(model=model, base_ms=args.base_ms, per_item_us=args.per_item_us, cpu_dim=args.cpu_dim,
                    max_batch=batch["max_batch_size"], max_wait_ms=batch["max_wait_ms"],
                    max_in_flight=batch["max_in_flight"], timeout_ms=batch["timeout_ms"],
                    bentoml_max_latency_ms=batch["bentoml_max_latency_ms"])


# ---------------------------------------------------------------- runs


def _script(workdir: Path, target: Target) -> Path:
    path = workdir / f"post-{target.name}-{abs(hash(target.body)) % 10**8}.lua"
    if not path.exists():
        body = target.body.replace("\\", "\\\\").replace("'", "\\'")
        path.write_text('wrk.method = "POST"\n'
                        f"wrk.body = '{body}'\n"
                        'wrk.headers["Content-Type"] = "application/json"\n' + DONE_LUA + CDF_LUA)
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _foreign(before: dict[int, tuple[int, int, int]], after: dict[int, tuple[int, int, int]], seconds: float,
             ours: float) -> float | None:
    """CPU share of the machine taken by processes that are neither the system under test nor the load."""
    if seconds <= 0:
        return None
    busy = 0.0
    for core, (b_after, _, _) in after.items():
        if core in before:
            busy += (b_after - before[core][0]) / CLOCK_TICKS
    cores = max(1, len(after))
    return max(0.0, busy - ours) / (cores * seconds)


def _wrk_cdf(stdout: str) -> list[list[float]]:
    line = next((ln for ln in stdout.splitlines() if ln.startswith("WRK_CDF ")), None)
    if line is None:
        return []
    return [[us / 1000, q] for us, q in json.loads(line[len("WRK_CDF "):])]


def _run_wrk_cdf(wrk: str, target: Target, callers: int, seconds: float, cores: CorePlan,
                 script: Path) -> tuple[Any, list[list[float]]]:
    whole = max(1, round(seconds))
    argv = [*cores.prefix("load"), wrk, "-t1", f"-c{callers}", f"-d{whole}s", "--timeout", "10s", "-s", str(script),
            f"http://127.0.0.1:{target.port}{target.path}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=whole + 40, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {whole + 40}s") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk_output(done.stdout), _wrk_cdf(done.stdout)


def _closed(wrk: str, target: Target, callers: int, settings: dict[str, Any], cores: CorePlan,
            script: Path) -> dict[str, Any]:
    if settings["warmup_s"]:
        run_wrk(wrk, target.port, connections=callers, seconds=settings["warmup_s"], cores=cores, script=script,
                path=target.path)
    target.reset()
    pids = target.pids()
    cpu_before, load_before, cores_before = cpu_seconds(pids), _children_cpu(), core_times()
    started = time.monotonic()
    result, cdf = _run_wrk_cdf(wrk, target, callers, settings["seconds"], cores, script)
    span = time.monotonic() - started
    sut_cpu = cpu_seconds(pids) - cpu_before
    load_cpu = _children_cpu() - load_before
    foreign = _foreign(cores_before, core_times(), span, sut_cpu + load_cpu)
    stats = target.stats()
    calls = int(stats["calls"])
    good = max(0, result.requests - result.errors)
    return {
        "target": target.name, "concurrency": callers, "items_per_s": good / result.seconds if result.seconds else 0,
        "requests": result.requests, "errors": result.errors, "p50_ms": result.p50_ms, "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms, "max_ms": result.max_ms, "upstream_calls": calls,
        "upstream_items": int(stats["items"]), "mean_batch_size": stats["items"] / calls if calls else None,
        "batch_sizes": stats.get("sizes", {}), "service_ms": stats["service_ms"],
        "sut_cpu_us_per_item": round(sut_cpu / max(1, good) * 1e6, 1), "sut_core_share": sut_cpu / span,
        "foreign_cpu_share": foreign, "cdf_ms": cdf,
    }


def _open_loop(target: Target, rate: float, settings: dict[str, Any], cores: CorePlan, kind: str) -> dict[str, Any]:
    """One fixed-rate run (latency from the scheduled send, no coordinated omission). Added p99 = the callers' p99
    minus the p99 of the work's own service time per call in the same run: batching hold, waiting for the worker,
    the serving stack and the load generator are charged to the system."""
    target.reset()
    seconds = settings["open_seconds"]
    argv = [*cores.prefix("load"), sys.executable, str(POST_LOADGEN), "--port", str(target.port), "--path",
            target.path, "--rate", f"{rate:.1f}", "--duration", str(seconds), "--warmup", "1", "--max-conns", "512",
            "--body", target.body]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"open-loop load did not finish within {seconds + 60:.0f}s") from exc
    if done.returncode != 0:
        raise BenchError(f"open-loop load exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    stats = target.stats()
    calls = int(stats["calls"])
    service_p99 = stats["service_ms"]["p99"]
    p99 = result["latency_ms"]["p99"]
    return {
        "target": target.name, "kind": kind, "rate": rate, "achieved_items_per_s": result["achieved_rps"],
        "ok": result["ok"], "errors": result["errors"], "error_reasons": result["error_reasons"],
        "latency_ms": result["latency_ms"], "send_lag_ms": result["send_lag_ms"], "service_ms": stats["service_ms"],
        "mean_batch_size": stats["items"] / calls if calls else None, "batch_sizes": stats.get("sizes", {}),
        "added_p99_ms": p99 - service_p99 if service_p99 is not None and p99 == p99 else None,
        "cdf_ms": result["cdf_ms"],
    }


class Runner:
    """One scenario run: starts and stops targets, records every run and every failure."""

    def __init__(self, ctx: RunContext, settings: dict[str, Any], cores: CorePlan, wrk: str, workdir: Path):
        self.ctx, self.settings, self.cores, self.wrk, self.workdir = ctx, settings, cores, wrk, workdir
        self.closed: list[dict[str, Any]] = []
        self.opened: list[dict[str, Any]] = []
        self.failures: list[str] = []

    def _start(self, name: str, model: str) -> Target | None:
        work = _work(self.settings, model, self.ctx.args)
        item = FIXED_ITEM if model == "fixed" else CPU_ITEM
        try:
            return start_target(name, self.workdir, self.cores, work, item)
        except BenchError as exc:
            self.failures.append(f"{model}/{name}: did not start: {str(exc)[:600]}")
            return None

    def _open(self, round_no: int, model: str, target: Target) -> None:
        """Open loop on the running target: at the common rate (direct only when it can sustain it) and, for
        meshbatch, at half of its own best closed-loop items/s of this round."""
        name = target.name
        best = max((r["items_per_s"] for r in self.closed if r["round"] == round_no and r["model"] == model
                    and r["target"] == name), default=0.0)
        rate = float(self.settings["open_rate"][model])
        runs: list[tuple[str, float]] = []
        if name in BATCHING_TARGETS or rate <= 0.8 * best:
            runs.append(("common", rate))
        if name == "meshbatch" and best > 0:
            runs.append(("half_own", best / 2))
        for kind, value in runs:
            self.ctx.step(f"round {round_no}, {model}: {name} open loop at {value:,.0f} items/s")
            try:
                measured = _open_loop(target, value, self.settings, self.cores, kind)
                measured.update(round=round_no, model=model)
                self.opened.append(measured)
                if measured["errors"]:
                    self.failures.append(f"{model}/{name} open loop ({kind}) round {round_no}: "
                                         f"{measured['errors']} errors {measured['error_reasons']}")
            except BenchError as exc:
                self.failures.append(f"{model}/{name} open loop ({kind}) round {round_no}: {exc}")
        self.ctx.done()

    def closed_sweep(self, round_no: int, model: str, name: str) -> None:
        concurrency: list[int] = self.settings["concurrency"]
        self.ctx.step(f"round {round_no}, {model}: starting {name}")
        target = self._start(name, model)
        if target is None:
            for _ in range(len(concurrency) + 1):
                self.ctx.done()
            return
        try:
            script = _script(self.workdir, target)
            run_wrk(self.wrk, target.port, connections=max(concurrency), seconds=self.settings["start_warmup_s"],
                    cores=self.cores, script=script, path=target.path)
            for callers in concurrency:
                self.ctx.step(f"round {round_no}, {model}: {name}, {callers} callers")
                try:
                    measured = _closed(self.wrk, target, callers, self.settings, self.cores, script)
                    measured.update(round=round_no, model=model)
                    self.closed.append(measured)
                    if measured["errors"]:
                        self.failures.append(f"{model}/{name} {callers} callers round {round_no}: "
                                             f"{measured['errors']} errors")
                except BenchError as exc:
                    self.failures.append(f"{model}/{name} {callers} callers round {round_no}: {exc}")
                self.ctx.done()
            self._open(round_no, model, target)
        except BenchError as exc:
            self.failures.append(f"{model}/{name} round {round_no}: {exc}")
        finally:
            target.stop()


def run(ctx: RunContext) -> ScenarioResult:
    tools = require_tools(["wrk"])
    settings = _settings(ctx)
    cores = plan_cores(ctx.note)
    wanted_peers = [t for t in settings["targets"] if t in PEERS]
    install = not ctx.quick and not ctx.args.no_install
    if wanted_peers:
        ctx.note(("checking or installing" if install else "checking") + f" peers: {', '.join(wanted_peers)}")
    peer_versions = available(wanted_peers, install, ctx.note)
    skipped = {name: why for name, why in peer_versions.items() if why.startswith("not installed")}
    for name, why in skipped.items():
        ctx.note(f"{name}: {why}")
    targets = [t for t in settings["targets"] if t not in skipped]
    models: list[str] = settings["models"]
    per_model = len(targets) * len(settings["concurrency"]) + len(targets)
    ctx.begin(ctx.repeat * len(models) * per_model, "starting")
    with tempfile.TemporaryDirectory(prefix="meshbatch-batching-") as tmp:
        runner = Runner(ctx, settings, cores, tools["wrk"], Path(tmp))
        for round_no in range(1, ctx.repeat + 1):
            for model in models:
                shift = (round_no - 1) % max(1, len(targets))
                order = targets[shift:] + targets[:shift]
                for name in order:
                    runner.closed_sweep(round_no, model, name)
    facts = machine_facts(versions({"wrk": tools["wrk"]}))
    facts["versions"].update({name: v for name, v in peer_versions.items() if name not in skipped})
    facts["versions"]["numpy"] = _numpy_version()
    data = batching_report.summarize_run(
        mode="quick" if ctx.quick else "full", settings=settings, targets=targets, skipped=skipped,
        closed=runner.closed, opened=runner.opened, failures=runner.failures, cores=cores.describe(), machine=facts)
    return ScenarioResult(data=data, markdown=batching_report.markdown(data), failures=runner.failures)


def _numpy_version() -> str:
    try:
        import numpy

        return str(numpy.__version__)
    except ImportError:
        return "not installed"


def plot(data: dict[str, Any], out_dir: Path) -> list[Path]:
    from . import batching_plots

    return batching_plots.plot(data, out_dir)


def render(data: dict[str, Any]) -> str:
    """The markdown of a recorded result (`meshbatch bench report` re-renders results/batching.md with it)."""
    return batching_report.markdown(data)
