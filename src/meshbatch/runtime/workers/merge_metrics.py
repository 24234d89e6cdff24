"""One Prometheus exposition from the workers' own: counters and histograms summed, gauges per worker. Pure.

- **counters and histograms** (`_bucket`, `_sum`, `_count`) are summed across the workers, series by series: the
  view is that of one proxy, and `rate()` and `histogram_quantile()` work on it as on one process;
- **gauges** (and any other type) keep one series per worker, with a `worker` label (`"0"`, `"1"` ...): a sum of
  loop lags, config versions or start times would mean nothing; `sum without (worker)` adds those that add up
  (connections, queued items);
- a worker that restarts begins its counters at zero: its previous incarnation's last scraped counters are kept
  and added (`retire`), so the sums never go down (what it counted after the last scrape before its death is lost);
- a worker that does not answer a scrape counts with its last scrape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

ADDITIVE = frozenset({"counter", "histogram"})
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(slots=True)
class Family:
    name: str
    documentation: str
    type: str
    samples: dict[SampleKey, float] = field(default_factory=dict)


def parse(text: str) -> dict[str, Family]:
    """A worker's `/stats/prometheus` text as families of samples (prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Family] = {}
    for metric in text_string_to_metric_families(text):
        family = out.setdefault(metric.name, Family(metric.name, metric.documentation, metric.type))
        for sample in metric.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            family.samples[key] = family.samples.get(key, 0.0) + float(sample.value)
    return out


def _add(into: dict[str, Family], families: Iterable[Family], worker: str | None) -> None:
    """Sum `families` into `into`; with `worker`, the non-additive ones as series labelled with it."""
    for family in families:
        additive = family.type in ADDITIVE
        if worker is not None and not additive:
            target = into.setdefault(family.name, Family(family.name, family.documentation, family.type))
            for (name, labels), value in family.samples.items():
                target.samples[(name, (*labels, ("worker", worker)))] = value
        elif additive:
            target = into.setdefault(family.name, Family(family.name, family.documentation, family.type))
            for key, value in family.samples.items():
                target.samples[key] = target.samples.get(key, 0.0) + value


class MetricMerger:
    """The workers' last scrapes and what their earlier incarnations counted."""

    def __init__(self) -> None:
        self._retired: dict[str, Family] = {}  # counters and histograms of workers since restarted, summed
        self._last: dict[int, tuple[int, dict[str, Family]]] = {}  # worker -> (pid, its last scrape)

    def update(self, worker: int, pid: int, families: dict[str, Family] | None) -> None:
        """Worker `worker` (now process `pid`) scraped: `families`, or None when it did not answer."""
        last = self._last.get(worker)
        if last is not None and last[0] != pid:
            self.retire(worker)
            last = None
        if families is not None:
            self._last[worker] = (pid, families)

    def retire(self, worker: int) -> None:
        """Worker `worker`'s process is gone: its counters stay in the sums, its gauges leave."""
        last = self._last.pop(worker, None)
        if last is not None:
            _add(self._retired, last[1].values(), None)

    def merged(self, *extra: Family) -> dict[str, Family]:
        out: dict[str, Family] = {}
        _add(out, self._retired.values(), None)
        for worker, (_, families) in sorted(self._last.items()):
            _add(out, families.values(), str(worker))
        for family in extra:  # the supervisor's own series, as they are
            out[family.name] = family
        return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render(families: dict[str, Family]) -> bytes:
    """The text exposition format (0.0.4), as prometheus_client writes it."""
    lines: list[str] = []
    for family in sorted(families.values(), key=lambda f: f.name):
        name = family.name + "_total" if family.type == "counter" and not family.name.endswith("_total") else \
            family.name
        doc = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {name} {doc}")
        lines.append(f"# TYPE {name} {family.type}")
        for (sample, labels), value in family.samples.items():
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{sample}{{{text}}} {_number(value)}" if text else
                         f"{sample} {_number(value)}")
    return ("\n".join(lines) + "\n").encode()


__all__ = ["Family", "MetricMerger", "parse", "render"]
