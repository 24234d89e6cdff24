"""The CA: files and permissions, SPIFFE IDs, validity, refusals; certificate sources and their reloads;
SPIFFE ID parsing; the config keys and their checks."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path

import pytest
from tls_pairs import memory_pair

from meshbatch.config import ConfigError, parse
from meshbatch.config.model.security import Identity
from meshbatch.core.spiffe import InvalidSpiffeId, NotAnSvid, SpiffeId, svid_id
from meshbatch.security.ca import CaError, describe, init_ca, issue, load_ca, parse_duration
from meshbatch.security.tls import CertSource, TlsSetupError


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    init_ca(tmp_path / "ca", "example.org")
    return tmp_path / "ca"


def test_init_writes_a_root_with_a_private_key(ca: Path) -> None:
    assert stat.S_IMODE((ca / "ca.key").stat().st_mode) == 0o600
    info = describe((ca / "ca.crt").read_bytes())
    assert info.is_ca and info.spiffe_ids == ("spiffe://example.org",)
    assert load_ca(ca).trust_domain == "example.org"
    with pytest.raises(CaError, match="exists"):
        init_ca(ca, "example.org")


def test_a_readable_ca_key_is_refused(ca: Path) -> None:
    (ca / "ca.key").chmod(0o644)
    with pytest.raises(CaError, match="readable by others"):
        load_ca(ca)


def test_issue_short_lived_workload_certificates(ca: Path, tmp_path: Path) -> None:
    info = issue(ca, "spiffe://example.org/ns/shop/sa/web", tmp_path / "w.crt", tmp_path / "w.key",
                 ttl=parse_duration("2h"), backdate=parse_duration("1m"))
    assert info.spiffe_ids == ("spiffe://example.org/ns/shop/sa/web",) and not info.is_ca
    assert info.not_after - info.not_before == dt.timedelta(hours=2)
    assert stat.S_IMODE((tmp_path / "w.key").stat().st_mode) == 0o600
    with pytest.raises(CaError, match="trust domain"):
        issue(ca, "spiffe://other.org/ns/a/sa/b", tmp_path / "x.crt", tmp_path / "x.key")
    with pytest.raises(CaError, match="has a path"):
        issue(ca, "spiffe://example.org", tmp_path / "x.crt", tmp_path / "x.key")


def test_durations() -> None:
    assert parse_duration("90s") == dt.timedelta(seconds=90)
    assert parse_duration("24h") == dt.timedelta(hours=24)
    assert parse_duration("10y") == dt.timedelta(days=3650)
    with pytest.raises(ValueError):
        parse_duration("soon")


@pytest.mark.parametrize("bad", ["http://td/x", "spiffe://TD/x", "spiffe://td/a//b", "spiffe://td/a/../b",
                                 "spiffe://td:8080/x", "spiffe://td/a?b"])
def test_invalid_spiffe_ids(bad: str) -> None:
    with pytest.raises(InvalidSpiffeId):
        SpiffeId.parse(bad)


def test_spiffe_id_parts() -> None:
    parsed = SpiffeId.parse("spiffe://td/ns/shop/sa/web")
    assert (parsed.trust_domain, parsed.namespace, parsed.service_account) == ("td", "shop", "web")
    assert SpiffeId.parse("spiffe://td/other").namespace is None


def test_a_source_reloads_good_files_and_keeps_the_old_on_bad_ones(ca: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "s.crt", tmp_path / "s.key"
    issue(ca, "spiffe://example.org/ns/a/sa/s", cert, key)
    source = CertSource(Identity(cert=str(cert), key=str(key), ca=str(ca / "ca.crt")))
    first = source.loaded.info.serial
    assert source.server_context("1.3") is source.server_context("1.3")
    assert not source.reload()  # nothing changed
    issue(ca, "spiffe://example.org/ns/a/sa/s", tmp_path / "other.crt", key)  # the key no longer fits the cert
    assert not source.reload() and source.failures == 1 and source.loaded.info.serial == first
    issue(ca, "spiffe://example.org/ns/a/sa/s", cert, key)
    assert source.reload() and source.loaded.info.serial != first


def test_a_source_refuses_unusable_files_at_start(ca: Path, tmp_path: Path) -> None:
    with pytest.raises(TlsSetupError, match="cannot load"):
        CertSource(Identity(cert=str(tmp_path / "missing.crt"), key="k", ca=str(ca / "ca.crt")))
    issue(ca, "spiffe://example.org/ns/a/sa/s", tmp_path / "s.crt", tmp_path / "s.key")
    with pytest.raises(TlsSetupError, match="trust domain"):
        CertSource(Identity(cert=str(tmp_path / "s.crt"), key=str(tmp_path / "s.key"), ca=str(ca / "ca.crt"),
                            trust_domain="other.org"))


@pytest.mark.parametrize(("uris", "reason"), [
    (["spiffe://td/a"], None), ([], "no_spiffe_id"), (["https://x/"], "no_spiffe_id"),
    (["spiffe://td/a", "https://x/"], "several_uri_sans"), (["https://x/", "spiffe://td/a"], "several_uri_sans"),
    (["spiffe://td/a", "spiffe://td/b"], "several_spiffe_ids"),
    (["spiffe://td/a", "spiffe://td/a"], "several_spiffe_ids"),
])
def test_an_svid_has_exactly_one_uri_san(uris: list[str], reason: str | None) -> None:
    if reason is None:
        assert svid_id(uris) == uris[0]
        return
    with pytest.raises(NotAnSvid) as caught:
        svid_id(uris)
    assert caught.value.reason == reason


def test_contexts_are_built_from_the_checked_bytes_not_the_paths(ca: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "s.crt", tmp_path / "s.key"
    issue(ca, "spiffe://example.org/ns/a/sa/s", cert, key)
    source = CertSource(Identity(cert=str(cert), key=str(key), ca=str(ca / "ca.crt")))
    first = source.loaded.info.serial
    issue(ca, "spiffe://example.org/ns/a/sa/s", cert, key)  # changed on disk, not (yet) reloaded
    client = source.client_context("1.3")  # built lazily after the change: still the loaded certificate
    server = source.server_context("1.3")
    assert _serial_served(server, client, ca) == first


def _serial_served(server: ssl.SSLContext, client: ssl.SSLContext, ca: Path) -> int:
    """The serial of the certificate `server` presents in an in-memory handshake."""
    from cryptography import x509

    _, ours, _ = memory_pair(server, client)
    der = ours.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return [str(p) for p in caught.value.problems]


def test_config_checks_of_the_security_keys(tmp_path: Path) -> None:
    problems = _problems(f"""
