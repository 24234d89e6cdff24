"""Scenario `mtls`: what mTLS between sidecars costs: meshbatch, nginx and haproxy each as a sidecar pair.

    wrk --HTTP--> outbound proxy ==mTLS==> inbound proxy --HTTP--> upstream (nginx, 2-byte body)

The method of the `proxy` scenario (same upstream, wrk closed loop for peak requests/s, fixed-rate open loop for
the latency added over no proxy, interleaved rounds), with a pair of proxies and mutual TLS between them in place
of one proxy: what a request costs crossing two sidecars of a mesh that does its own mTLS (meshbatch without
Istio). The certificates are the same for all (`meshbatch ca`; see bench/peers_mtls.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import peers_mtls, scenario_proxy
from .common import CorePlan
from .peers import Peer
from .runner import RunContext, ScenarioResult

NAME = "mtls"
SUMMARY = "sidecar pairs with mTLS between them: meshbatch vs nginx vs haproxy vs no proxy"
ORDER = 15


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scenario_proxy.add_arguments(parser)


def run(ctx: RunContext) -> ScenarioResult:
    pki: list[peers_mtls.Pki] = []

    def prepare(workdir: Path) -> None:
        pki.append(peers_mtls.make_pki(workdir))

    def start(name: str, tools: dict[str, str], workdir: Path, cores: CorePlan, upstream: int) -> Peer:
        return peers_mtls.start_pair(name, tools, workdir, cores, upstream, pki[0])

    return scenario_proxy.measure(ctx, NAME, start, prepare)


def plot(data: dict[str, Any], out_dir: Path) -> list[Path]:
    return scenario_proxy.plot(data, out_dir)
