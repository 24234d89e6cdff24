"""`meshbatch tune`: recommend `max_items` and the wait of a batching route for a p99 target, from its own traffic.

    meshbatch tune --admin 127.0.0.1:9901 --route orders --target-p99-ms 20 [--plot tune.png] [--save trace.json]
    meshbatch tune --input trace.json --target-p99-ms 20
    meshbatch tune --route orders --target-p99-ms 20 --apply proxy.yaml [--canary 0.1] [--reload-pid PID]

The proxy records recent batches of every batching route (`recorder`, on by default): when each item arrived and
how long each upstream call took. `tune` reads that record, fits the upstream cost t(n) = a + b*n, replays the
arrivals through a simulation of the batcher for every candidate setting, prints the trade-off, writes a plot, and
recommends a setting. The wait it sweeps is the hold (`min_wait_ms`: how long a queue is kept before a free slot
takes it; `max_wait_ms` only bounds an adaptive hold), so the recommendation sets both. With `--apply` the
recommendation is written into the proxy's config as a canary (tools/tune/apply.py): the proxy tries it on a share
of the route's batches and promotes or rolls it back by itself.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import orjson
from rich.console import Console

from meshbatch.tools.admin_client import AdminError
from meshbatch.tools.tune import report
from meshbatch.tools.tune.sweep import as_setting, grid, recommend, sweep
from meshbatch.tools.tune.trace import TraceError, fit, load


def run_tune(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    try:
        trace = load(args.admin if args.input is None else None, args.route, args.input)
    except (TraceError, AdminError) as exc:
        console.print(f"[red]meshbatch tune:[/red] {exc}")
        return 1
    if args.save:
        Path(args.save).write_bytes(orjson.dumps(trace.document))
        console.print(f"trace saved: {args.save}")
    cost = fit(trace)
    policy = trace.policy
    items, waits, in_flight = grid(policy, args.max_items or (), args.wait_ms or (), args.in_flight or ())
    if any(n < 1 for n in items) or any(n < 1 for n in in_flight) or args.load <= 0 or args.tick_us < 0:
        console.print("[red]meshbatch tune:[/red] max_items and in-flight values must be >= 1, --load > 0")
        return 2
    outcomes = sweep(trace, cost, items=items, waits_ms=waits, in_flight=in_flight, load=args.load,
                     tick=args.tick_us / 1e6, seed=args.seed)
    best, met = recommend(outcomes, args.target_p99_ms)
    if args.json:
        print(orjson.dumps({"route": trace.route, "target_p99_ms": args.target_p99_ms, "meets_target": met,
                            "recommended": as_setting(best, policy),
                            "candidates": [asdict(o) for o in outcomes]}).decode())
    else:
        console.print(report.summary(trace, cost))
        largest = max(size for size, _, _ in trace.batches)
        console.print(report.table(outcomes, best, args.target_p99_ms, largest, width=console.width))
        if any(o.max_items > largest for o in outcomes):
            console.print(f"* capacity extrapolated from the fitted cost (largest recorded batch: {largest} items)")
        verdict = "meets" if met else "[red]cannot meet[/red]"
        console.print(f"[bold]recommended[/bold] for p99 <= {args.target_p99_ms:g} ms at "
                      f"{trace.rate * args.load:,.0f} items/s ({verdict} the target): "
                      f"p99 {best.p99_ms:.2f} ms, capacity {best.capacity:,.0f} items/s, "
                      f"mean batch {best.mean_batch:.1f}")
        setting = as_setting(best, policy)
        console.print("  batch: {" + ", ".join(f"{k}: {v:g}" for k, v in setting.items()) + "}")
    if args.plot:
        report.plot(outcomes, best, args.target_p99_ms, trace, args.plot)
        if not args.json:
            console.print(f"plot: {args.plot}")
    target = getattr(args, "apply", None)  # the config file to write the canary into
    if target and met:
        return _apply(args, trace.route, as_setting(best, policy), console)
    if target:
        console.print("[red]not applied:[/red] the recommendation does not meet the target")
    return 0 if met else 3


def _apply(args: argparse.Namespace, route: str, setting: dict[str, float], console: Console) -> int:
    """--apply: the recommendation as a canary in the config file, and --reload-pid's SIGHUP."""
    from meshbatch.tools.tune.apply import ApplyError, apply, reload

    if args.json:  # stdout holds the JSON answer alone
        console = Console(stderr=True)
    try:
        wanted = apply(args.apply, route, setting, args.canary)
    except ApplyError as exc:
        console.print(f"[red]not applied:[/red] {exc}")
        return 4
    written = ", ".join(f"{k}: {v:g}" for k, v in wanted.items())
    console.print(f"applied to {args.apply} (previous text in {args.apply}.bak): route {route} tries "
                  f"{{{written}}} on {args.canary:.0%} of its batches")
    if getattr(args, "reload_pid", None) is None:
        console.print("reload the proxy (SIGHUP) to start the canary; its progress is in /batchers")
        return 0
    try:
        reload(args.reload_pid)
    except ApplyError as exc:
        console.print(f"[red]not reloaded:[/red] {exc}")
        return 4
    console.print(f"sent SIGHUP to {args.reload_pid}: the canary starts with the reload; see /batchers")
    return 0


__all__ = ["run_tune"]
