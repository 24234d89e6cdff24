"""The ingest counters follow an event's life, one counter per transition: each sums over its labels, and the
backlog follows from them. The delivery latency is measured from acceptance (the wall clock, passed in)."""

from __future__ import annotations

import random
from pathlib import Path

from ingest_support import ScriptedSink, records, sqlite_log
from prometheus_client.parser import text_string_to_metric_families

from meshbatch.clock import FakeClock
from meshbatch.core.backoff import Backoff
from meshbatch.ingest.flusher import Flusher, FlushPolicy
from meshbatch.ingest.observers import IngestMetrics
from meshbatch.telemetry.metrics import Registry


def samples(registry: Registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(registry.render().decode()):
        for sample in family.samples:
            if sample.name.startswith("meshbatch_ingest"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_each_transition_has_its_counter_and_they_add_up(tmp_path: Path) -> None:
    clock = FakeClock()
    wall = [1700000000.0]
    registry = Registry()
    metrics = IngestMetrics(registry, "r", wall_clock=lambda: wall[0])
    log = sqlite_log(tmp_path, clock)
    await log.open()
    batch = records(6)  # received 1700000000 + i
    await log.append(batch)
    metrics.accepted(6)
    metrics.dead_lettered("pipeline", 2)  # two more events of the same requests, refused by validate
    sink = ScriptedSink()
    flusher = Flusher("r", log, sink, FlushPolicy(max_attempts=2, backoff_initial=1.0, backoff_max=1.0), clock,
                      metrics=metrics, backoff=Backoff(1.0, 1.0, random.Random(3).random))
    sink.fail_ids = {"e4", "e5"}
    wall[0] = 1700000010.0
    await flusher.step()  # e0..e3 delivered after 10, 9, 8, 7 s; e4 and e5 failed once
    clock.advance(1.0)
    sink.fail_ids = {"e5"}
    await flusher.step()  # e4 delivered (6 s); e5 dead-lettered at its second attempt
    sink.down = True
    await log.append(records(3, 10))
    metrics.accepted(3)
    await flusher.step()  # an outage: three events held
    await log.flush()

    got = samples(registry)
    route = (("route", "r"),)
    assert got[("meshbatch_ingest_events_accepted_total", route)] == 9
    assert got[("meshbatch_ingest_events_delivered_total", route)] == 5
    assert got[("meshbatch_ingest_events_dead_lettered_total", (("route", "r"), ("stage", "pipeline")))] == 2
    assert got[("meshbatch_ingest_events_dead_lettered_total", (("route", "r"), ("stage", "delivery")))] == 1
    assert got[("meshbatch_ingest_delivery_retries_total", (("cause", "failed"), ("route", "r")))] == 2
    assert got[("meshbatch_ingest_delivery_retries_total", (("cause", "outage"), ("route", "r")))] == 3
    assert ("meshbatch_ingest_events_total", route) not in got
    backlog = got[("meshbatch_ingest_events_accepted_total", route)] \
        - got[("meshbatch_ingest_events_delivered_total", route)] \
        - got[("meshbatch_ingest_events_dead_lettered_total", (("route", "r"), ("stage", "delivery")))]
    assert backlog == log.stats()["backlog"] == 3

    assert got[("meshbatch_ingest_delivery_latency_seconds_count", route)] == 5
    assert got[("meshbatch_ingest_delivery_latency_seconds_sum", route)] == 10 + 9 + 8 + 7 + 6
    assert got[("meshbatch_ingest_delivery_latency_seconds_bucket", (("le", "5.0"), ("route", "r")))] == 0
    assert got[("meshbatch_ingest_delivery_latency_seconds_bucket", (("le", "10.0"), ("route", "r")))] == 5
    summary = flusher.summary()
    assert (summary["delivered"], summary["retried"], summary["held"], summary["dead_lettered"]) == (5, 2, 3, 1)
    await log.close()


def test_the_batch_histograms_name_their_units() -> None:
    from meshbatch.batching.stats import BatchMetrics

    registry = Registry()
    BatchMetrics(registry, "r")
    histograms = {family.name: family.documentation for family in registry.collect() if family.type == "histogram"}
    assert set(histograms) == {"meshbatch_batch_size_items", "meshbatch_batch_size_callers",
                               "meshbatch_batch_queue_seconds", "meshbatch_batch_upstream_seconds"}
    assert all(("(unit: " in doc) or doc.startswith("Seconds") for doc in histograms.values())