listeners:
  - name: main
    listen: 127.0.0.1:0
    tls: {{mode: strict}}
    policies:
      - {{name: p, action: allow, rules: [{{to: [{{operation: {{paths: [admin]}}}}]}}]}}
      - {{name: p, action: DENY}}
    jwt: {{issuer: i, jwks: {tmp_path}/missing.json}}
    routes: [{{name: r, cluster: c}}]
clusters:
  - name: c
    endpoints: [127.0.0.1:1]
    tls: {{mode: permissive, server_ids: [web], identity: {{cert: a, key: b, ca: c}}}}
""")
    assert "listeners[0].tls.identity: is required: set it here or the top-level `identity` (cert, key, ca)" in problems
    assert any(p.startswith("listeners[0].policies[1].name: duplicate policy name") for p in problems)
    assert any(p.startswith("listeners[0].policies[0].rules[0].to[0].operation.paths") for p in problems)
    assert any(p.startswith("listeners[0].jwt.jwks: cannot read") for p in problems)
    assert any(p.startswith("clusters[0].tls.mode: permissive applies to listeners") for p in problems)
    assert any(p.startswith("clusters[0].tls.server_ids[0]") for p in problems)
    assert any(p.startswith("clusters[0].tls.identity.cert: cannot read") for p in problems)


def test_config_shape_errors_have_paths() -> None:
    problems = _problems("""
listeners:
  - name: main
    listen: 127.0.0.1:0
    tls: {mode: sometimes, min_version: "1.1"}
    limits: {connection_rate: {rps: 0}}
    policies: [{name: p, rules: [{when: [{key: "request.body", values: [x]}]}]}]
""")
    text = "\n".join(problems)
    assert "listeners[0].tls.mode" in text and "listeners[0].tls.min_version" in text
    assert "listeners[0].limits.connection_rate.rps: must be > 0" in text
    assert "listeners[0].policies[0].rules[0].when[0].key" in text
