"""Bearer JWT validation for edge listeners (PyJWT): signature by a key of a watched JWKS file, issuer, audience,
expiry (required) and not-before, within a clock skew. Only asymmetric algorithms are accepted, and only those
configured: a token cannot choose `none` or an HMAC keyed with a public key.

A valid token gives `ISSUER/SUBJECT` (the request principal policies match with `request_principals`) and its
claims (a `Token`). An invalid one is a 401; so is a missing one on a listener that requires it, and so are
two of them (the upstream might read the one that was not checked).

A token is the caller's bytes: nothing in it may escape as an exception (every failure of the parser, whatever
its class, is a counted 401). A `kid` the key set does not have is the normal case just after the issuer
rotated its keys and before the file here caught up: it is a 401 `jwt_unknown_key`, and it makes the validator
look at the file at once (at most once a second) instead of waiting for the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import jwt
import orjson

from meshbatch.clock import Clock, LoopClock
from meshbatch.config.plain.security import Jwt
from meshbatch.errors import ProxyError
from meshbatch.http.message import Request
from meshbatch.security.stats import SecurityStats
from meshbatch.security.tls import Signature, TlsSetupError, _signature

log = logging.getLogger("meshbatch.security")
REFRESH_ON_UNKNOWN_KID_S = 1.0  # an unknown `kid` re-reads the key file at most this often


class Unauthenticated(ProxyError):
    status, flag, default_reason = 401, "UAEX", "jwt_invalid"


def load_jwks(path: str) -> dict[str, list[jwt.PyJWK]]:
    """The usable keys of a JWKS file by key id ("" for keys without one)."""
    try:
        data = orjson.loads(Path(path).read_bytes())
        if not isinstance(data, dict):
            raise ValueError('a JWKS is a JSON object: {"keys": [...]}')
        keys = jwt.PyJWKSet.from_dict(data).keys
    except (OSError, ValueError, TypeError, KeyError, AttributeError, jwt.PyJWTError) as exc:
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


class UnknownKey(jwt.PyJWTError):
    """No key of the set has the token's `kid` (or fits its algorithm)."""


class Token:
    """A validated token: the request principal `ISSUER/SUBJECT` (what policies' `request_principals` match) and
    its claims."""

    __slots__ = ("claims", "principal")

    def __init__(self, principal: str, claims: dict[str, Any]) -> None:
        self.principal = principal
        self.claims = claims


class JwtValidator:
    __slots__ = ("_checked_at", "_clock", "_header", "_keys", "_loop", "_signature", "_timer", "algorithms",
                 "listener", "spec", "stats")

    def __init__(self, spec: Jwt, listener: str, stats: SecurityStats,
                 loop: asyncio.AbstractEventLoop | None = None, clock: Clock | None = None) -> None:
        self.spec = spec
        self.listener = listener
        self.stats = stats
        self.algorithms = frozenset(spec.algorithms)
        self._header = spec.header.lower().encode()
        self._loop = loop
        self._clock = clock or LoopClock()
        self._checked_at = float("-inf")  # when an unknown kid last made us look at the file
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
        try:
            self.reload()
        finally:
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

    def _refresh(self) -> bool:
        """After an unknown kid: reload the file if it changed, at most once per REFRESH_ON_UNKNOWN_KID_S."""
        now = self._clock.now()
        if now - self._checked_at < REFRESH_ON_UNKNOWN_KID_S:
            return False
        self._checked_at = now
        return self.reload()

    # validation ----------------------------------------------------------------------------------
    def _key(self, header: dict[str, Any]) -> tuple[Any, str]:
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise jwt.InvalidAlgorithmError(f"algorithm {str(algorithm)[:40]!r} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise jwt.InvalidTokenError("the kid header is not a string")
        keys = self._keys
        candidates = keys.get(kid, []) if kid is not None else [k for ks in keys.values() for k in ks]
        for key in candidates:
            if _fits(key, algorithm):
                return key.key, algorithm
        raise UnknownKey("no key of the JWKS matches the token's kid and algorithm")

    def _verify(self, token: bytes) -> dict[str, Any]:
        spec = self.spec
        header = jwt.get_unverified_header(token)  # DecodeError unless a JSON object
        try:
            key, algorithm = self._key(header)
        except UnknownKey:
            if not self._refresh():  # the issuer may have rotated its keys since the last poll
                raise
            key, algorithm = self._key(header)
        claims: dict[str, Any] = jwt.decode(
            token, key=key, algorithms=[algorithm], issuer=spec.issuer,
            audience=spec.audiences or None, leeway=spec.clock_skew_s,
            options={"require": ["exp", "iss"], "verify_aud": bool(spec.audiences)})
        if not isinstance(claims, dict):
            raise jwt.DecodeError("the claims are not a JSON object")
        return claims

    def _refuse(self, result: str, reason: str, detail: str) -> Unauthenticated:
        self.stats.jwt.inc((self.listener, result))
        return Unauthenticated(reason, detail)

    def authenticate(self, request: Request) -> Token | ProxyError | None:
        """The caller's validated token, None when there is none and none is required, else the 401 to answer.
        Never raises."""
        spec = self.spec
        name = self._header
        values = [v for k, v in request.headers if k == name]
        if not values:
            if spec.required:
                return self._refuse("missing", "jwt_missing", "a bearer token is required")
            return None
        if len(values) > 1:
            return self._refuse("malformed", "jwt_invalid", f"{len(values)} {spec.header} headers: send one token")
        scheme, _, token = values[0].partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token or len(token) > spec.max_token_bytes:
            return self._refuse("malformed", "jwt_invalid", "expected 'Bearer <token>'")
        try:
            claims = self._verify(token)
        except jwt.ExpiredSignatureError:
            return self._refuse("expired", "jwt_expired", "the token has expired")
        except UnknownKey:
            return self._refuse("unknown_key", "jwt_unknown_key", "no key of the key set matches the token's kid")
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            return self._refuse("invalid", "jwt_invalid", str(exc)[:200])
        except Exception as exc:  # the caller's bytes reached a parser's corner: still only a 401
            log.debug("token refused by %s: %s", type(exc).__name__, exc)
            return self._refuse("invalid", "jwt_invalid", "the token cannot be parsed")
        self.stats.jwt.inc((self.listener, "ok"))
        if not spec.forward:
            request.headers = [item for item in request.headers if item[0] != name]
        return Token(f"{claims.get('iss', '')}/{claims.get('sub', '')}", claims)


__all__ = ["JwtValidator", "Token", "Unauthenticated", "UnknownKey", "load_jwks"]
