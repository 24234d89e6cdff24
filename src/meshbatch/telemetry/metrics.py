"""Metrics: plain counters on the hot path, Prometheus exposition at scrape time.

`prometheus_client`'s own metric objects take a lock and a label lookup per update (~1-2 us), which is a
large share of the ~10 us a proxied request may spend in Python. So components count into plain ints and
bucket arrays (`Counter`, `Histogram` below) and register a collector; `/metrics` renders them through
`prometheus_client` (its exposition format, its Collector API) only when scraped; the library (with the HTTP
server, WSGI and urllib modules it imports, a few MB) is imported by the first scrape, not before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from meshbatch.telemetry.histogram import LATENCY_BUCKETS, SIZE_BUCKETS, Histogram

if TYPE_CHECKING:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

Labels = tuple[str, ...]


class Counter:
    """A labelled counter: `inc(labels)` is a dict update."""

    __slots__ = ("documentation", "label_names", "name", "values")

    def __init__(self, name: str, documentation: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = list(label_names)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1) -> None:
        values = self.values
        values[labels] = values.get(labels, 0) + amount

    def get(self, labels: Labels) -> float:
        return self.values.get(labels, 0)

    def family(self) -> CounterMetricFamily:
        from prometheus_client.core import CounterMetricFamily

        fam = CounterMetricFamily(self.name, self.documentation, labels=self.label_names)
        for labels, value in self.values.items():
            fam.add_metric(list(labels), value)
        return fam


class HistogramVec:
    """Histograms by label tuple."""

    __slots__ = ("bounds", "documentation", "label_names", "name", "series")

    def __init__(self, name: str, documentation: str, label_names: Sequence[str],
                 bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = list(label_names)
        self.bounds = tuple(bounds)
        self.series: dict[Labels, Histogram] = {}

    def labels(self, labels: Labels) -> Histogram:
        hist = self.series.get(labels)
        if hist is None:
            hist = self.series[labels] = Histogram(self.bounds)
        return hist

    def family(self) -> HistogramMetricFamily:
        from prometheus_client.core import HistogramMetricFamily

        fam = HistogramMetricFamily(self.name, self.documentation, labels=self.label_names)
        for labels, hist in self.series.items():
            fam.add_metric(list(labels), hist.buckets(), hist.sum)
        return fam


class Gauge:
    """A gauge whose values are read from a function at scrape time."""

    __slots__ = ("documentation", "label_names", "name", "read")

    def __init__(self, name: str, documentation: str, label_names: Sequence[str],
                 read: Callable[[], Iterable[tuple[Labels, float]]]) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = list(label_names)
        self.read = read

    def family(self) -> GaugeMetricFamily:
        from prometheus_client.core import GaugeMetricFamily

        fam = GaugeMetricFamily(self.name, self.documentation, labels=self.label_names)
        for labels, value in self.read():
            fam.add_metric(list(labels), value)
        return fam


Metric = Counter | HistogramVec | Gauge


class Registry:
    """The process's metrics: components add their metrics (or a source of them) once at build time."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._sources: list[Callable[[], Iterable[Metric]]] = []
        # The standard process_* series (RSS, open fds, CPU seconds), read from /proc when scraped.
        self._process: Any = None

    def add(self, metric: Metric) -> Any:
        existing = self._metrics.get(metric.name)
        if existing is not None:
            return existing
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, documentation: str, label_names: Sequence[str]) -> Counter:
        metric = self.add(Counter(name, documentation, label_names))
        assert isinstance(metric, Counter)
        return metric

    def histogram(self, name: str, documentation: str, label_names: Sequence[str],
                  bounds: Sequence[float] = LATENCY_BUCKETS) -> HistogramVec:
        metric = self.add(HistogramVec(name, documentation, label_names, bounds))
        assert isinstance(metric, HistogramVec)
        return metric

    def gauge(self, name: str, documentation: str, label_names: Sequence[str],
              read: Callable[[], Iterable[tuple[Labels, float]]]) -> Gauge:
        metric = self.add(Gauge(name, documentation, label_names, read))
        assert isinstance(metric, Gauge)
        return metric

    def add_source(self, source: Callable[[], Iterable[Metric]]) -> None:
        """A callable yielding metrics at scrape time (for components replaced on reload)."""
        self._sources.append(source)

    def remove_source(self, source: Callable[[], Iterable[Metric]]) -> None:
        if source in self._sources:
            self._sources.remove(source)

    def collect(self) -> Iterator[Any]:
        merged: dict[str, list[Metric]] = {}
        for metric in self._metrics.values():
            merged.setdefault(metric.name, []).append(metric)
        for source in list(self._sources):
            for metric in source():
                merged.setdefault(metric.name, []).append(metric)
        for parts in merged.values():
            families = [m.family() for m in parts]
            head = families[0]
            for extra in families[1:]:
                head.samples.extend(extra.samples)
            yield head

    def render(self) -> bytes:
        from prometheus_client.exposition import generate_latest
        from prometheus_client.process_collector import ProcessCollector
        from prometheus_client.registry import CollectorRegistry

        if self._process is None:
            self._process = ProcessCollector(registry=None)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)  # type: ignore[arg-type]
        registry.register(self._process)
        out: bytes = generate_latest(registry)
        return out


__all__ = [
    "LATENCY_BUCKETS",
    "SIZE_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "HistogramVec",
    "Registry",
]
