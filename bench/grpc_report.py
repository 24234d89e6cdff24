"""Summaries and the markdown report of the `grpc` scenario: the goals first (batched items/s >= 10x direct at
256 streams; gRPC proxying >= 0.5x nginx `grpc_pass`), then a table per part, medians with min-max over rounds
and ratios paired within each round (the noise of a shared machine cancels)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .common import ratio, summarize
from .proxy_report import _interference, _percent
from .report import num, spread, table

FIELDS = ("rps", "p50_ms", "p99_ms", "mean_batch", "proxy_cpu_us_per_request", "proxy_core_busy")
PAIRS = {"batching": (("meshbatch", "direct"), ("nginx", "direct")), "proxying": (("meshbatch", "nginx"),)}
BATCH_GOAL, PROXY_GOAL = 10.0, 0.5


def _ok(runs: Sequence[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in runs if "error" not in r and all(r.get(k) == v for k, v in match.items())]


def _paired(runs: Sequence[dict[str, Any]], part: str, streams: int, a: str, b: str, key: str) -> dict[str, Any]:
    values = []
    for run_a in _ok(runs, part=part, streams=streams, target=a):
        for run_b in _ok(runs, part=part, streams=streams, target=b, round=run_a["round"]):
            value = ratio(run_a.get(key), run_b.get(key))
            if value is not None:
                values.append(value)
    return summarize(values)


def summary(runs: Sequence[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in settings["parts"]:
        targets = sorted({r["target"] for r in runs if r["part"] == part})
        per: dict[str, Any] = {}
        for streams in settings["streams"]:
            figures = {t: {f: summarize([r[f] for r in _ok(runs, part=part, streams=streams, target=t)
                                         if r.get(f) is not None]) for f in FIELDS} for t in targets}
            ratios = {f"{a}/{b}": {key: _paired(runs, part, streams, a, b, key)
                                   for key in ("rps", "p99_ms", "proxy_cpu_us_per_request")}
                      for a, b in PAIRS[part] if a in targets and b in targets}
            per[str(streams)] = {"figures": figures, "ratios": ratios}
        out[part] = per
    return out


def _ratio_cell(per: dict[str, Any], pair: str, key: str = "rps") -> str:
    found = per["ratios"].get(pair, {}).get(key)
    return spread(found) if found else "-"


def _goals(data: dict[str, Any]) -> list[str]:
    lines = []
    s = data["summary"]
    if "batching" in s:
        top = str(max(data["settings"]["streams"]))
        found = s["batching"][top]["ratios"].get("meshbatch/direct", {}).get("rps", {}).get("median")
        met = "" if found is None else (" (met)" if found >= BATCH_GOAL else " (NOT met)")
        lines.append(f"- batched / direct items/s at {top} streams: **{num(found)}x** (goal >= {BATCH_GOAL:g}x){met}")
    if "proxying" in s:
        cells = []
        for streams, per in s["proxying"].items():
            r = per["ratios"].get("meshbatch/nginx", {})
            median = r.get("rps", {}).get("median")
            cpu = r.get("proxy_cpu_us_per_request", {}).get("median")
            cells.append(f"{streams} streams {num(median)}x (CPU per call {num(cpu)}x)")
        lines.append(f"- gRPC proxying, meshbatch / nginx `grpc_pass` req/s (goal >= {PROXY_GOAL:g}x): "
                     + "; ".join(cells))
    return lines


def _table(data: dict[str, Any], part: str) -> str:
    rows = []
    for streams, per in data["summary"][part].items():
        for target, f in per["figures"].items():
            pairs = [p for p in PAIRS[part] if p[0] == target]
            rows.append([
                streams, target, spread(f["rps"], 0),
                _ratio_cell(per, f"{pairs[0][0]}/{pairs[0][1]}") if pairs else "1.00" if part == "batching" else "-",
                num(f["p50_ms"]["median"], 2), spread(f["p99_ms"], 2),
                num(f["mean_batch"]["median"], 1) if part == "batching" else "-",
                num(f["proxy_cpu_us_per_request"]["median"], 1),
                _percent(f["proxy_core_busy"]["median"]),
            ])
    unit = "items/s" if part == "batching" else "req/s"
    versus = "x direct" if part == "batching" else "x nginx"
    return table(["streams", "target", unit, versus, "p50 ms", "p99 ms", "calls per batch", "proxy CPU us/call",
                  "proxy core busy"], rows)


def markdown(data: dict[str, Any]) -> str:
    settings, cores, machine = data["settings"], data["cores"], data["machine"]
    work, batch = settings["work"], settings["batch"]
    text = [
        f"## grpc ({data['mode']}, {settings['repeat']} interleaved rounds, medians [min-max])",
        "",
        *_goals(data),
        "",
        f"h2load {settings['protocol']}, closed loop, {settings['seconds']:g} s per run (after "
        f"{settings['warmup_seconds']:g} s of warm-up), at most {settings['per_connection']} streams a connection. "
        f"Proxies on core {cores['proxy_core']}, upstreams and h2load on core {cores['load_and_upstream_core']}.",
    ]
    if "batching" in data["summary"]:
        text += ["", f"### Batching: a grpcio server, one worker, {work['base_ms']:g} ms a call + "
                     f"{work['per_item_us']:g} us an item",
                 "",
                 f"meshbatch: `codec: grpc` (envelope, the SDK's serve_grpc), max_items {batch['max_items']}, "
                 f"max_wait_ms {batch['max_wait_ms']:g}, max_in_flight {batch['max_in_flight']}; nginx: "
                 "`grpc_pass`, one upstream call per caller. \"calls per batch\": items the server served per call.",
                 "", _table(data, "batching")]
    if "proxying" in data["summary"]:
        text += ["", "### Proxying: a static gRPC answer (nginx), through nginx `grpc_pass` and a plain meshbatch "
                     "route", "", _table(data, "proxying")]
    text += ["", _interference(data), "",
             f"{machine['cpu_model']}, {machine['cores_usable']} cores, {machine['date']}; {machine['note']}."]
    return "\n".join(text)
