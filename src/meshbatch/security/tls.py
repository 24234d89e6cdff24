"""TLS contexts built from a watched workload identity, and the checks of the peer's SPIFFE ID.

A `CertSource` holds one identity's files (certificate, key, trust bundle). It polls their stat signatures
(inode, size, mtime: an atomic rename and a Kubernetes secret's symlink swap both change it) and, on a change,
builds new contexts and swaps them in; a set of files that does not load (a key that does not match its
certificate, half a rotation) is logged and counted, and the previous contexts stay until a later poll loads.
The files are read once per load: every context is built from the bytes that were checked (see `_use_chain`),
never from the paths again, which may hold a newer, unchecked certificate by then.

Servers: a listener's *front* context (its TLS version floor, client certificates required) is given to every
handshake, and its SNI callback (run by OpenSSL for every ClientHello, SNI sent or not) switches the handshake
to the source's current context. So a rotation reaches new handshakes at once, while open connections keep
the certificate they were made with: Envoy's SDS behaviour, without restarting a listener. Clients (cluster
connections) take the current context for each new connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meshbatch.config.plain.security import Identity
from meshbatch.core.spiffe import InvalidSpiffeId, NotAnSvid, SpiffeId, svid_id
from meshbatch.security.sslobject import use_fast_objects

if TYPE_CHECKING:  # cryptography (the CA's library) is imported when an identity is loaded
    from meshbatch.security.ca import CertInfo

log = logging.getLogger("meshbatch.security")

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
# TLS 1.2 only: forward-secret AEAD suites (TLS 1.3 suites are all of that kind and are not set here)
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TlsSetupError(OSError):
    """Identity files that cannot be used at start or reload (the reload is rejected, the old config stays)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "TLS setup failed"


class PeerRejected(Exception):
    """A verified certificate whose SPIFFE ID is not acceptable; `reason` is counted."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


Signature = tuple[tuple[int, int, int], ...]


def _signature(paths: tuple[str, ...]) -> Signature:
    out = []
    for path in paths:
        st = os.stat(path)
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Loaded:
    """One successful load of an identity's files."""

    info: CertInfo
    spiffe_id: str
    trust_domain: str
    ca_pem: str
    signature: Signature
    chain: bytes = field(default=b"", repr=False)  # the checked certificate chain and private key (PEM)


_MEMFD = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


def _use_chain(context: ssl.SSLContext, pem: bytes) -> None:
    """`context.load_cert_chain` from bytes (the ssl module reads only files): an anonymous in-memory file on
    Linux, else a private temporary file removed at once."""
    if _MEMFD:
        fd = os.memfd_create("meshbatch-identity", os.MFD_CLOEXEC)
        try:
            view = memoryview(pem)
            while view:
                view = view[os.write(fd, view):]
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix=".meshbatch-identity-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)


def _base(context: ssl.SSLContext, min_version: str) -> ssl.SSLContext:
    context.minimum_version = VERSIONS[min_version]
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_ciphers(TLS12_CIPHERS)
    return use_fast_objects(context)  # the record path without ssl.py's frames (meshbatch.security.sslobject)


