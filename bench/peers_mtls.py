"""The processes of the mtls scenario: each system as a sidecar pair, an outbound proxy that originates mTLS to an
inbound proxy that requires it, in front of the plain nginx upstream of the proxy scenario.

    wrk --HTTP--> outbound proxy ==mTLS==> inbound proxy --HTTP--> upstream

Every system gets the same certificates: one CA made with `meshbatch ca init`, one workload certificate per side
(`meshbatch ca issue`, a SPIFFE ID, and a DNS name that nginx and haproxy check the server's name against;
meshbatch checks the SPIFFE ID). Each side verifies its peer against the CA; connections between the two proxies
are kept alive and reused, as sidecars do. Both proxies of a pair run on the proxy core.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from .common import LOOPBACK, BenchError, CorePlan, Service, free_port
from .peers import (
    HAPROXY_COMMON,
    Peer,
    _nginx_common,
    _nginx_http_common,
    _ready,
    _write,
    meshbatch_bin,
    nginx_pool,
)

TRUST_DOMAIN = "bench.local"
SERVER_NAME = "inbound.bench.local"
CLIENT_ID = f"spiffe://{TRUST_DOMAIN}/ns/bench/sa/client"
SERVER_ID = f"spiffe://{TRUST_DOMAIN}/ns/bench/sa/server"


@dataclass(frozen=True)
class Pki:
    ca: Path
    client_cert: Path
    client_key: Path
    client_pem: Path  # certificate and key in one file (haproxy's `crt`)
    server_cert: Path
    server_key: Path
    server_pem: Path


def make_pki(workdir: Path) -> Pki:
    """The CA and the two workload certificates, with `meshbatch ca` run in-process."""
    from meshbatch.cli import main as meshbatch

    ca_dir = workdir / "ca"
    files: dict[str, Path] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        if meshbatch(["ca", "init", "--dir", str(ca_dir), "--trust-domain", TRUST_DOMAIN]) != 0:
            raise BenchError("meshbatch ca init failed")
        for side, spiffe_id in (("client", CLIENT_ID), ("server", SERVER_ID)):
            cert, key = workdir / f"{side}.crt", workdir / f"{side}.key"
            argv = ["ca", "issue", "--ca-dir", str(ca_dir), "--spiffe-id", spiffe_id, "--cert", str(cert),
                    "--key", str(key), "--ttl", "24h", "--dns", SERVER_NAME]
            if meshbatch(argv) != 0:
                raise BenchError(f"meshbatch ca issue {side} failed")
            key.chmod(0o644)  # nginx workers run as an unprivileged user; a benchmark's throwaway key
            pem = workdir / f"{side}.pem"
            pem.write_bytes(cert.read_bytes() + key.read_bytes())
            files |= {f"{side}_cert": cert, f"{side}_key": key, f"{side}_pem": pem}
    return Pki(ca=ca_dir / "ca.crt", **files)


# -- nginx ------------------------------------------------------------------------------------------------------

def nginx_outbound_conf(workdir: Path, port: int, inbound_port: int, pki: Pki) -> str:
    return (
        _nginx_common(workdir, "nginx-out")
        + "http {"
        + _nginx_http_common(workdir, "nginx-out")
        + nginx_pool("inbound", inbound_port)
        + f"""
    server {{
        listen {LOOPBACK}:{port} backlog=4096;
        location / {{
            proxy_pass https://inbound;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_certificate {pki.client_cert};
            proxy_ssl_certificate_key {pki.client_key};
            proxy_ssl_trusted_certificate {pki.ca};
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_name {SERVER_NAME};
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
        }}
    }}
}}
"""
    )


def nginx_inbound_conf(workdir: Path, port: int, upstream_port: int, pki: Pki) -> str:
    return (
        _nginx_common(workdir, "nginx-in")
        + "http {"
        + _nginx_http_common(workdir, "nginx-in")
        + nginx_pool("app", upstream_port)
        + f"""
    server {{
        listen {LOOPBACK}:{port} ssl backlog=4096;
        ssl_certificate {pki.server_cert};
        ssl_certificate_key {pki.server_key};
        ssl_client_certificate {pki.ca};
        ssl_verify_client on;
        ssl_verify_depth 2;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    )


# -- haproxy ----------------------------------------------------------------------------------------------------

def haproxy_outbound_conf(port: int, inbound_port: int, pki: Pki) -> str:
    return HAPROXY_COMMON + f"""
frontend bench
    bind {LOOPBACK}:{port}
    default_backend inbound

backend inbound
    server in1 {LOOPBACK}:{inbound_port} ssl crt {pki.client_pem} ca-file {pki.ca} verify required verifyhost {SERVER_NAME} sni str({SERVER_NAME})
"""  # noqa: E501


def haproxy_inbound_conf(port: int, upstream_port: int, pki: Pki) -> str:
    return HAPROXY_COMMON + f"""
frontend mtls
    bind {LOOPBACK}:{port} ssl crt {pki.server_pem} ca-file {pki.ca} verify required
    default_backend app

backend app
    server up1 {LOOPBACK}:{upstream_port}
"""


# -- meshbatch --------------------------------------------------------------------------------------------------

def _identity(cert: Path, key: Path, ca: Path) -> str:
    return f"identity: {{cert: {cert}, key: {key}, ca: {ca}}}\n"


def meshbatch_outbound_conf(port: int, inbound_port: int, pki: Pki) -> str:
    return f"""admin: {{listen: {LOOPBACK}:0}}
{_identity(pki.client_cert, pki.client_key, pki.ca)}listeners:
  - name: bench
    listen: {LOOPBACK}:{port}
    routes:
      - name: all
        match: {{path_prefix: /}}
        cluster: inbound
clusters:
  - name: inbound
    endpoints: [{LOOPBACK}:{inbound_port}]
    tls: {{mode: strict, server_ids: ["{SERVER_ID}"]}}
"""


def meshbatch_inbound_conf(port: int, upstream_port: int, pki: Pki) -> str:
    return f"""admin: {{listen: {LOOPBACK}:0}}
{_identity(pki.server_cert, pki.server_key, pki.ca)}listeners:
  - name: mtls
    listen: {LOOPBACK}:{port}
    tls: {{mode: strict}}
    routes:
      - name: all
        match: {{path_prefix: /}}
        cluster: app
clusters:
  - name: app
    endpoints: [{LOOPBACK}:{upstream_port}]
"""


# -- pairs ------------------------------------------------------------------------------------------------------

def _pair(name: str, outbound: Service, port: int, inbound: Service) -> Peer:
    return Peer(name, port, outbound, companions=(inbound,))


def start_pair(name: str, tools: dict[str, str], workdir: Path, cores: CorePlan, upstream_port: int,
               pki: Pki) -> Peer:
    """The outbound and inbound proxies of `name` (nginx, haproxy or meshbatch), the inbound one started first
    and checked over mTLS by the outbound one's readiness probe (a request through both)."""
    out_port, in_port = free_port(), free_port()
    prefix = cores.prefix("proxy")
    if name == "nginx":
        conf_in = _write(workdir / "nginx-in.conf", nginx_inbound_conf(workdir, in_port, upstream_port, pki))
        conf_out = _write(workdir / "nginx-out.conf", nginx_outbound_conf(workdir, out_port, in_port, pki))
        argv_in = [*prefix, tools["nginx"], "-c", str(conf_in), "-e", "stderr"]
        argv_out = [*prefix, tools["nginx"], "-c", str(conf_out), "-e", "stderr"]
    elif name == "haproxy":
        conf_in = _write(workdir / "haproxy-in.cfg", haproxy_inbound_conf(in_port, upstream_port, pki))
        conf_out = _write(workdir / "haproxy-out.cfg", haproxy_outbound_conf(out_port, in_port, pki))
        argv_in = [*prefix, tools["haproxy"], "-db", "-f", str(conf_in)]
        argv_out = [*prefix, tools["haproxy"], "-db", "-f", str(conf_out)]
    elif name == "meshbatch":
        conf_in = _write(workdir / "meshbatch-in.yaml", meshbatch_inbound_conf(in_port, upstream_port, pki))
        conf_out = _write(workdir / "meshbatch-out.yaml", meshbatch_outbound_conf(out_port, in_port, pki))
        argv_in = [*prefix, meshbatch_bin(), "run", "--config", str(conf_in)]
        argv_out = [*prefix, meshbatch_bin(), "run", "--config", str(conf_out)]
    else:
        raise BenchError(f"unknown pair {name!r}")
    inbound = Service(f"{name}-inbound", argv_in, workdir)
    try:
        outbound = _ready(Service(f"{name}-outbound", argv_out, workdir), out_port, timeout=30.0)
    except BaseException as exc:
        inbound.stop()
        if isinstance(exc, BenchError):
            raise BenchError(f"{exc}\ninbound log:\n{inbound.log_tail()}") from None
        raise
    if not inbound.alive():
        outbound.stop()
        raise BenchError(f"{name} inbound proxy exited:\n{inbound.log_tail()}")
    return _pair(name, outbound, out_port, inbound)


__all__ = ["Pki", "make_pki", "start_pair"]
