"""The results as markdown: per scenario, the accounting per stream, resources, its own figures, and every check."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

STREAM_COLUMNS = ("stream", "sent", "answered", "2xx", "failed, by reason", "lost", "dup. deliveries / retries",
                  "answered twice", "not admitted", "aborted", "p50 / p99 / max ms")
PHASE_COLUMNS = ("phase", "sent", "answered", "200", "failed", "lost", "p50 / p99 / max ms", "answered by", "retries",
                 "retries refused by the budget", "ejections")
SKIP = {"streams", "resources", "timeline", "retries", "proxy_answered", "series", "phases"}


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _failed(failed: Mapping[str, int]) -> str:
    if not failed:
        return "0"
    total = sum(failed.values())
    parts = ", ".join(f"{n} {reason}" for reason, n in list(failed.items())[:4])
    more = " ..." if len(failed) > 4 else ""
    return f"{total} ({parts}{more})"


def stream_rows(figures: Mapping[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    retries = figures.get("retries", {})
    for name, f in figures.get("streams", {}).items():
        rows.append([name, f["sent"], f["answered"], f["ok"], _failed(f["failed"]), f["lost"],
                     f"{f['duplicate_deliveries']} / {retries.get(f['route'], '-')}", f["answered_twice"],
                     f["not_admitted"], f["aborted"], f"{f['p50_ms']} / {f['p99_ms']} / {f['max_ms']}"])
    return rows


def phase_rows(figures: Mapping[str, Any]) -> list[list[Any]]:
    """A scenario's phases (multi-host): the callers' figures and the proxy's counters per phase."""
    rows: list[list[Any]] = []
    for p in figures.get("phases", []):
        attempts = p.get("attempts", {}).values()
        ejections = ", ".join(f"{k} {n}" for k, n in p.get("ejections", {}).items()) or "-"
        rows.append([p["phase"] + (f" ({p['mechanism']})" if p.get("mechanism") else ""), p["sent"],
                     p.get("answered", "-"), p["ok"],
                     _failed(p["failed"]), p["lost"], f"{p['p50_ms']} / {p['p99_ms']} / {p['max_ms']}",
                     ", ".join(f"{h} {n}" for h, n in p["answered_by"].items()) or "-",
                     sum(a["retries"] for a in attempts), sum(a["denied_by_budget"] for a in attempts), ejections])
    return rows


def _totals(s: Mapping[str, Any], key: str) -> int:
    figures = s.get("figures", {})
    if "streams" in figures:
        return sum(int(f[key]) for f in figures["streams"].values())
    return int(figures.get("requests", {}).get(key, 0))


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def scenario_markdown(s: Mapping[str, Any]) -> str:
    state = "skipped" if s.get("skipped") else ("passed" if s["ok"] else "**FAILED**")
    out = [f"### {s['name']}: {s['title']}", "", f"{state}, {s['seconds']} s"]
    if s.get("skipped"):
        out.append(f"({s['skipped']})")
        return "\n".join(out)
    if s.get("error"):
        out += ["", f"error: `{s['error']}`"]
    figures = s.get("figures", {})
    rows = stream_rows(figures)
    if rows:
        out += ["", table(STREAM_COLUMNS, rows)]
    phases = phase_rows(figures)
    if phases:
        out += ["", table(PHASE_COLUMNS, phases)]
    resources = figures.get("resources", {})
    if resources:
        out += ["", table(("process", "fds before / after", "tasks before / after", "RSS MiB before / after"),
                          [[name, f"{r['fds_before']:.0f} / {r['fds_after']}", f"{r['tasks_before']:.0f} / "
                            f"{r['tasks_after']}", f"{r['rss_mib_before']} / {r['rss_mib_after']}"]
                           for name, r in resources.items()])]
    extra = {k: v for k, v in figures.items() if k not in SKIP}
    if extra:
        out += [""] + [f"- {k}: {_value(v)}" for k, v in extra.items()]
    if figures.get("timeline"):
        out += ["", "timeline (s after the load began): " + "; ".join(f"{t} {label}" for t, label in
                                                                         figures["timeline"])]
    checks = s.get("checks", [])
    if checks:
        out += ["", "| check | | measured |", "|---|---|---|"]
        out += [f"| {c['name']} | {'ok' if c['ok'] else '**FAIL**'} | {c['detail']} |" for c in checks]
    notes = [n for n in s.get("notes", []) if "Traceback" not in n]
    if notes:
        out += [""] + [f"> {n}" for n in notes]
    return "\n".join(out)


def markdown(data: Mapping[str, Any]) -> str:
    m = data["machine"]
    scenarios = data["scenarios"]
    passed = sum(1 for s in scenarios if s["ok"] and not s.get("skipped"))
    skipped = sum(1 for s in scenarios if s.get("skipped"))
    head = [
        f"# Chaos and soak suite: {'all bars held' if data['ok'] else 'FAILED'} ({data['mode']} run)",
        "",
        f"`{data['command']}`, {data['seconds']} s, {m['date']}; {m['cpu_model']}, {m['cores_usable']} usable "
        f"cores, Python {m['python']}, kernel {m['kernel']}, meshbatch {m['meshbatch']} "
        f"({'compiled' if m.get('compiled_build') else 'pure Python'}), commit {m['git_commit']}"
        f"{' (with local changes)' if m.get('git_dirty') else ''}; load average {m['loadavg_at_start']} at the "
        f"start, {data.get('loadavg_at_end')} at the end.",
        "",
        f"{passed} passed, {len(scenarios) - passed - skipped} failed, {skipped} skipped.",
        "",
        table(("scenario", "result", "requests", "lost", "answered twice", "seconds"),
              [[s["name"], "skipped" if s.get("skipped") else ("ok" if s["ok"] else "FAIL"),
                _totals(s, "sent"), _totals(s, "lost"),
                sum(f["answered_twice"] for f in s.get("figures", {}).get("streams", {}).values()),
                s["seconds"]] for s in scenarios]),
    ]
    body = [scenario_markdown(s) for s in scenarios]
    return "\n".join(head) + "\n\n" + "\n\n".join(body)


__all__ = ["markdown", "phase_rows", "scenario_markdown", "stream_rows", "table"]