class CertSource:
    """One workload identity from files, watched; hands out its current server and client contexts."""

    def __init__(self, spec: Identity, loop: asyncio.AbstractEventLoop | None = None,
                 on_load: Callable[[str, str], None] | None = None) -> None:
        self.spec = spec
        self.paths = (spec.cert, spec.key, spec.ca)
        self._loop = loop
        self._on_load = on_load or (lambda file, result: None)
        self._timer: asyncio.TimerHandle | None = None
        self._server: dict[tuple[str, tuple[str, ...]], ssl.SSLContext] = {}
        self._client: dict[tuple[str, tuple[str, ...]], ssl.SSLContext] = {}  # by min version and ALPN offer
        self._fronts: dict[tuple[str, tuple[str, ...]], ssl.SSLContext] = {}
        self.reloads = 0
        self.failures = 0
        self.last_error = ""
        self.loaded = self._load()  # raises TlsSetupError: at start (or reload) the files must be good
        self._on_load(spec.cert, "ok")

    # loading -------------------------------------------------------------------------------------
    def _load(self) -> Loaded:
        spec = self.spec
        try:
            signature = _signature(self.paths)
            cert_pem = Path(spec.cert).read_bytes()
            chain = cert_pem.rstrip(b"\n") + b"\n" + Path(spec.key).read_bytes()
            ca_pem = Path(spec.ca).read_text(encoding="ascii")
            from meshbatch.security.ca import describe

            info = describe(cert_pem)
            check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            _use_chain(check, chain)  # the key must match the certificate
            check.load_verify_locations(cadata=ca_pem)
        except (OSError, ValueError, ssl.SSLError, UnicodeDecodeError) as exc:
            raise TlsSetupError(f"identity {spec.cert}: cannot load certificate, key or trust bundle: {exc}") \
                from None
        try:
            own = SpiffeId.parse(svid_id(info.uris))
        except (NotAnSvid, InvalidSpiffeId) as exc:
            raise TlsSetupError(f"identity {spec.cert}: not an X509-SVID: {exc}") from None
        domain = spec.trust_domain or own.trust_domain
        if own.trust_domain != domain:
            raise TlsSetupError(f"identity {spec.cert}: its SPIFFE ID {own} is not in trust domain {domain!r}")
        return Loaded(info, str(own), domain, ca_pem, signature, chain)

    def _context(self, side: int, min_version: str) -> ssl.SSLContext:
        context = _base(ssl.SSLContext(side), min_version)
        if side == ssl.PROTOCOL_TLS_CLIENT:
            context.check_hostname = False  # SPIFFE IDs are checked instead (`verify_peer`)
        _use_chain(context, self.loaded.chain)
        context.load_verify_locations(cadata=self.loaded.ca_pem)
        return context

    def server_context(self, min_version: str, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
        """The server side's context; `alpn`: the protocols offered by ALPN (a listener's codec), most wanted first."""
        key = (min_version, alpn)
        context = self._server.get(key)
        if context is None:
            context = self._server[key] = self._server_context(key)
        return context

    def _server_context(self, key: tuple[str, tuple[str, ...]]) -> ssl.SSLContext:
        context = self._context(ssl.PROTOCOL_TLS_SERVER, key[0])
        if key[1]:
            context.set_alpn_protocols(list(key[1]))
        return context

    def client_context(self, min_version: str, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
        """`alpn`: the protocols offered in the handshake (h2 towards an HTTP/2 cluster); none by default."""
        key = (min_version, alpn)
        context = self._client.get(key)
        if context is None:
            context = self._client[key] = self._client_context(key)
        return context

    def _client_context(self, key: tuple[str, tuple[str, ...]]) -> ssl.SSLContext:
        context = self._context(ssl.PROTOCOL_TLS_CLIENT, key[0])
        if key[1]:
            context.set_alpn_protocols(list(key[1]))
        return context

    def front_context(self, min_version: str, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
        """The context a listener hands to every handshake (see the module docstring); ALPN as `server_context`."""
        key = (min_version, alpn)
        front = self._fronts.get(key)
        if front is None:
            front = self._fronts[key] = self._server_context(key)

            def switch(sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
                sslobj.context = self.server_context(min_version, alpn)

            front.sni_callback = switch  # type: ignore[assignment]
        return front

    def reload(self) -> bool:
        """Load the files again if they changed; True when new contexts are in place."""
        try:
            if _signature(self.paths) == self.loaded.signature:
                return False
        except OSError:
            pass  # a file missing for a moment (mid-rotation): try to load, and fail, below
        try:
            loaded = self._load()
            old, self.loaded = self.loaded, loaded
            try:
                server = {key: self._server_context(key) for key in self._server}
                client = {key: self._client_context(key) for key in self._client}
            except (OSError, ssl.SSLError) as exc:  # files changed again between the check and here
                self.loaded = old
                raise TlsSetupError(f"identity {self.spec.cert}: {exc}") from None
        except TlsSetupError as exc:
            self.failures += 1
            if str(exc) != self.last_error:
                log.warning("certificate reload failed, the previous one stays: %s", exc)
            self.last_error = str(exc)
            self._on_load(self.spec.cert, "error")
            return False
        self._server, self._client = server, client
        self.reloads += 1
        self.last_error = ""
        self._on_load(self.spec.cert, "ok")
        log.info("certificate reloaded: %s %s valid until %s", self.spec.cert, loaded.spiffe_id,
                 loaded.info.not_after.isoformat())
        return True

    # watching ------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._loop is not None and self._timer is None:
            self._timer = self._loop.call_later(self.spec.watch_interval_ms / 1000, self._poll)

    def _poll(self) -> None:
        self._timer = None
        self.reload()
        self.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def summary(self) -> dict[str, object]:
        return {"cert": self.spec.cert, "spiffe_id": self.loaded.spiffe_id, "trust_domain": self.loaded.trust_domain,
                "not_after": self.loaded.info.not_after.isoformat(), "serial": f"{self.loaded.info.serial:x}",
                "reloads": self.reloads, "failures": self.failures, "last_error": self.last_error}


def peer_spiffe_id(sslobj: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The peer certificate's one SPIFFE ID (None without a certificate); PeerRejected unless its URI SANs are
    exactly that one ID (see meshbatch.core.spiffe)."""
    if sslobj is None:
        return None
    cert = sslobj.getpeercert()
    if not cert:
        return None
    uris: list[str] = []
    for entry in cert.get("subjectAltName", ()):
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == "URI":
            uris.append(str(entry[1]))
    try:
        return svid_id(uris)
    except NotAnSvid as exc:
        raise PeerRejected(exc.reason, f"the peer certificate is not an X509-SVID: {exc}") from None


def verify_peer(sslobj: ssl.SSLObject | ssl.SSLSocket | None, trust_domains: frozenset[str],
                allowed: Callable[[str], bool] | None = None) -> str:
    """The peer's SPIFFE ID when it is in one of `trust_domains` (and `allowed`, if given); else PeerRejected."""
    identity = peer_spiffe_id(sslobj)
    if identity is None:
        raise PeerRejected("no_peer_certificate")
    try:
        parsed = SpiffeId.parse(identity)
    except InvalidSpiffeId:
        raise PeerRejected("invalid_spiffe_id", identity) from None
    if parsed.trust_domain not in trust_domains:
        raise PeerRejected("wrong_trust_domain", f"{identity} is not in {sorted(trust_domains)}")
    if allowed is not None and not allowed(identity):
        raise PeerRejected("unexpected_identity", identity)
    return identity


def handshake_failure(exc: BaseException) -> str:
    """A short, bounded reason for a failed server handshake (a metrics label)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = (exc.verify_message or "").lower()
        if "expired" in message:
            return "certificate_expired"
        if "not yet valid" in message:
            return "certificate_not_yet_valid"
        if "issuer" in message or "self-signed" in message or "self signed" in message:
            return "unknown_ca"
        return "certificate_invalid"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in reason:
            return "no_client_certificate"
        if "UNSUPPORTED_PROTOCOL" in reason or "VERSION" in reason or "NO_PROTOCOLS" in reason:
            return "protocol_version"
        if "HTTP_REQUEST" in reason or "WRONG_VERSION_NUMBER" in reason or "RECORD" in reason:
            return "not_tls"
        if "ALERT" in reason:
            return "alert_from_peer"
        if "CERTIFICATE" in reason:
            return "certificate_invalid"
        return "handshake_error"
    if isinstance(exc, TimeoutError):
        return "handshake_timeout"
    if isinstance(exc, ConnectionError | EOFError):
        return "connection_closed"
    return "handshake_error"


__all__ = ["VERSIONS", "CertSource", "Loaded", "PeerRejected", "TlsSetupError", "handshake_failure",
           "peer_spiffe_id", "verify_peer"]
