"""The command-line entries of the operator tools (`top`, `tune`, `shards`); the tools themselves load only when
run."""

from __future__ import annotations

import argparse
from typing import Any


def _numbers(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> list[Any]:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of numbers") from exc
        if not values or any(v < 0 for v in values):
            raise argparse.ArgumentTypeError(f"{text!r}: give one or more non-negative numbers")
        return values

    return parse


def _run_top(args: argparse.Namespace) -> int:
    from meshbatch.tools.top import run_top

    return run_top(args)


def _run_tune(args: argparse.Namespace) -> int:
    from meshbatch.tools.tune.cli import run_tune

    return run_tune(args)


def _worker(value: str) -> int:
    if not value.isdigit() or len(value) > 5:
        raise argparse.ArgumentTypeError(f"{value!r}: a worker's index, 0 to N-1")
    return int(value)


def add_top(sub: Any) -> None:
    top = sub.add_parser("top", help="live terminal view of a running proxy (routes, batches, endpoints)")
    top.add_argument("--admin", default="http://127.0.0.1:9901", help="the admin API (default 127.0.0.1:9901)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.add_argument("--iterations", type=int, default=None, help="refresh this many times, then exit")
    top.add_argument("--worker", type=_worker, default=None, metavar="I",
                     help="with `run --workers N`: worker I's own figures (default: the workers' total, with a "
                          "line per worker)")
    top.set_defaults(func=_run_top)


def add_tune(sub: Any) -> None:
    tune = sub.add_parser("tune", help="recommend max_items and wait for a p99 target by replaying recorded traffic")
    tune.add_argument("--admin", default="http://127.0.0.1:9901", help="the admin API of the running proxy")
    tune.add_argument("--route", help="the batching route to tune")
    tune.add_argument("--input", help="a trace saved with --save (or the JSON of GET /recorder?route=NAME)")
    tune.add_argument("--save", help="also write the trace read from the proxy to this file")
    tune.add_argument("--target-p99-ms", type=float, required=True, help="the p99 latency to meet, ms")
    tune.add_argument("--max-items", type=_numbers(int), help="candidate max_items, e.g. 16,32,64,128")
    tune.add_argument("--wait-ms", type=_numbers(float), help="candidate waits (min_wait_ms), e.g. 0,1,2,5")
    tune.add_argument("--in-flight", type=_numbers(int), help="candidate max_in_flight (default: the current one)")
    tune.add_argument("--load", type=float, default=1.0, help="replay the arrivals this many times as fast")
    tune.add_argument("--tick-us", type=float, default=100.0, help="event-loop tick modelled, us (default 100)")
    tune.add_argument("--seed", type=int, default=1, help="seed of the upstream-time residual draws")
    tune.add_argument("--plot", help="write the trade-off plot (PNG) here")
    tune.add_argument("--json", action="store_true", help="print the result as JSON")
    tune.add_argument("--apply", metavar="CONFIG", help="write the recommendation into the route's config as a "
                      "canary (batch.adaptive: {canary, candidate}); the proxy promotes or rolls it back itself")
    tune.add_argument("--canary", type=float, default=0.1, metavar="SHARE",
                      help="with --apply: the share of the route's batches that try it (default 0.1, at most 0.5)")
    tune.add_argument("--reload-pid", type=int, metavar="PID", help="with --apply: send the proxy SIGHUP to reload")
    tune.set_defaults(func=_run_tune)


__all__ = ["add_top", "add_tune"]


def _run_shards_plan(args: argparse.Namespace) -> int:
    from meshbatch.tools.shards import run_plan

    return run_plan(args)


def add_shards(sub: Any) -> None:
    shards = sub.add_parser("shards", help="sharded database sinks: plan a change of shards")
    actions = shards.add_subparsers(dest="shards_command", required=True)
    plan = actions.add_parser(
        "plan", help="which keys move when shards are added or removed",
        description="Place every key with the route's shards as configured and as changed (the sink's rendezvous "
                    "hash) and report how many keys move, from where to where. Keys come one a line from --keys "
                    "FILE or stdin, or from the shards' tables (--from-sinks).")
    plan.add_argument("config", metavar="CONFIG", help="the YAML config file")
    plan.add_argument("--route", required=True, help="the ingest route with the sharded sink")
    plan.add_argument("--add", metavar="TARGET", help="a new shard: its URL (postgres) or path (sqlite)")
    plan.add_argument("--name", help="the new shard's name (default: its place in the list, as the sink names it)")
    plan.add_argument("--remove", action="append", metavar="NAME", help="a shard to take out (repeatable)")
    plan.add_argument("--keys", metavar="FILE", help="the keys, one a line (default: stdin; - is stdin)")
    plan.add_argument("--from-sinks", action="store_true", help="read the keys from the shards' tables instead")
    plan.add_argument("--limit", type=int, default=1_000_000, help="at most this many keys a shard (--from-sinks)")
    plan.add_argument("--list", action="store_true", help="print each moved key: KEY<TAB>FROM<TAB>TO")
    plan.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    plan.set_defaults(func=_run_shards_plan)
