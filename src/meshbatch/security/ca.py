"""The mesh certificate authority: a root CA and short-lived workload certificates (X.509-SVIDs).

`init` makes an ECDSA P-256 root whose URI SAN is the trust domain (`spiffe://TD`) and which may sign leaf
certificates only (path length 0); its key file is written with mode 0600 and never overwritten unless asked.
`issue` signs a workload certificate for one SPIFFE ID of that trust domain: a fresh P-256 key, the SPIFFE ID as
the only URI SAN, client and server authentication, valid from a little in the past (clock skew) for a short
time (24 h by default, the rotation period of Linkerd's proxies). Files are replaced atomically (write, fsync,
rename), so a proxy watching them never reads half a certificate.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshbatch.core.spiffe import InvalidSpiffeId, NotAnSvid, SpiffeId, check_trust_domain, svid_id

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
DEFAULT_CA_TTL = dt.timedelta(days=3650)
DEFAULT_TTL = dt.timedelta(hours=24)
DEFAULT_BACKDATE = dt.timedelta(minutes=1)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}


class CaError(Exception):
    """A CA operation that cannot be done; the message says why."""


def parse_duration(text: str) -> dt.timedelta:
    """`90s`, `15m`, `24h`, `30d`, `10y` (or a plain number of seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdy]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r}: a duration is a number with s, m, h, d or y, e.g. 24h")
    return dt.timedelta(seconds=float(match[1]) * _UNITS.get(match[2] or "s", 1))


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    trust_domain: str


@dataclass(frozen=True, slots=True)
class CertInfo:
    spiffe_ids: tuple[str, ...]
    subject: str
    issuer: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool
    uris: tuple[str, ...] = ()  # every URI SAN, spiffe:// or not (an X509-SVID has exactly one)

    def summary(self) -> dict[str, object]:
        return {"spiffe_ids": list(self.spiffe_ids), "uri_sans": list(self.uris), "subject": self.subject,
                "issuer": self.issuer, "serial": f"{self.serial:x}", "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "ca": self.is_ca}

    def svid_problem(self) -> str | None:
        """Why this certificate is not a usable X509-SVID (None when it is one). A CA may name no SPIFFE ID;
        if it names one, the rule of one URI SAN applies to it as well."""
        if self.is_ca and not self.uris:
            return None
        try:
            SpiffeId.parse(svid_id(self.uris))
        except (NotAnSvid, InvalidSpiffeId) as exc:
            return str(exc)
        return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` in one rename; the file has `mode` from its first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_root(trust_domain: str, ttl: dt.timedelta = DEFAULT_CA_TTL,
              now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a new root CA for `trust_domain`."""
    check_trust_domain(trust_domain)
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshbatch"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"meshbatch root CA {trust_domain}"[:64])])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DEFAULT_BACKDATE).not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def init_ca(directory: Path, trust_domain: str, ttl: dt.timedelta = DEFAULT_CA_TTL,
            force: bool = False) -> tuple[Path, Path]:
    """Write `ca.crt` (0644) and `ca.key` (0600) into `directory` (created 0700 if missing)."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if key_path.exists() and not force:
        raise CaError(f"{key_path} exists: a CA is already there (use --force to replace it, which invalidates "
                      "every certificate it signed)")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_pem, key_pem = make_root(trust_domain, ttl)
    write_atomic(key_path, key_pem, 0o600)
    write_atomic(cert_path, cert_pem, 0o644)
    return cert_path, key_path


def load_ca(directory: Path) -> CertificateAuthority:
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise CaError(f"no CA in {directory}: {exc.filename} is missing (run `meshbatch ca init` first)") from None
    except ValueError as exc:
        raise CaError(f"the CA in {directory} cannot be read: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError(f"{key_path}: expected an ECDSA key")
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise CaError(f"{key_path} is readable by others (mode {mode:o}): chmod 600 it")
    ids = spiffe_ids(cert)
    if not ids:
        raise CaError(f"{cert_path} names no trust domain (no spiffe:// URI SAN)")
    return CertificateAuthority(cert, key, SpiffeId.parse(ids[0]).trust_domain)


def make_leaf(authority: CertificateAuthority, spiffe_id: str, ttl: dt.timedelta = DEFAULT_TTL,
              backdate: dt.timedelta = DEFAULT_BACKDATE, dns_names: tuple[str, ...] = (),
              now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a workload certificate for `spiffe_id`, signed by `authority`."""
    parsed = SpiffeId.parse(spiffe_id)
    if parsed.trust_domain != authority.trust_domain:
        raise CaError(f"{spiffe_id} is not in this CA's trust domain {authority.trust_domain!r}")
    if not parsed.path:
        raise CaError(f"{spiffe_id}: a workload ID has a path, e.g. spiffe://{parsed.trust_domain}/ns/NS/sa/SA")
    now = now or _now()
    start = now - backdate
    end = min(start + ttl, authority.cert.not_valid_after_utc)  # `ttl` counts from the (backdated) start
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(str(parsed))]
    names += [x509.DNSName(name) for name in dns_names]
    ca_public = authority.key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, parsed.trust_domain[:64])]))
        .issuer_name(authority.cert.subject).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue(directory: Path, spiffe_id: str, cert_out: Path, key_out: Path, *, ttl: dt.timedelta = DEFAULT_TTL,
          backdate: dt.timedelta = DEFAULT_BACKDATE, dns_names: tuple[str, ...] = ()) -> CertInfo:
    """Sign a workload certificate with the CA in `directory` and write it (key 0600 first, then the cert)."""
    authority = load_ca(directory)
    cert_pem, key_pem = make_leaf(authority, spiffe_id, ttl, backdate, dns_names)
    write_atomic(key_out, key_pem, 0o600)
    write_atomic(cert_out, cert_pem, 0o644)
    return describe(cert_pem)


def uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def spiffe_ids(cert: x509.Certificate) -> list[str]:
    return [uri for uri in uri_sans(cert) if uri.startswith("spiffe://")]


def describe(pem: bytes) -> CertInfo:
    """What the first certificate of a PEM file is: SPIFFE IDs, subject, issuer, serial, validity."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    uris = tuple(uri_sans(cert))
    return CertInfo(tuple(u for u in uris if u.startswith("spiffe://")), cert.subject.rfc4514_string(),
                    cert.issuer.rfc4514_string(), cert.serial_number, cert.not_valid_before_utc,
                    cert.not_valid_after_utc, is_ca, uris)


__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CaError",
    "CertInfo",
    "CertificateAuthority",
    "describe",
    "init_ca",
    "issue",
    "load_ca",
    "make_leaf",
    "make_root",
    "parse_duration",
    "spiffe_ids",
    "uri_sans",
    "write_atomic",
]
