"""Summaries and the markdown report of the `batching` scenario: ratios first, absolute figures second.

Equal-p99 comparison. Each system's closed-loop sweep (concurrency 4, 16, 64, 256, ...) gives points
(p99, items/s). Its throughput *at* the common target p99 T is read off the piecewise-linear curve through those
points in order of concurrency: the largest items/s among the points with p99 <= T and the interpolated items/s
where a segment crosses T. A system whose p99 stays under T over the whole sweep gets its best measured items/s,
marked ">=" (it would do at least that at T). A system whose p99 is above T at every concurrency has no value at T
("p99 > T"). This is done per round and per system; the ratio of meshbatch to a peer is taken per round (the
noise of the shared machine cancels), and reported as the median with min-max over the rounds.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .batching_targets import BATCHING_TARGETS, PEERS
from .common import ratio, summarize
from .report import num, spread, table

FIELDS = ("items_per_s", "p50_ms", "p99_ms", "mean_batch_size", "sut_cpu_us_per_item", "foreign_cpu_share")


def throughput_at_p99(points: Sequence[tuple[float, float]], target_ms: float) -> tuple[float | None, str]:
    """Items/s at p99 = `target_ms` on the curve through `points` ((p99_ms, items/s), by rising concurrency).

    Returns (value, how): how is "interpolated", "measured" (a point at or under T is the best), "at least" (every
    point is under T: the best measured, a lower bound) or "above" (p99 > T everywhere: no value)."""
    if not points:
        return None, "above"
    best: float | None = None
    how = "above"
    for p99, items in points:
        if p99 <= target_ms and (best is None or items > best):
            best, how = items, "measured"
    for (p_a, t_a), (p_b, t_b) in itertools.pairwise(points):
        low, high = (p_a, t_a), (p_b, t_b)
        if p_a > p_b:
            low, high = high, low
        if low[0] <= target_ms < high[0] and high[0] > low[0]:
            value = low[1] + (high[1] - low[1]) * (target_ms - low[0]) / (high[0] - low[0])
            if best is None or value > best:
                best, how = value, "interpolated"
    if best is not None and all(p99 <= target_ms for p99, _ in points):
        how = "at least"
    return best, how


def _runs(runs: Sequence[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in runs if all(r.get(k) == v for k, v in match.items())]


def _sweep(closed: Sequence[dict[str, Any]], model: str, name: str, round_no: int) -> list[tuple[float, float]]:
    mine = sorted(_runs(closed, model=model, target=name, round=round_no), key=lambda r: r["concurrency"])
    return [(r["p99_ms"], r["items_per_s"]) for r in mine]


def reachable_p99(sweeps: Sequence[Sequence[tuple[float, float]]]) -> float | None:
    """The lowest p99 that every one of the sweeps reaches: the largest of their smallest p99s."""
    lows = [min(p99 for p99, _ in sweep) for sweep in sweeps if sweep]
    return max(lows) if lows else None


def _equal_p99(closed: Sequence[dict[str, Any]], model: str, targets: Sequence[str], rounds: int,
               target_ms: float | None) -> dict[str, Any]:
    """Throughput at equal p99, per round. `target_ms` None: the round's lowest p99 that every batching system
    reaches (so every one of them has a value), found per round."""
    per_round: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    targets_used: list[float] = []
    for round_no in range(1, rounds + 1):
        sweeps = {name: _sweep(closed, model, name, round_no) for name in targets}
        at = target_ms
        if at is None:
            at = reachable_p99([sweeps[n] for n in targets if n in BATCHING_TARGETS])
            if at is None:
                continue
        targets_used.append(at)
        for name in targets:
            if not sweeps[name]:
                continue
            value, how = throughput_at_p99(sweeps[name], at)
            per_round[name].append({"round": round_no, "p99_ms": at, "items_per_s": value, "how": how})
    summary: dict[str, Any] = {}
    for name in targets:
        values = [e["items_per_s"] for e in per_round[name] if e["items_per_s"] is not None]
        hows = Counter(e["how"] for e in per_round[name])
        summary[name] = {"items_per_s": summarize(values), "how": dict(hows), "per_round": per_round[name]}
    ratios: dict[str, Any] = {}
    for peer in targets:
        if peer == "meshbatch":
            continue
        paired: list[float] = []
        peer_above = 0
        for own in per_round.get("meshbatch", []):
            theirs = next((e for e in per_round[peer] if e["round"] == own["round"]), None)
            if theirs is None or own["items_per_s"] is None:
                continue
            if theirs["items_per_s"] is None:
                peer_above += 1
                continue
            value = ratio(own["items_per_s"], theirs["items_per_s"])
            if value is not None:
                paired.append(value)
        ratios[peer] = {"paired": summarize(paired), "rounds_peer_above_target": peer_above}
    return {"target_ms": target_ms, "p99_ms_used": summarize(targets_used), "by_target": summary,
            "meshbatch_over": ratios}


def _by_concurrency(closed: Sequence[dict[str, Any]], model: str, targets: Sequence[str],
                    concurrency: Sequence[int], rounds: int) -> dict[str, Any]:
    by_conc: dict[str, Any] = {}
    for callers in concurrency:
        entry: dict[str, Any] = {}
        for name in targets:
            mine = _runs(closed, model=model, target=name, concurrency=callers)
            entry[name] = {f: summarize([r[f] for r in mine if r.get(f) is not None]) for f in FIELDS}
            entry[name]["errors"] = sum(int(r["errors"]) for r in mine)
        ratios: dict[str, Any] = {}
        for other in targets:
            if other == "meshbatch":
                continue
            paired = []
            for round_no in range(1, rounds + 1):
                m = _runs(closed, model=model, target="meshbatch", concurrency=callers, round=round_no)
                o = _runs(closed, model=model, target=other, concurrency=callers, round=round_no)
                if m and o:
                    value = ratio(m[0]["items_per_s"], o[0]["items_per_s"])
                    if value is not None:
                        paired.append(value)
            ratios[other] = summarize(paired)
        entry["meshbatch_over"] = ratios
        by_conc[str(callers)] = entry
    return by_conc


def _open_summary(opened: Sequence[dict[str, Any]], model: str, targets: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("common", "half_own"):
        per: dict[str, Any] = {}
        for name in targets:
            mine = _runs(opened, model=model, target=name, kind=kind)
            if not mine:
                continue
            per[name] = {
                "rate": summarize([r["rate"] for r in mine]),
                "p50_ms": summarize([r["latency_ms"]["p50"] for r in mine]),
                "p99_ms": summarize([r["latency_ms"]["p99"] for r in mine]),
                "service_p99_ms": summarize([r["service_ms"]["p99"] for r in mine
                                             if r["service_ms"]["p99"] is not None]),
                "added_p99_ms": summarize([r["added_p99_ms"] for r in mine if r["added_p99_ms"] is not None]),
                "mean_batch_size": summarize([r["mean_batch_size"] for r in mine
                                              if r["mean_batch_size"] is not None]),
                "errors": sum(int(r["errors"]) for r in mine),
            }
            # The CDF of the run with the median p99, for the plot.
            ordered = sorted(mine, key=lambda r: r["latency_ms"]["p99"])
            per[name]["cdf_ms"] = ordered[len(ordered) // 2]["cdf_ms"]
        out[kind] = per
    return out


def _sizes(runs: Sequence[dict[str, Any]]) -> dict[str, int]:
    total: Counter[int] = Counter()
    for r in runs:
        for size, count in r.get("batch_sizes", {}).items():
            total[int(size)] += int(count)
    return {str(k): v for k, v in sorted(total.items())}


def summarize_run(*, mode: str, settings: dict[str, Any], targets: list[str], skipped: dict[str, str],
                  closed: list[dict[str, Any]], opened: list[dict[str, Any]], failures: list[str],
                  cores: dict[str, Any], machine: dict[str, Any]) -> dict[str, Any]:
    rounds = int(settings["repeat"])
    concurrency: list[int] = settings["concurrency"]
    top = max(concurrency)
    models: dict[str, Any] = {}
    for model in settings["models"]:
        by_conc = _by_concurrency(closed, model, targets, concurrency, rounds)
        equal = _equal_p99(closed, model, targets, rounds, float(settings["p99_target_ms"]))
        reachable = _equal_p99(closed, model, targets, rounds, None)
        sizes = {name: _sizes(_runs(closed, model=model, target=name, concurrency=top)) for name in targets}
        cdf = {}
        for name in targets:
            mine = sorted(_runs(closed, model=model, target=name, concurrency=top), key=lambda r: r["p99_ms"])
            if mine:
                cdf[name] = mine[len(mine) // 2]["cdf_ms"]
        models[model] = {"by_concurrency": by_conc, "equal_p99": equal, "equal_p99_reachable": reachable,
                         "open_loop": _open_summary(opened, model, targets),
                         "batch_sizes_at_top": sizes, "closed_cdf_at_top": cdf}
    foreign = [r["foreign_cpu_share"] for r in closed if r.get("foreign_cpu_share") is not None]
    bars = _bars(models, settings, targets)
    return {
        "scenario": "batching", "mode": mode, "settings": settings, "targets": targets,
        "peers_skipped": skipped, "failures": failures, "pinned": cores, "models": models, "bars": bars,
        "interference": {"foreign_cpu_share": summarize(foreign), "note": "share of the machine's CPU busy "
                         "outside the system under test and the load generator per closed-loop run (other "
                         "processes, and kernel network work not charged to a process)"},
        "runs": {"closed": closed, "open": opened}, "machine": machine,
    }


def _bars(models: dict[str, Any], settings: dict[str, Any], targets: Sequence[str]) -> dict[str, Any]:
    top = str(max(settings["concurrency"]))
    bars: dict[str, Any] = {}
    for model, entry in models.items():
        mine: dict[str, Any] = {}
        if "meshbatch" in targets and "direct" in targets:
            value = entry["by_concurrency"][top]["meshbatch_over"]["direct"]["median"]
            # The bar is for the fixed-overhead work, where batching is the point; the cpu work reports its ratio.
            bar = 10.0 if model == "fixed" else None
            mine["x_direct"] = {"value": value, "bar": bar, "concurrency": int(top),
                                "ok": None if bar is None else value is not None and value >= bar}
        limit = settings["work"].get(model, {}).get("bulk_limit_items_per_s")
        if "meshbatch" in targets and limit:
            # The physical ceiling: the upstream's per-item cost alone, as if the fixed cost per call were free.
            items = entry["by_concurrency"][top]["meshbatch"]["items_per_s"]["median"]
            mine["of_bulk_limit"] = {"items_per_s": items, "limit": limit, "concurrency": int(top),
                                     "value": None if items is None else items / limit}
        for peer in ("ray-serve", "bentoml"):
            if peer in targets and "meshbatch" in targets:
                readings = {}
                for reading in ("equal_p99", "equal_p99_reachable"):
                    r = entry[reading]["meshbatch_over"][peer]
                    value = r["paired"]["median"]
                    # A peer whose p99 is above the target at every concurrency cannot match meshbatch there.
                    ok = (value is not None and value >= 1.0) or (r["rounds_peer_above_target"] > 0
                                                                and r["paired"]["n"] == 0)
                    readings[reading] = {"value": value, "ok": ok,
                                         "rounds_peer_above_target": r["rounds_peer_above_target"]}
                mine[f"x_{peer}_equal_p99"] = {"bar": 1.0, "readings": readings,
                                               "ok": all(v["ok"] for v in readings.values())}
        half = entry["open_loop"].get("half_own", {}).get("meshbatch")
        if half and model == "fixed":
            added = half["added_p99_ms"]["median"]
            limit = float(settings["batch"]["max_wait_ms"]) + 2.0
            mine["added_p99_half_saturation"] = {"value": added, "bar": limit,
                                                 "ok": added is not None and added <= limit}
        bars[model] = mine
    return bars


# ---------------------------------------------------------------- markdown


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**NOT met**")


def _equal_cell(entry: dict[str, Any]) -> str:
    value = entry["items_per_s"]
    if not value["n"]:
        return "p99 > target"
    prefix = ">= " if entry["how"].get("at least") else ""
    missing = entry["how"].get("above", 0)
    suffix = f" ({value['n']} of {value['n'] + missing} rounds; p99 > target in the others)" if missing else ""
    return prefix + spread(value, 0) + suffix


def _ratio_cell(r: dict[str, Any]) -> str:
    if r["paired"]["n"]:
        return spread(r["paired"], 2) + "x"
    if r["rounds_peer_above_target"]:
        return "peer's p99 > target"
    return "-"


def markdown(data: dict[str, Any]) -> str:
    s = data["settings"]
    targets: list[str] = data["targets"]
    mode = "quick smoke run" if data["mode"] == "quick" else "full"
    target_ms = s["p99_target_ms"]
    top = max(s["concurrency"])
    lines = [
        f"## batching ({mode}, {s['repeat']} round(s), medians [min-max])",
        "",
        "The machine is shared with other work and noisy: absolute figures drift from run to run. Read the "
        "ratios first (taken per round between systems measured minutes apart, then the median over rounds), the "
        "absolute figures second.",
        "",
        "### Ratios",
        "",
    ]
    peers = [("ray-serve", "Ray Serve"), ("bentoml", "BentoML")]
    rows = []
    for model in s["models"]:
        entry = data["models"][model]
        for reading, label in (("equal_p99", f"{target_ms:g} ms (fixed target)"),
                               ("equal_p99_reachable", "lowest p99 all batching systems reach")):
            block = entry[reading]
            over = block["meshbatch_over"] if "meshbatch" in targets else {}
            used = spread(block["p99_ms_used"], 1) if reading == "equal_p99_reachable" else f"{target_ms:g}"
            rows.append([model, label, used,
                         *(_ratio_cell(over[p]) if p in over else "not run" for p, _ in peers)])
    lines += [table(["work", "equal p99 at", "p99 ms", *(f"meshbatch / {label}, items/s" for _, label in peers)],
                    rows), ""]
    rows = []
    for model in s["models"]:
        by_top = data["models"][model]["by_concurrency"][str(top)]["meshbatch_over"] if "meshbatch" in targets else {}
        rows.append([model, *(spread(by_top[p], 2) + "x" if p in by_top and by_top[p]["n"] else "-"
                              for p in ("direct", "ray-serve", "bentoml"))])
    lines += [table(["work", f"meshbatch / direct, items/s at {top} callers", f"meshbatch / Ray Serve at {top} callers",
                     f"meshbatch / BentoML at {top} callers"], rows), ""]
    for model, bars in data["bars"].items():
        parts = []
        if "x_direct" in bars and bars["x_direct"]["bar"] is not None:
            parts.append(f"meshbatch >= 10x direct: {_verdict(bars['x_direct']['ok'])}")
        for peer, label in (("ray-serve", "Ray Serve"), ("bentoml", "BentoML")):
            key = f"x_{peer}_equal_p99"
            if key in bars:
                parts.append(f">= {label} at equal p99: {_verdict(bars[key]['ok'])}")
        if "of_bulk_limit" in bars and bars["of_bulk_limit"]["value"] is not None:
            b = bars["of_bulk_limit"]
            parts.append(f"at {b['concurrency']} callers {num(b['items_per_s'], 0)} items/s = {b['value']:.2f} of the "
                         f"upstream's bulk limit ({num(b['limit'], 0)} items/s, its per-item cost alone)")
        if "added_p99_half_saturation" in bars:
            b = bars["added_p99_half_saturation"]
            parts.append(f"added p99 at half of its saturation {num(b['value'])} ms (<= {num(b['bar'], 1)} ms): "
                         f"{_verdict(b['ok'])}")
        if parts:
            lines.append(f"- {model}: " + "; ".join(parts))
    for name, why in data["peers_skipped"].items():
        lines.append(f"- {name}: {why}")
    lines += ["", "### Throughput at equal p99", "",
              "Items/s where each system's closed-loop p99 reaches the target, interpolated along its sweep of "
              "concurrency (`>=`: its p99 stayed under the target at every concurrency, the best measured; "
              "\"p99 > target\": above it at every concurrency). Two targets: a fixed one, and per round the lowest "
              "p99 that every batching system reaches (the largest of their smallest p99s), where all have a value.",
              ""]
    rows = []
    for model in s["models"]:
        entry = data["models"][model]
        reach = spread(entry["equal_p99_reachable"]["p99_ms_used"], 1)
        for name in targets:
            rows.append([model, name, _equal_cell(entry["equal_p99"]["by_target"][name]),
                         _equal_cell(entry["equal_p99_reachable"]["by_target"][name]) + f" (p99 {reach} ms)"])
    lines += [table(["work", "system", f"items/s at p99 = {target_ms:g} ms",
                     "items/s at the lowest p99 all batching systems reach"], rows), ""]
    lines += ["### Closed loop (absolute)", "",
              f"wrk, keep-alive, one item per request, {s['seconds']:g} s per run after {s['warmup_s']} s warm-up. "
              "Mean batch = items / calls of the work over the run. CPU us/item: CPU time of all the system's "
              "processes per item served.", ""]
    rows = []
    for model in s["models"]:
        for callers, entry in data["models"][model]["by_concurrency"].items():
            for name in targets:
                e = entry[name]
                over = entry["meshbatch_over"].get(name) if name != "meshbatch" else None
                rows.append([model, callers, name, spread(e["items_per_s"], 0),
                             spread(over, 2) if over else "-", spread(e["p50_ms"], 1), spread(e["p99_ms"], 1),
                             spread(e["mean_batch_size"], 1), spread(e["sut_cpu_us_per_item"], 0),
                             str(e["errors"])])
    lines += [table(["work", "callers", "system", "items/s", "meshbatch / this", "p50 ms", "p99 ms", "mean batch",
                     "CPU us/item", "errors"], rows), ""]
    lines += ["### Open loop at a common rate (absolute)", "",
              "Every batching system at one light rate ("
              + ", ".join(f"{m} {r:g} items/s" for m, r in s["open_rate"].items())
              + f"; direct too), {s['open_seconds']:g} s after 1 s unrecorded, "
              "latency from the scheduled send (no coordinated omission). Added p99 = p99 minus the work's own "
              "p99 service time per call in the same run. `meshbatch (half own)`: meshbatch at half of its own "
              "saturation.", ""]
    rows = []
    for model in s["models"]:
        for kind in ("common", "half_own"):
            for name, o in data["models"][model]["open_loop"].get(kind, {}).items():
                label = name if kind == "common" else f"{name} (half own)"
                rows.append([model, label, spread(o["rate"], 0), spread(o["p50_ms"], 2), spread(o["p99_ms"], 2),
                             spread(o["service_p99_ms"], 2), spread(o["added_p99_ms"], 2),
                             spread(o["mean_batch_size"], 1), str(o["errors"])])
    lines += [table(["work", "system", "rate items/s", "p50 ms", "p99 ms", "work p99 ms", "added p99 ms",
                     "mean batch", "errors"], rows), ""]
    fixed, cpu = s["work"]["fixed"], s["work"]["cpu"]
    versions = data["machine"]["versions"]
    peer_lines = []
    for name in targets:
        if name in PEERS or name == "meshbatch":
            peer_lines.append(f"- {name} {versions.get(name, '?')}: {s['peer_settings'][name]}")
    interference = data["interference"]["foreign_cpu_share"]
    machine = data["machine"]
    lines += [
        "### Setup",
        "",
        f"- Work, ONE worker in every system: `fixed` {fixed['base_ms']:g} ms + {fixed['per_item_us']:g} us/item, "
        f"{fixed['cost']} (one by one at most {num(fixed['one_by_one_limit_items_per_s'], 0)} items/s, bulk "
        f"limit {num(fixed['bulk_limit_items_per_s'], 0)} items/s); `cpu` {cpu['matrix']} product, {cpu['cost']}.",
        f"- Same batch limits everywhere: max batch {s['batch']['max_batch_size']}, max wait "
        f"{s['batch']['max_wait_ms']:g} ms, {s['batch']['max_in_flight']} batches in flight (BentoML: 1).",
        *peer_lines,
        f"- Layout: {s['layout']}. Same load generators (wrk; `post_loadgen.py`) for all.",
        f"- Interference: {spread(_pct(interference), 0)}% of the machine's CPU was busy outside the system "
        "under test and the load generator during the closed-loop runs (median [min-max] over runs; other "
        "processes, and kernel network work not charged to a process).",
        f"- {machine['cpu_model']}, {machine['cores_usable']} usable cores, Python {machine['python']}, "
        f"{machine['date']}; versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "taskset") + ".",
    ]
    if data["failures"]:
        lines += ["", "Failures:", *(f"- {f}" for f in data["failures"])]
    return "\n".join(lines)


def _pct(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: (v * 100 if isinstance(v, float) else v) for k, v in summary.items()}
