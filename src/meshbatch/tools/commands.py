"""The command-line entries of the operator tools (`top`, `tune`); the tools themselves load only when run."""

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


def add_top(sub: Any) -> None:
    top = sub.add_parser("top", help="live terminal view of a running proxy (routes, batches, endpoints)")
    top.add_argument("--admin", default="http://127.0.0.1:9901", help="the admin API (default 127.0.0.1:9901)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.add_argument("--iterations", type=int, default=None, help="refresh this many times, then exit")
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
    tune.set_defaults(func=_run_tune)


__all__ = ["add_top", "add_tune"]
