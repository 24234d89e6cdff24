"""The pure parts of the `anchor` scenario: configurations of the pairs with telemetry on, the arithmetic from
/proc samples to vCPU and MB, and the report beside Istio's published sidecar figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import peers_mtls
from .common import LOOPBACK, ratio
from .peers import _nginx_common, _nginx_http_common
from .sampling import Sample

PAYLOAD_BYTES = 1024
# Istio's own published figure for one Envoy sidecar (Istio 1.24 docs, "Performance and Scalability", "Sidecar and
# ztunnel resource usage"): 1,000 HTTP requests/s through the proxy, 1 KB payloads, 2 worker threads, mTLS and
# telemetry on as its load tests run them.
ISTIO = {"version": "1.24", "vcpu": 0.20, "rss_mb": 60.0, "rate": 1000.0, "payload_bytes": PAYLOAD_BYTES,
         "workers": 2, "source": 'Istio 1.24 docs: "Performance and Scalability" (sidecar resource usage)'}
SIDES = ("outbound", "inbound")


def payload(size: int = PAYLOAD_BYTES) -> str:
    """A printable body of exactly `size` bytes (no quotes or backslashes: it goes into nginx's `return`)."""
    text = "meshbatch-anchor-"
    return (text * (size // len(text) + 1))[:size]


def upstream_conf(workdir: Path, port: int, ready_body: str) -> str:
    """nginx answering POST with a 1 KB body (the load), anything else with `ready_body` (the readiness probe)."""
    return (
        _nginx_common(workdir, "anchor-upstream")
        + "http {"
        + _nginx_http_common(workdir, "anchor-upstream")
        + f"""
    server {{
        listen {LOOPBACK}:{port} backlog=4096;
        location / {{
            default_type text/plain;
            if ($request_method = POST) {{ return 200 "{payload()}"; }}
            return 200 "{ready_body}";
        }}
    }}
}}
"""
    )


def _meshbatch_telemetry(conf: str, admin_port: int, access_log: Path) -> str:
    """A pair side's config with its admin listener on a known port (for the scrape) and the access log on."""
    return conf.replace(f"admin: {{listen: {LOOPBACK}:0}}", f"admin: {{listen: {LOOPBACK}:{admin_port}}}", 1) + (
        f"access_log: {{path: {access_log}}}\n"
    )


def meshbatch_confs(ports: dict[str, int], pki: peers_mtls.Pki, workdir: Path) -> dict[str, str]:
    """`ports`: out, in, upstream, admin_out, admin_in. The `mtls` scenario's pair plus metrics and access logs."""
    out = peers_mtls.meshbatch_outbound_conf(ports["out"], ports["in"], pki)
    inb = peers_mtls.meshbatch_inbound_conf(ports["in"], ports["upstream"], pki)
    return {"outbound": _meshbatch_telemetry(out, ports["admin_out"], workdir / "meshbatch-out.access.log"),
            "inbound": _meshbatch_telemetry(inb, ports["admin_in"], workdir / "meshbatch-in.access.log")}


def nginx_confs(ports: dict[str, int], pki: peers_mtls.Pki, workdir: Path) -> dict[str, str]:
    """The `mtls` scenario's nginx pair with its access log on, buffered and flushed every second like meshbatch's
    (nginx has no metrics endpoint of its own to scrape)."""
    def logged(conf: str, tag: str) -> str:
        line = f"access_log {workdir}/{tag}.access.log combined buffer=64k flush=1s;"
        return conf.replace("access_log off;", line, 1)

    out = peers_mtls.nginx_outbound_conf(workdir, ports["out"], ports["in"], pki)
    inb = peers_mtls.nginx_inbound_conf(workdir, ports["in"], ports["upstream"], pki)
    return {"outbound": logged(out, "nginx-out"), "inbound": logged(inb, "nginx-in")}


def steady(samples: list[Sample], skip_head: float, skip_tail: float) -> list[Sample]:
    """The samples of the steady part of a run: `skip_head` seconds after the first and `skip_tail` before the
    last dropped (the load generator's start and warm-up, its final settling); all of them if too few remain."""
    if len(samples) < 2:
        return samples
    lo, hi = samples[0].at + skip_head, samples[-1].at - skip_tail
    kept = [s for s in samples if lo <= s.at <= hi]
    return kept if len(kept) >= 2 else samples


def side_figures(samples: list[Sample], achieved_rps: float) -> dict[str, Any]:
    """vCPU (CPU seconds over wall seconds) across the samples, the same scaled to 1,000 req/s, CPU per request,
    and the RSS peak and last value in MB."""
    if len(samples) < 2 or samples[-1].at <= samples[0].at:
        return {"vcpu": None, "vcpu_per_1000_rps": None, "cpu_us_per_request": None,
                "rss_peak_mb": None, "rss_end_mb": None, "window_s": 0.0}
    wall = samples[-1].at - samples[0].at
    vcpu = (samples[-1].cpu_s - samples[0].cpu_s) / wall
    per_request = vcpu / achieved_rps if achieved_rps > 0 else None
    return {
        "vcpu": round(vcpu, 3),
        "vcpu_per_1000_rps": None if per_request is None else round(per_request * 1000, 3),
        "cpu_us_per_request": None if per_request is None else round(per_request * 1e6, 1),
        "rss_peak_mb": round(max(s.rss_kib for s in samples) / 1024, 1),
        "rss_end_mb": round(samples[-1].rss_kib / 1024, 1),
        "window_s": round(wall, 2),
    }


def pair_figures(sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The two sidecars together: vCPU and RSS summed."""
    def total(key: str, digits: int) -> float | None:
        values = [sides[s].get(key) for s in SIDES]
        return None if any(v is None for v in values) else round(sum(float(v) for v in values if v is not None),
                                                                 digits)

    return {"vcpu": total("vcpu", 3), "vcpu_per_1000_rps": total("vcpu_per_1000_rps", 3),
            "cpu_us_per_request": total("cpu_us_per_request", 1), "rss_peak_mb": total("rss_peak_mb", 1),
            "rss_end_mb": total("rss_end_mb", 1)}


def _fmt(value: Any, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value}{suffix}"


def _x(a: float | None, b: float | None) -> str:
    r = ratio(a, b)
    return "" if r is None else f"{r:.2f}x"


def render(data: dict[str, Any]) -> str:
    istio, res = data["istio"], data["results"]
    lines = [f"## The published anchor: one sidecar at {data['rate']:g} req/s, {data['payload_bytes']} B payloads, "
             "mTLS and telemetry on", "",
             "| sidecar | vCPU | vCPU per 1,000 req/s | vs Istio | RSS peak (MB) | vs Istio | CPU per request (us) |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             f"| Istio {istio['version']} Envoy sidecar (published, {istio['workers']} workers) | {istio['vcpu']} | "
             f"{istio['vcpu']} | 1.00x | {istio['rss_mb']:g} | 1.00x | {istio['vcpu'] * 1000:g} |"]
    for name, row in res.items():
        for side in (*SIDES, "pair"):
            fig = row[side]
            label = f"{name} {side}" + (" (both sidecars)" if side == "pair" else "")
            per_k = fig.get("vcpu_per_1000_rps")
            mem = fig.get("rss_peak_mb")
            istio_cpu = istio["vcpu"] * (2 if side == "pair" else 1)
            istio_mem = istio["rss_mb"] * (2 if side == "pair" else 1)
            lines.append(f"| {label} | {_fmt(fig.get('vcpu'))} | {_fmt(per_k)} | {_x(per_k, istio_cpu)} | "
                         f"{_fmt(mem)} | {_x(mem, istio_mem)} | {_fmt(fig.get('cpu_us_per_request'))} |")
    lines += ["", "| pair | achieved req/s | errors | p50 (ms) | p99 (ms) | scrapes | access log lines |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in res.items():
        load = row["load"]
        lines.append(f"| {name} | {load['achieved_rps']} | {load['errors']} | {load['p50_ms']} | {load['p99_ms']} | "
                     f"{row['scrapes']} | {row['access_log_lines']} |")
    lines += ["", f"{data['duration_s']:g} s at a fixed {data['rate']:g} req/s (open loop), POST with a "
              f"{data['payload_bytes']} B body answered with {data['payload_bytes']} B, through client sidecar "
              "==mTLS==> server sidecar -> nginx upstream; each sidecar one worker, both on the proxy core. vCPU is "
              "CPU seconds (/proc/PID/stat) over wall seconds in the steady part of the run; the pair rows compare "
              "with two Istio sidecars. meshbatch: /metrics of both sidecars scraped every second, access log to "
              "a file. nginx: access log to a file (buffered, flushed every second), no metrics endpoint. "
              f"Istio's figure: {istio['source']} (a Kubernetes mesh of 1,000 services, not this machine). "
              "`meshbatch bench anchor`."]
    return "\n".join(lines)
