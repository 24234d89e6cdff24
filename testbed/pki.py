"""Certificates for the TLS tests, made by the `meshbatch ca` command (run in-process: the same code path as the
CLI, without a Python start per certificate), and TLS clients that present them."""

from __future__ import annotations

import socket
import ssl
import warnings
from pathlib import Path
from typing import Any

from meshbatch.cli import main as meshbatch


class Pki:
    """One CA (`ca init`) for `trust_domain` under `root`; `issue` makes workload certificates with `ca issue`."""

    def __init__(self, root: Path, trust_domain: str = "example.org") -> None:
        self.root = root
        self.trust_domain = trust_domain
        self.ca_dir = root / f"ca-{trust_domain}"
        assert meshbatch(["ca", "init", "--dir", str(self.ca_dir), "--trust-domain", trust_domain]) == 0
        self.ca = self.ca_dir / "ca.crt"

    def issue(self, name: str, path: str, *, ttl: str = "1h", backdate: str = "1m",
              cert: Path | None = None, key: Path | None = None, dns: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """A certificate for spiffe://TD/PATH written to NAME.crt / NAME.key (or `cert` / `key`), with the extra
        DNS names `dns` (clients that check host names, such as grpcio, need one)."""
        cert = cert or self.root / f"{name}.crt"
        key = key or self.root / f"{name}.key"
        args = ["ca", "issue", "--ca-dir", str(self.ca_dir), "--spiffe-id", f"spiffe://{self.trust_domain}{path}",
                "--cert", str(cert), "--key", str(key), "--ttl", ttl, "--backdate", backdate]
        for name_ in dns:
            args += ["--dns", name_]
        assert meshbatch(args) == 0
        return cert, key

    def identity(self, name: str, ca: Path | None = None) -> dict[str, Any]:
        """The config's `identity` block for NAME's files."""
        return {"cert": str(self.root / f"{name}.crt"), "key": str(self.root / f"{name}.key"),
                "ca": str(ca or self.ca), "watch_interval_ms": 100}


def bundle(path: Path, *cas: Path) -> Path:
    path.write_bytes(b"".join(ca.read_bytes() for ca in cas))
    return path


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None,
                   version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # workload certificates name SPIFFE IDs, not hosts
    context.load_verify_locations(ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions at all
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = version
    return context


def tls_request(address: tuple[str, int], context: ssl.SSLContext | None, data: bytes,
                timeout: float = 5.0) -> int | str:
    """The status of the answer to `data` (over TLS when `context` is given), or "refused" when the connection
    fails or closes without an answer."""
    try:
        with socket.create_connection(address, timeout=timeout) as raw:
            sock: Any = context.wrap_socket(raw) if context is not None else raw
            with sock:
                sock.sendall(data)
                answer = b""
                while b"\r\n" not in answer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return "refused"
                    answer += chunk
                return int(answer.split(b" ", 2)[1])
    except (ssl.SSLError, OSError):
        return "refused"




def leaf_with_uris(pki: Pki, name: str, uris: list[str], *, ca: bool = False) -> tuple[Path, Path]:
    """A certificate signed by `pki`'s CA whose URI SANs are exactly `uris` (any number, any scheme), made with
    `cryptography` directly: what `meshbatch ca issue` refuses to make, for the tests of what is refused."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from meshbatch.security.ca import load_ca

    authority = load_ca(pki.ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, pki.trust_domain)]))
        .issuer_name(authority.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
                       critical=False)
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
    cert = builder.sign(authority.key, hashes.SHA256())
    cert_path, key_path = pki.root / f"{name}.crt", pki.root / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def served_serial(address: tuple[str, int], context: ssl.SSLContext) -> int:
    """The serial of the certificate a fresh handshake gets."""
    with socket.create_connection(address, timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def serial_of(path: Path) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


__all__ = ["Pki", "bundle", "client_context", "serial_of", "served_serial", "tls_request"]
