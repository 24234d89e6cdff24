"""Bearer JWT validation for edge listeners (PyJWT): signature by a key of a watched JWKS file, issuer, audience,
expiry (required) and not-before, within a clock skew. Only asymmetric algorithms are accepted, and only those
configured: a token cannot choose `none` or an HMAC keyed with a public key.

A valid token puts `ISSUER/SUBJECT` (the request principal policies match with `request_principals`) and its
claims on the request. An invalid one is a 401; so is a missing one on a listener that requires it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import jwt
import orjson

from meshbatch.errors import ProxyError
from meshbatch.http.message import Request
from meshbatch.security.identity import CLAIMS, REQUEST_PRINCIPAL
from meshbatch.security.model import Jwt
from meshbatch.security.stats import SecurityStats
from meshbatch.security.tls import Signature, TlsSetupError, _signature

log = logging.getLogger("meshbatch.security")


class Unauthenticated(ProxyError):
    status, flag, default_reason = 401, "UAEX", "jwt_invalid"


def load_jwks(path: str) -> dict[str, list[jwt.PyJWK]]:
    """The usable keys of a JWKS file by key id ("" for keys without one)."""
    try:
        data = orjson.loads(Path(path).read_bytes())
        keys = jwt.PyJWKSet.from_dict(data).keys
    except (OSError, orjson.JSONDecodeError, jwt.PyJWKSetError, jwt.InvalidKeyError) as exc:
        raise TlsSetupError(f"jwks {path}: cannot load: {exc}") from None
    out: dict[str, list[jwt.PyJWK]] = {}
    for key in keys:
        if key.algorithm_name.startswith("HS"):  # a shared secret has no place in a public key set
            continue
        out.setdefault(key.key_id or "", []).append(key)
    return out


_FAMILIES = {"RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("EdDSA",)}


def _fits(key: jwt.PyJWK, algorithm: str) -> bool:
    """A key may verify `algorithm`: the JWK's own `alg` if it names one, else its key type's family."""
    data = key._jwk_data
    named = data.get("alg") if isinstance(data, dict) else None
    if named:
        return bool(named == algorithm)
    kty = data.get("kty") if isinstance(data, dict) else None
    return algorithm.startswith(_FAMILIES.get(str(kty), ()))


class JwtValidator:
    __slots__ = ("_header", "_keys", "_loop", "_signature", "_timer", "algorithms", "listener", "spec", "stats")

    def __init__(self, spec: Jwt, listener: str, stats: SecurityStats,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.spec = spec
        self.listener = listener
        self.stats = stats
        self.algorithms = frozenset(spec.algorithms)
        self._header = spec.header.lower().encode()
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._signature: Signature = _signature((spec.jwks,)) if Path(spec.jwks).exists() else ()
        self._keys = load_jwks(spec.jwks)
        stats.reloads.inc((spec.jwks, "ok"))

    # the keys file -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._loop is not None and self._timer is None:
            self._timer = self._loop.call_later(self.spec.watch_interval_ms / 1000, self._poll)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _poll(self) -> None:
        self._timer = None
        self.reload()
        self.start()

    def reload(self) -> bool:
        try:
            signature = _signature((self.spec.jwks,))
        except OSError:
            return False
        if signature == self._signature:
            return False
        try:
            self._keys = load_jwks(self.spec.jwks)
        except TlsSetupError as exc:
            log.warning("JWKS reload failed, the previous keys stay: %s", exc)
            self.stats.reloads.inc((self.spec.jwks, "error"))
            return False
        self._signature = signature
        self.stats.reloads.inc((self.spec.jwks, "ok"))
        return True

    # validation ----------------------------------------------------------------------------------
    def _key(self, token: bytes) -> tuple[Any, str]:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise jwt.InvalidAlgorithmError(f"algorithm {algorithm!r} is not accepted")
        kid = header.get("kid")
        candidates = self._keys.get(kid, []) if isinstance(kid, str) else [k for ks in self._keys.values() for k in ks]
        for key in candidates:
            if _fits(key, str(algorithm)):
                return key.key, str(algorithm)
        raise jwt.InvalidKeyError("no key of the JWKS matches the token's kid and algorithm")

    def authenticate(self, request: Request) -> ProxyError | None:
        """None when the request may go on (claims stamped on it), else the 401 to answer."""
        spec = self.spec
        value = request.header(self._header)
        if value is None:
            if spec.required:
                self.stats.jwt.inc((self.listener, "missing"))
                return Unauthenticated("jwt_missing", "a bearer token is required")
            return None
        scheme, _, token = value.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token or len(token) > spec.max_token_bytes:
            self.stats.jwt.inc((self.listener, "malformed"))
            return Unauthenticated("jwt_invalid", "expected 'Bearer <token>'")
        try:
            key, algorithm = self._key(token)
            claims: dict[str, Any] = jwt.decode(
                token, key=key, algorithms=[algorithm], issuer=spec.issuer,
                audience=spec.audiences or None, leeway=spec.clock_skew_s,
                options={"require": ["exp", "iss"], "verify_aud": bool(spec.audiences)})
        except jwt.ExpiredSignatureError:
            self.stats.jwt.inc((self.listener, "expired"))
            return Unauthenticated("jwt_expired", "the token has expired")
        except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError) as exc:
            self.stats.jwt.inc((self.listener, "invalid"))
            return Unauthenticated("jwt_invalid", str(exc)[:200])
        self.stats.jwt.inc((self.listener, "ok"))
        context = request.context
        context[CLAIMS] = claims
        context[REQUEST_PRINCIPAL] = f"{claims.get('iss', '')}/{claims.get('sub', '')}"
        if not spec.forward:
            name = self._header
            request.headers = [item for item in request.headers if item[0] != name]
        return None


__all__ = ["JwtValidator", "Unauthenticated", "load_jwks"]
