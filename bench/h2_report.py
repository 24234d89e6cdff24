"""The markdown report of the `h2` scenario: meshbatch / nginx first (goal >= 0.5x nginx's req/s), then the
figures of each target, medians with min-max."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .proxy_report import REFERENCE, _interference, _percent, closed_summary
from .report import num, spread, table

GOAL = ">= 0.5"


def summary(runs: Sequence[dict[str, Any]], targets: Sequence[str]) -> dict[str, Any]:
    return closed_summary(runs, targets)


def _bars(data: dict[str, Any]) -> str:
    ratios = data["closed_loop"]["ratios"].get(f"meshbatch/{REFERENCE}")
    if not ratios:
        return "meshbatch / nginx: not measured (both must run)."
    parts = []
    for field, label in (("rps", "req/s"), ("p50_ms", "p50"), ("p99_ms", "p99")):
        goal = f"; goal {GOAL}" if field == "rps" else ""
        parts.append(f"{label} {num(ratios[field]['of_medians'])} (per round {spread(ratios[field]['paired'])}{goal})")
    parts.append(f"CPU per request {num(ratios['proxy_cpu_us_per_request']['of_medians'])}")
    return "meshbatch / nginx over HTTP/2: " + ", ".join(parts)


def _table(data: dict[str, Any]) -> str:
    closed = data["closed_loop"]
    rows = []
    for target in data["targets"]:
        s = closed["summary"][target]
        r = closed["ratios"].get(f"{target}/{REFERENCE}", {})
        res = data["resources"].get(target, {})
        rss = res.get("peak_rss_kib")
        same = "1.00" if target == REFERENCE else "-"
        rows.append([
            target,
            spread(s["rps"], 0),
            num(r["rps"]["of_medians"]) if r else same,
            num(s["p50_ms"]["median"], 3),
            spread(s["p99_ms"], 3),
            num(r["p99_ms"]["of_medians"]) if r else same,
            _percent(s["proxy_core_busy"]["median"]),
            num(s["proxy_cpu_us_per_request"]["median"], 1),
            f"{rss / 1024:.1f}" if rss else "-",
        ])
    head = ["target", "req/s", "x nginx", "p50 ms", "p99 ms", "p99 x nginx", "core busy", "CPU us/req", "RSS MiB"]
    return table(head, rows)


def markdown(data: dict[str, Any]) -> str:
    settings = data["settings"]
    cores = data["cores"]
    machine = data["machine"]
    return "\n".join([
        f"## h2 ({data['mode']}, {settings['repeat']} interleaved rounds, medians [min-max])",
        "",
        _bars(data),
        "",
        f"h2load {settings['protocol']}, {settings['connections']} connections x {settings['streams']} concurrent "
        f"streams, {settings['seconds']:g} s per run; each proxy terminates HTTP/2 and proxies over HTTP/1.1 "
        f"(keep-alive) to the same nginx upstream (2-byte body); meshbatch's listener codec `{settings['codec']}`. "
        f"Proxy on core {cores['proxy_core']}, upstream and h2load on core {cores['load_and_upstream_core']}. "
        "Latency: per request, from h2load's request log.",
        "",
        _table(data),
        "",
        _interference(data),
        "",
        f"{machine['cpu_model']}, {machine['cores_usable']} cores, {machine['date']}; {machine['note']}.",
    ])
