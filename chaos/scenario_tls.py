"""Certificate rotation under mTLS load: callers -> outbound proxy -> (mTLS) -> inbound proxy -> upstreams.

While the load runs: both workload certificates are re-issued in place; then the CA rotates (bundles trust both
roots, workloads re-issued by the new CA, bundles trust only the new root). The outbound proxy's upstream
connections close after 300 ms idle, so new handshakes happen throughout. Nothing may fail, and no handshake may
be refused."""

from __future__ import annotations

import contextlib
import functools
import io
import time
from pathlib import Path
from typing import Any

from .accounting import Bars, account
from .common import Context, Scenario, ScenarioResult, wait_until
from .harness import Step, Timeline, default_streams, drive, leak_checks, planned_requests, proxy_sides
from .loadgen import LoadGen
from .mesh import (
    Proxy,
    access_log,
    batched_route,
    cluster,
    config,
    listener,
    metric_value,
    route,
    svc_cluster,
    sync_route,
)
from .upstream import IdFleet

TD = "example.org"


def _tls_helpers() -> Any:
    from testbed.pki import Pki, bundle, client_context, serial_of, served_serial

    class QuietPki(Pki):
        """The tests' PKI (`meshbatch ca` in-process), without the command's report on stdout."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                super().__init__(*args, **kwargs)

        def issue(self, *args: Any, **kwargs: Any) -> Any:
            with contextlib.redirect_stdout(io.StringIO()):
                return super().issue(*args, **kwargs)

    return QuietPki, bundle, client_context, served_serial, serial_of


def rotation(ctx: Context) -> ScenarioResult:
    result = ScenarioResult("cert-rotation", SCENARIOS[0].title)
    work = ctx.dir("cert-rotation")
    Pki, bundle, client_context, served_serial, serial_of = _tls_helpers()
    pki = Pki(work)
    pki.issue("server", "/ns/shop/sa/orders")
    pki.issue("web", "/ns/shop/sa/web")
    for name in ("server", "web"):
        bundle(work / f"{name}-bundle.crt", pki.ca)
    fleet = IdFleet(work).start("a", "b", "c")
    log = work / "access.log"
    proxies: list[Proxy] = []
    try:
        inbound = Proxy(work / "inbound.yaml", config(
            [listener("in", [route("in", "svc", {"path_prefix": "/"}, timeout_ms=2000)], tls={"mode": "strict"})],
            [svc_cluster(fleet.addresses())], identity=pki.identity("server", ca=work / "server-bundle.crt")))
        proxies.append(inbound)
        host, port = inbound.address("in")
        peer = cluster("peer", f"{host}:{port}", tls={"mode": "strict", "server_ids": [f"spiffe://{TD}/ns/shop/*"]},
                       idle_timeout_ms=300, connect_timeout_ms=1000)
        outbound_cfg = config([listener("main", [sync_route(cluster_name="peer"),
                                                 batched_route(cluster_name="peer")])], [peer],
                              identity=pki.identity("web", ca=work / "web-bundle.crt"), drain_timeout_ms=5000)
        outbound_cfg["access_log"] = access_log(log)
        outbound = Proxy(work / "outbound.yaml", outbound_cfg)
        proxies.append(outbound)
        probe = client_context(pki.ca, work / "web.crt", work / "web.key")
        first_serial = served_serial((host, port), probe)
        state: dict[str, Any] = {"probe": probe}

        def reloads(proxy: Proxy) -> float:
            return proxy.metric("meshbatch_tls_certificate_reloads_total", result="ok")

        def reloaded(proxy: Proxy, count: float) -> bool:
            return reloads(proxy) > count

        def served(expected: int) -> bool:
            try:
                return bool(served_serial((host, port), state["probe"]) == expected)
            except OSError:  # (ssl.SSLError too) the probe may not trust what is served yet
                return False

        def reissue() -> None:
            pki.issue("server", "/ns/shop/sa/orders")
            pki.issue("web", "/ns/shop/sa/web")
            serial = serial_of(work / "server.crt")
            wait_until(lambda: served(serial), 10, "the re-issued server certificate")

        def write_bundles(*cas: Path) -> None:
            before = {p.pid: reloads(p) for p in proxies}
            for name in ("server", "web"):
                bundle(work / f"{name}-bundle.crt", *cas)
            for p in proxies:
                wait_until(functools.partial(reloaded, p, before[p.pid]), 10, "the new trust bundle loaded")

        def trust_both() -> None:
            state["next"] = Pki(work / "next")
            write_bundles(pki.ca, state["next"].ca)

        def move_to_new_ca() -> None:
            new = state["next"]
            new.issue("server", "/ns/shop/sa/orders", cert=work / "server.crt", key=work / "server.key")
            new.issue("web", "/ns/shop/sa/web", cert=work / "web.crt", key=work / "web.key")
            # the probe trusts both roots: its own refusals would count as refused handshakes on the inbound
            state["probe"] = client_context(bundle(work / "probe-bundle.crt", pki.ca, new.ca), work / "web.crt",
                                            work / "web.key")
            serial = serial_of(work / "server.crt")
            wait_until(lambda: served(serial), 10, "the certificate of the new CA")

        def trust_new_only() -> None:
            write_bundles(state["next"].ca)

        steps = [Step(0.12, "re-issue both workload certificates", reissue),
                 Step(0.35, "CA rotation: trust both roots", trust_both),
                 Step(0.55, "CA rotation: workloads re-issued by the new CA", move_to_new_ca),
                 Step(0.75, "CA rotation: trust only the new root", trust_new_only)]
        if not ctx.short:
            steps.insert(1, Step(0.25, "re-issue both workload certificates again", reissue))
        specs = default_streams(ctx.short, sync_rate=200, batched_rate=400)
        floors = {"inbound": inbound.floor(), "outbound": outbound.floor()}
        load = LoadGen(outbound.address(), specs)
        timeline = Timeline()
        started = time.monotonic()
        drive(ctx, load, planned_requests(specs, ctx.seconds(5, 40)), steps, timeline)
        result.figures["load_seconds"] = round(time.monotonic() - started, 2)
        result.figures["timeline"] = timeline.events
        ctx.status("settling")
        leak_checks(result, outbound, floors["outbound"], "outbound")
        leak_checks(result, inbound, floors["inbound"], "inbound")
        account(result, load, proxy_sides(outbound, fleet, ["batched", "sync"], log), Bars(min_success=1.0))
        refused: dict[str, int] = {}
        reload_figures: dict[str, dict[str, int]] = {}
        for name, p in (("inbound", inbound), ("outbound", outbound)):
            text = p.metrics()
            total = metric_value(text, "meshbatch_tls_handshakes_total")
            good = metric_value(text, "meshbatch_tls_handshakes_total", result="ok")
            refused[name] = int(total - good)
            if refused[name]:
                result.notes.append(f"{name} handshakes: " + ", ".join(
                    line for line in text.splitlines() if line.startswith("meshbatch_tls_handshakes_total")))
            # A poll that finds the new key beside the old certificate (two files, not one rename) is counted as
            # an error and the previous pair stays until the next poll: expected, so a figure and not a bar.
            reload_figures[name] = {
                "ok": int(metric_value(text, "meshbatch_tls_certificate_reloads_total", result="ok")),
                "half_rotation": int(metric_value(text, "meshbatch_tls_certificate_reloads_total", result="error"))}
        handshakes = int(inbound.metric("meshbatch_tls_handshakes_total", result="ok"))
        result.figures["handshakes_inbound"] = handshakes
        result.figures["certificate_reloads"] = reload_figures
        result.check("no handshake refused", not any(refused.values()), f"refused: {refused}")
        result.check("new handshakes during the load", handshakes >= 10, f"{handshakes} handshakes on the inbound")
        result.check("the new CA's certificate is served", served(serial_of(work / "server.crt")) and
                     serial_of(work / "server.crt") != first_serial, "a fresh handshake gets the last certificate")
    finally:
        for p in proxies:
            p.terminate()
        fleet.close()
    return result


SCENARIOS = [Scenario("cert-rotation", "Certificates and the CA rotate under mTLS load", 40, rotation)]
