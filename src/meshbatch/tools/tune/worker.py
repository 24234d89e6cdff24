"""`python -m meshbatch.tools.tune.worker [MEMORY_MB]`: `meshbatch tune`'s sweep for the proxy, in a process of
its own.

A route with `batch.adaptive: {canary: SHARE}` and no `candidate` has its recorded traffic swept here (the runtime
starts this process: runtime/autocanary.py), never on the proxy's event loop. Input on stdin, one JSON document:

    {"trace": <GET /recorder?route=NAME's document>, "max_p99_increase": 0.1, "p99_slack_ms": 1,
     "items": [...], "waits_ms": [...], "in_flight": [...]}

(`items`, `waits_ms`, `in_flight`: the grid, each optional: tune's defaults with the route's own value added).
Output on stdout, one JSON document: the recommended setting (`recommended`, the route's keys), whether it keeps the
p99 target (`met`), the target, the route's own setting's replay (`current`) and the recommended one's (`best`),
the trace's size and the seconds spent. Exit status 0 with an answer, 2 when the input cannot be used (the reason
on stderr). The process bounds its own address space to MEMORY_MB (default 1024) and lowers its priority before
it reads.

The p99 target is the canary's own p99 rule applied to the replay: the route's setting's simulated p99 x (1 +
max_p99_increase) + p99_slack_ms. Among the settings within it, tune's recommendation (the least upstream-busy,
then the most capacity) is what the canary will try: a setting its p99 rule would not refuse at once, chosen for
the upstream cost it saves.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from typing import Any

import orjson

from meshbatch.tools.tune.sweep import as_setting, grid, recommend, sweep
from meshbatch.tools.tune.trace import TraceError, fit, parse


def _limit(memory_mb: int) -> None:
    try:
        import resource

        size = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    except (ImportError, ValueError, OSError):
        pass  # no such limit here: the proxy's timeout still bounds the sweep
    try:
        os.nice(10)
    except OSError:
        pass


def run(request: dict[str, Any]) -> dict[str, Any]:
    """The sweep's answer for `request` (see the module docstring). Raises TraceError or ValueError."""
    started = time.perf_counter()
    trace = parse(request["trace"])
    cost = fit(trace)
    policy = trace.policy
    items, waits, in_flight = grid(policy, request.get("items") or (), request.get("waits_ms") or (),
                                   request.get("in_flight") or ())
    if any(n < 1 for n in items) or any(n < 1 for n in in_flight) or any(w < 0 for w in waits):
        raise ValueError("items and in_flight values must be >= 1, waits >= 0")
    outcomes = sweep(trace, cost, items=items, waits_ms=waits, in_flight=in_flight)
    current = next((o for o in outcomes if o.current), None)
    if current is None:
        raise ValueError("the route's own setting is not in the grid")
    target = current.p99_ms * (1 + float(request.get("max_p99_increase", 0.1))) + float(
        request.get("p99_slack_ms", 1.0))
    best, met = recommend(outcomes, target)
    return {"route": trace.route, "recommended": as_setting(best, policy), "met": met, "target_p99_ms": target,
            "is_current": best.current, "current": asdict(current), "best": asdict(best),
            "candidates": len(outcomes), "arrivals": len(trace.arrivals), "batches": len(trace.batches),
            "seconds": round(time.perf_counter() - started, 3)}


def main(argv: list[str]) -> int:
    try:
        _limit(int(argv[0]) if argv else 1024)
        request = orjson.loads(sys.stdin.buffer.read())
        if not isinstance(request, dict):
            raise ValueError("the input is not a JSON object")
        answer = run(request)
    except (TraceError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        print(f"meshbatch sweep: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(orjson.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
