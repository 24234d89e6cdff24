"""Summaries and the markdown report of the `proxy` scenario: medians with min-max, ratios to nginx first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .common import ratio, summarize
from .report import num, signed, spread, table

REFERENCE = "nginx"
BASELINE = "no proxy"
CLOSED_FIELDS = (
    "rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "proxy_cpu_s",
    "proxy_cpu_us_per_request",
    "proxy_core_busy",
    "proxy_core_foreign",
)
OPEN_FIELDS = ("p50", "p90", "p99", "p999", "max")
BARS = {"rps": ">= 0.6", "p99_ms": "<= 2.0"}
PAIRS = ("Each target is a sidecar pair: wrk -> outbound proxy -> mTLS -> inbound proxy -> upstream, both proxies of "
         "a pair on the proxy core; the same CA and workload certificates for every system, each side verifying its "
         "peer, connections between the proxies kept alive. CPU is the pair's (both processes).")


def _ok(runs: Sequence[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in runs if "error" not in r and all(r.get(k) == v for k, v in match.items())]


def _paired(runs: Sequence[dict[str, Any]], a: str, b: str, key: str, op: str) -> dict[str, Any]:
    """Per-round ratio (or difference) of target a to target b: the noise of a shared machine cancels."""
    values: list[float] = []
    for run_a in _ok(runs, target=a):
        same_round = {k: run_a[k] for k in ("round", "rate") if k in run_a}
        for run_b in _ok(runs, target=b, **same_round):
            x, y = _value(run_a, key), _value(run_b, key)
            if x is None or y is None:
                continue
            if op == "ratio":
                r = ratio(x, y)
                if r is not None:
                    values.append(r)
            else:
                values.append(x - y)
    return summarize(values)


def _value(run: dict[str, Any], key: str) -> float | None:
    if key in run:
        value = run[key]
        return None if value is None else float(value)
    latency = run.get("latency_ms", {})
    value = latency.get(key)
    return None if value is None else float(value)


def closed_summary(runs: Sequence[dict[str, Any]], targets: Sequence[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for target in targets:
        ok = _ok(runs, target=target)
        summary[target] = {
            field: summarize([r[field] for r in ok if r.get(field) is not None]) for field in CLOSED_FIELDS
        }
        summary[target]["errors"] = sum(int(r.get("errors", 0)) for r in ok)
    ratios: dict[str, Any] = {}
    for target in targets:
        if target == REFERENCE or REFERENCE not in targets:
            continue
        ratios[f"{target}/{REFERENCE}"] = {
            field: {
                "of_medians": ratio(summary[target][field]["median"], summary[REFERENCE][field]["median"]),
                "paired": _paired(runs, target, REFERENCE, field, "ratio"),
            }
            for field in ("rps", "p50_ms", "p99_ms", "proxy_cpu_us_per_request")
        }
    return {"summary": summary, "ratios": ratios}


def open_summary(runs: Sequence[dict[str, Any]], targets: Sequence[str], rates: Sequence[float]) -> dict[str, Any]:
    by_rate: dict[str, Any] = {}
    for rate in rates:
        at_rate = [r for r in runs if r.get("rate") == rate]
        per_target: dict[str, Any] = {}
        for target in targets:
            ok = _ok(runs, target=target, rate=rate)
            entry: dict[str, Any] = {f"{p}_ms": summarize([r["latency_ms"][p] for r in ok]) for p in OPEN_FIELDS}
            entry["achieved_rps"] = summarize([r["achieved_rps"] for r in ok])
            entry["send_lag_p99_ms"] = summarize([r["send_lag_ms"]["p99"] for r in ok])
            entry["errors"] = sum(int(r.get("errors", 0)) for r in ok)
            if target != BASELINE:
                entry["added_ms"] = {p: _paired(at_rate, target, BASELINE, p, "diff") for p in OPEN_FIELDS}
            if ok:  # the latency distribution of the run with the median p50, for plots
                entry["cdf_ms"] = sorted(ok, key=lambda r: r["latency_ms"]["p50"])[len(ok) // 2].get("cdf_ms")
            per_target[target] = entry
        by_rate[f"{rate:g}"] = per_target
    return {"by_rate": by_rate, "latency_from": "scheduled send time (coordinated-omission free)"}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _closed_table(data: dict[str, Any]) -> str:
    closed = data["closed_loop"]
    rows = []
    for target in data["targets"]:
        s = closed["summary"][target]
        r = closed["ratios"].get(f"{target}/{REFERENCE}", {})
        res = data["resources"].get(target, {})
        rss = res.get("peak_rss_kib")
        rows.append(
            [
                target,
                spread(s["rps"], 0),
                num(r.get("rps", {}).get("of_medians")) if r else ("1.00" if target == REFERENCE else "-"),
                num(s["p50_ms"]["median"], 3),
                spread(s["p99_ms"], 3),
                num(r.get("p99_ms", {}).get("of_medians")) if r else ("1.00" if target == REFERENCE else "-"),
                _percent(s["proxy_core_busy"]["median"]),
                num(s["proxy_cpu_us_per_request"]["median"], 1),
                f"{rss / 1024:.1f}" if rss and res.get("role") == "proxy" else "-",
            ]
        )
    head = ["target", "req/s", "x nginx", "p50 ms", "p99 ms", "p99 x nginx", "core busy", "CPU us/req", "RSS MiB"]
    return table(head, rows)


def _interference(data: dict[str, Any]) -> str:
    """A shared machine: how much of each core other processes (or the hypervisor) took during the runs."""
    runs = [r for r in data["raw"]["closed_loop"] if "error" not in r]
    parts, worst = [], 0.0
    for key, label in (("proxy_core_foreign", "proxy core"), ("load_core_foreign", "load core")):
        shares = [r[key] for r in runs if r.get(key) is not None]
        if shares:
            worst = max(worst, *shares)
            median = summarize(shares)["median"]
            parts.append(f"{label} {_percent(median)} (worst {_percent(max(shares))})")
    if not parts:
        return "Interference from other processes: not measured."
    verdict = "; this run was disturbed, prefer the ratios" if worst > 0.1 else ""
    return "CPU taken by other processes during the closed-loop runs, median: " + ", ".join(parts) + verdict + "."


def _open_table(data: dict[str, Any]) -> str:
    rows = []
    for rate, per_target in data["open_loop"]["by_rate"].items():
        for target in data["targets"]:
            e = per_target.get(target)
            if e is None:
                continue
            added = e.get("added_ms", {})
            rows.append(
                [
                    rate,
                    target,
                    num(e["p50_ms"]["median"], 3),
                    num(e["p90_ms"]["median"], 3),
                    num(e["p99_ms"]["median"], 3),
                    num(e["max_ms"]["median"], 3),
                    signed(added.get("p50")),
                    signed({"median": added["p99"]["median"], "n": 1}) if added else "-",
                ]
            )
    head = ["rps", "target", "p50 ms", "p90 ms", "p99 ms", "max ms", "added p50 ms", "added p99 ms"]
    return table(head, rows)


def _bars(data: dict[str, Any]) -> str:
    ratios = data["closed_loop"]["ratios"].get(f"meshbatch/{REFERENCE}")
    if not ratios:
        return "meshbatch was not measured."
    bars = BARS if data.get("scenario", "proxy") == "proxy" else {}  # the bars are the plain proxy's
    parts = []
    for field in ("rps", "p99_ms"):
        paired = ratios[field]["paired"]
        label = "req/s" if field == "rps" else "p99"
        bar = f"; bar {bars[field]}" if field in bars else ""
        parts.append(f"{label} {num(ratios[field]['of_medians'])} (per round {spread(paired)}{bar})")
    cpu = ratios["proxy_cpu_us_per_request"]["of_medians"]
    parts.append(f"CPU per request {num(cpu)}")
    return "meshbatch / nginx: " + ", ".join(parts)


def markdown(data: dict[str, Any]) -> str:
    settings = data["settings"]
    cores = data["cores"]
    scenario = data.get("scenario", "proxy")
    lines = [
        f"## {scenario} ({data['mode']}, {settings['repeat']} interleaved rounds, medians [min-max])",
        "",
        *([PAIRS, ""] if scenario == "mtls" else []),
        _bars(data),
        "",
        f"Closed loop: wrk, {settings['connections']} keep-alive connections, "
        f"{settings['closed_seconds']:g} s per run; proxy on core {cores['proxy_core']}, "
        f"upstream and wrk on core {cores['load_and_upstream_core']}. Core busy: the proxy's CPU time over the "
        "run; below 100% the shared load core, not the proxy, set the pace.",
        "",
        _closed_table(data),
        "",
        _interference(data),
    ]
    if settings["open_rates"]:
        lines += [
            "",
            f"Open loop: fixed rates, {settings['open_seconds']:g} s per run, latency from the scheduled "
            "send time; added = paired difference to no proxy in the same round.",
            "",
            _open_table(data),
        ]
    machine = data["machine"]
    lines += [
        "",
        f"{machine['cpu_model']}, {machine['cores_usable']} cores, {machine['date']}; {machine['note']}.",
    ]
    return "\n".join(lines)
