"""The pure parts of `meshbatch bench grpc` (never a speed): its configs are valid, streams spread over h2load
connections, and the report states the goals from recorded runs."""

from __future__ import annotations

from pathlib import Path

from bench import grpc_report, peers_grpc, scenario_grpc
from meshbatch.config.load import parse

BATCH = {"max_items": 64, "max_wait_ms": 5.0, "max_in_flight": 2, "timeout_ms": 10_000}


def test_meshbatch_config_batches_get_and_proxies_the_rest() -> None:
    config = parse(peers_grpc.meshbatch_conf(1000, 1001, 1002, BATCH))
    get, proxy = config.listeners[0].routes
    assert get.batch is not None and get.batch.codec == "grpc" and get.match.path == peers_grpc.GET
    assert getattr(proxy, "batch", None) is None and proxy.match.path_prefix == "/bench.Proxy/"
    assert {c.name: c.protocol for c in config.clusters} == {"work": "http2", "static": "http2"}


def test_nginx_config_passes_both_services_over_grpc(tmp_path: Path) -> None:
    text = peers_grpc.nginx_conf(tmp_path, 1000, 1001, 1002, (1, 22, 1))
    assert "grpc_pass grpc://grpc_work;" in text and "grpc_pass grpc://grpc_static;" in text
    static = peers_grpc._static_conf(tmp_path, 1003, (1, 25, 1))
    assert "add_trailer grpc-status 0 always;" in static and "mirror_request_body on;" in static
    assert (tmp_path / "grpc-static" / "answer").read_bytes() == peers_grpc.MESSAGE


def test_streams_are_spread_32_a_connection() -> None:
    assert [scenario_grpc._connections(s) for s in (1, 16, 32, 64, 256)] == [(1, 1), (1, 16), (1, 32), (2, 32),
                                                                             (8, 32)]


def _run(part: str, target: str, streams: int, rps: float, round_no: int = 1, **extra: float) -> dict[str, object]:
    return {"round": round_no, "part": part, "streams": streams, "target": target, "rps": rps, "p50_ms": 1.0,
            "p99_ms": 2.0, "proxy_cpu_us_per_request": 50.0, "proxy_core_busy": 0.5, **extra}


def test_report_states_both_goals() -> None:
    settings = {"parts": ["batching", "proxying"], "streams": [256], "repeat": 1, "per_connection": 32,
                "seconds": 1.0, "warmup_seconds": 0.0, "protocol": "h2c", "batch": BATCH,
                "work": {"model": "fixed", "base_ms": 2.0, "per_item_us": 20.0}}
    runs = [_run("batching", "direct", 256, 400.0, mean_batch=1.0), _run("batching", "meshbatch", 256, 4800.0,
                                                                         mean_batch=60.0),
            _run("batching", "nginx", 256, 390.0, mean_batch=1.0), _run("proxying", "nginx", 256, 10000.0),
            _run("proxying", "meshbatch", 256, 6000.0), {"round": 1, "part": "proxying", "streams": 256,
                                                         "target": "meshbatch", "error": "h2load failed"}]
    data = {"mode": "quick", "settings": settings, "summary": grpc_report.summary(runs, settings),
            "cores": {"proxy_core": 1, "load_and_upstream_core": 0}, "raw": {"closed_loop": runs},
            "machine": {"cpu_model": "cpu", "cores_usable": 2, "date": "today", "note": "shared"}}
    text = grpc_report.markdown(data)
    assert "batched / direct items/s at 256 streams: **12.00x** (goal >= 10x) (met)" in text
    assert "256 streams 0.60x" in text
    assert "| 256 | meshbatch | 4,800 | 12.00 |" in text
