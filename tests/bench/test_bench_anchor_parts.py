"""`bench anchor`'s pure parts: the payload, the configs with telemetry on, /proc samples to vCPU and MB, report."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from meshbatch import checkout


@pytest.fixture(scope="module")
def parts() -> ModuleType:
    checkout.load("bench")
    return importlib.import_module("bench.anchor_parts")


def _pki(parts: ModuleType, tmp_path: Path) -> object:
    peers_mtls = importlib.import_module("bench.peers_mtls")
    files = {name: tmp_path / name for name in ("ca", "client_cert", "client_key", "client_pem", "server_cert",
                                                 "server_key", "server_pem")}
    return peers_mtls.Pki(**files)


def test_payload_is_exact_and_safe_inside_an_nginx_string(parts: ModuleType) -> None:
    body = parts.payload()
    assert len(body.encode()) == 1024 == parts.PAYLOAD_BYTES
    assert '"' not in body and "\\" not in body and "$" not in body
    assert len(parts.payload(1)) == 1 and parts.payload(0) == ""


def test_configs_turn_telemetry_on(parts: ModuleType, tmp_path: Path) -> None:
    pki = _pki(parts, tmp_path)
    ports = {"out": 8001, "in": 8002, "upstream": 8003, "admin_out": 9001, "admin_in": 9002}
    mesh = parts.meshbatch_confs(ports, pki, tmp_path)
    assert "admin: {listen: 127.0.0.1:9001}" in mesh["outbound"] and "listen: 127.0.0.1:8001" in mesh["outbound"]
    assert "admin: {listen: 127.0.0.1:9002}" in mesh["inbound"] and "127.0.0.1:8003" in mesh["inbound"]
    assert all(f"access_log: {{path: {tmp_path}/" in conf for conf in mesh.values())
    nginx = parts.nginx_confs(ports, pki, tmp_path)
    assert all("access_log off;" not in conf and "buffer=64k flush=1s;" in conf for conf in nginx.values())
    upstream = parts.upstream_conf(tmp_path, 8003, "ok")
    assert f'return 200 "{parts.payload()}";' in upstream and 'return 200 "ok";' in upstream


def test_steady_window_and_figures(parts: ModuleType) -> None:
    sample = parts.Sample
    # 0.5 vCPU (0.05 CPU s per 0.1 s), RSS 50 MiB then 60 MiB; a burst at start and end to be cut off.
    samples = [sample(0.0, 0.0, 10 * 1024), sample(0.1, 0.5, 10 * 1024)]
    samples += [sample(0.1 + 0.1 * i, 0.5 + 0.05 * i, (50 if i < 5 else 60) * 1024) for i in range(1, 21)]
    samples += [sample(2.2, 10.0, 90 * 1024)]
    kept = parts.steady(samples, 0.15, 0.05)
    assert kept[0].at == pytest.approx(0.2) and kept[-1].at == pytest.approx(2.1)
    fig = parts.side_figures(kept, 2000.0)
    assert fig["vcpu"] == 0.5 and fig["vcpu_per_1000_rps"] == 0.25 and fig["cpu_us_per_request"] == 250.0
    assert fig["rss_peak_mb"] == 60.0 and fig["rss_end_mb"] == 60.0 and fig["window_s"] == 1.9
    # Too few samples, no time elapsed, or nothing answered: no figure rather than a division by zero.
    assert parts.steady(samples[:1], 1.0, 1.0) == samples[:1]
    assert parts.steady(samples[:3], 5.0, 5.0) == samples[:3]
    assert parts.side_figures([], 1000.0)["vcpu"] is None
    assert parts.side_figures([sample(1.0, 0.0, 1), sample(1.0, 1.0, 1)], 1000.0)["vcpu"] is None
    assert parts.side_figures(samples[:3], 0.0)["vcpu_per_1000_rps"] is None


def test_pair_sums_and_report_beside_istio(parts: ModuleType) -> None:
    side = {"vcpu": 0.1, "vcpu_per_1000_rps": 0.1, "cpu_us_per_request": 100.0, "rss_peak_mb": 30.0,
            "rss_end_mb": 29.0, "window_s": 18.0, "processes": 1}
    pair = parts.pair_figures({"outbound": side, "inbound": side | {"vcpu_per_1000_rps": 0.2}})
    assert pair["vcpu_per_1000_rps"] == 0.3 and pair["rss_peak_mb"] == 60.0
    assert parts.pair_figures({"outbound": side, "inbound": side | {"vcpu": None}})["vcpu"] is None
    row = {"outbound": side, "inbound": side, "pair": parts.pair_figures({"outbound": side, "inbound": side}),
           "load": {"achieved_rps": 999.0, "errors": 0, "p50_ms": 0.5, "p99_ms": 2.0}, "scrapes": 40,
           "access_log_lines": 42000}
    data = {"rate": 1000.0, "duration_s": 20.0, "payload_bytes": 1024, "istio": parts.ISTIO,
            "results": {"meshbatch": row}}
    text = parts.render(data)
    assert "| Istio 1.24 Envoy sidecar (published, 2 workers) | 0.2 | 0.2 | 1.00x | 60 | 1.00x | 200 |" in text
    assert "| meshbatch outbound | 0.1 | 0.1 | 0.50x | 30.0 | 0.50x | 100.0 |" in text
    assert "| meshbatch pair (both sidecars) | 0.2 | 0.2 | 0.50x | 60.0 | 0.50x | 200.0 |" in text
    assert "| meshbatch | 999.0 | 0 | 0.5 | 2.0 | 40 | 42000 |" in text
