"""JWT validation without a server: whatever a caller puts in the token is a counted 401 and never an exception;
an unknown `kid` is `jwt_unknown_key`, and the key file is looked at again (at most once a second) so keys
published by a rotation are picked up without waiting for the poll."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.clock import FakeClock
from meshbatch.config.model.security import Jwt
from meshbatch.errors import ProxyError
from meshbatch.http.message import Request
from meshbatch.security.stats import SecurityStats
from meshbatch.security.tokens import JwtValidator, Token
from meshbatch.telemetry.metrics import Registry

ISSUER = "https://issuer.example"


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
    out: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    out.update(kid=kid, alg=alg, use="sig")
    return out


def write_jwks(path: Path, *keys: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"keys": list(keys)}))
    os.replace(tmp, path)  # a new inode: the validator sees the change whatever the clock's granularity


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks = tmp_path / "jwks.json"
        write_jwks(self.jwks, jwk(self.ec, "k1", "ES256"), jwk(self.rsa, "r1", "RS256"))
        self.registry = Registry()
        self.stats = SecurityStats(self.registry)
        self.clock = FakeClock()
        spec = Jwt(issuer=ISSUER, audiences=["orders"], jwks=str(self.jwks), watch_interval_ms=3_600_000)
        self.validator = JwtValidator(spec, "edge", self.stats, clock=self.clock)

    def token(self, key: Any = None, kid: str = "k1", alg: str = "ES256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "sub": "alice", "aud": "orders", "exp": now + 300, **claims}
        return jwt.encode(body, key if key is not None else self.ec, algorithm=alg, headers={"kid": kid})

    def check(self, *values: str | bytes) -> ProxyError | None:
        """The 401 the token(s) get, or None when they pass."""
        headers = [(b"authorization", v if isinstance(v, bytes) else f"Bearer {v}".encode()) for v in values]
        result = self.validator.authenticate(Request(b"GET", b"/", headers, host=b"edge"))
        return result if isinstance(result, ProxyError) else None

    def count(self, result: str) -> float:
        return self.stats.jwt.get(("edge", result))


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_a_valid_token_passes(setup: Setup) -> None:
    request = Request(b"GET", b"/", [(b"authorization", f"Bearer {setup.token()}".encode())])
    token = setup.validator.authenticate(request)
    assert isinstance(token, Token)
    assert token.principal == f"{ISSUER}/alice" and token.claims["sub"] == "alice"


def test_an_unknown_kid_is_a_401_and_counted(setup: Setup) -> None:
    error = setup.check(setup.token(kid="rotated-away"))
    assert error is not None and error.status == 401 and error.reason == "jwt_unknown_key"
    assert setup.count("unknown_key") == 1


def test_a_rotated_key_is_picked_up_on_its_first_token(setup: Setup) -> None:
    new = ec.generate_private_key(ec.SECP256R1())
    write_jwks(setup.jwks, jwk(setup.ec, "k1", "ES256"), jwk(new, "k2", "ES256"))
    assert setup.check(setup.token(new, kid="k2")) is None  # no poll ran: the unknown kid made the file be read


def test_unknown_kids_read_the_file_at_most_once_a_second(setup: Setup) -> None:
    reloads = setup.stats.reloads
    assert setup.check(setup.token(kid="nope")) is not None  # looks (nothing changed)
    new = ec.generate_private_key(ec.SECP256R1())
    write_jwks(setup.jwks, jwk(new, "k2", "ES256"))
    for _ in range(50):  # a flood of unknown kids within the second: the file is not read again
        error = setup.check(setup.token(new, kid="k2"))
        assert error is not None and error.reason == "jwt_unknown_key"
    assert reloads.get((str(setup.jwks), "ok")) == 1  # only the load at start
    setup.clock.advance(1.0)
    assert setup.check(setup.token(new, kid="k2")) is None
    assert reloads.get((str(setup.jwks), "ok")) == 2


def _raw(header: Any, payload: Any = None, signature: bytes = b"sig") -> str:
    head = header if isinstance(header, str) else b64(json.dumps(header))
    body = b64(json.dumps(payload if payload is not None else {"iss": ISSUER, "exp": int(time.time()) + 60}))
    return f"{head}.{body}.{b64(signature)}"


def _signed(setup: Setup, payload: Any) -> str:
    """A correctly signed token whose claims are `payload` as given (jwt.encode would refuse most of these)."""
    token: str = jwt.api_jws.encode(json.dumps(payload).encode(), setup.ec, "ES256", headers={"kid": "k1"})
    return token


def _hmac_with_the_public_key(setup: Setup) -> str:
    public = setup.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    head = b64(json.dumps({"alg": "HS256", "kid": "r1", "typ": "JWT"}))
    body = b64(json.dumps({"iss": ISSUER, "sub": "mallory", "aud": "orders", "exp": int(time.time()) + 60}))
    signature = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


GARBAGE: dict[str, Any] = {
    "three_dots": "not.a.token",
    "two_parts": "a.b",
    "dots_only": "....",
    "bad_base64": "!!!.@@@.###",
    "header_not_json": f"{b64('nope')}.{b64('{}')}.{b64('s')}",
    "header_invalid_utf8": f"{b64(bytes([0xff, 0xfe]))}.{b64('{}')}.{b64('s')}",
    "header_array": lambda s: _raw([1, 2]),
    "header_string": lambda s: _raw(b64('"x"')),
    "header_number": lambda s: _raw(b64("42")),
    "header_null": lambda s: _raw(b64("null")),
    "alg_list": lambda s: _raw({"alg": ["ES256"], "kid": "k1"}),
    "alg_object": lambda s: _raw({"alg": {"x": 1}, "kid": "k1"}),
    "alg_none": lambda s: jwt.encode({"iss": ISSUER, "exp": int(time.time()) + 60}, None, algorithm="none"),
    "alg_none_with_kid": lambda s: _raw({"alg": "none", "kid": "k1"}, signature=b""),
    "hmac_against_rsa_key": _hmac_with_the_public_key,
    "kid_number": lambda s: _raw({"alg": "ES256", "kid": 5}),
    "kid_object": lambda s: _raw({"alg": "ES256", "kid": {"a": 1}}),
    "kid_list": lambda s: _raw({"alg": "RS256", "kid": ["r1"]}),
    "deep_header": lambda s: _raw(b64('{"alg":"ES256","x":' + "[" * 100_000 + "]" * 100_000 + "}")),
    "crit_unknown": lambda s: _raw({"alg": "ES256", "kid": "k1", "crit": ["exotic"], "exotic": 1}),
    "payload_array": lambda s: _signed(s, [1, 2]),
    "payload_string": lambda s: _signed(s, "claims"),
    "wrong_signature": lambda s: _raw({"alg": "ES256", "kid": "k1"}),
    "rsa_token_es_key": lambda s: s.token(s.rsa, kid="k1", alg="RS256"),
    "exp_string": lambda s: _signed(s, {"iss": ISSUER, "aud": "orders", "exp": "tomorrow"}),
    "iss_list": lambda s: _signed(s, {"iss": [ISSUER], "aud": "orders", "exp": int(time.time()) + 60}),
    "aud_object": lambda s: _signed(s, {"iss": ISSUER, "aud": {"x": 1}, "exp": int(time.time()) + 60}),
    "nbf_list": lambda s: _signed(s, {"iss": ISSUER, "aud": "orders", "exp": int(time.time()) + 60, "nbf": [1]}),
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_garbage_tokens_are_401_never_exceptions(setup: Setup, case: str) -> None:
    maker = GARBAGE[case]
    token = maker(setup) if callable(maker) else maker
    if len(token) > 8192:
        token = token[:8192]  # within max_token_bytes: the parser itself sees it
    error = setup.check(token)
    assert error is not None and error.status == 401
    assert error.reason in ("jwt_invalid", "jwt_unknown_key"), error.reason


@pytest.mark.parametrize("value", [b"Bearer", b"Bearer ", b"Basic dXNlcjpwdw==", b"bearer " + b"a" * 9000,
                                   b"Bearer \xff\xfe.\x00.\x01"])
def test_malformed_authorization_values(setup: Setup, value: bytes) -> None:
    error = setup.check(value)
    assert error is not None and error.status == 401 and error.reason == "jwt_invalid"


def test_two_tokens_are_refused_even_when_one_is_valid(setup: Setup) -> None:
    good = setup.token()
    for pair in ((good, "forged.token.x"), ("forged.token.x", good), (good, good)):
        error = setup.check(*pair)
        assert error is not None and error.reason == "jwt_invalid"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(min_size=1, max_size=300))
def test_random_bytes_never_escape(value: bytes) -> None:
    validator = _shared().validator
    headers = [(b"authorization", b"Bearer " + value)]
    error = validator.authenticate(Request(b"GET", b"/", headers))
    assert isinstance(error, ProxyError) and error.status == 401


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "jku", "x5u", "b64", "zip"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                                 st.lists(st.text(max_size=4), max_size=3)), max_size=5))
def test_random_headers_never_escape(header: dict[str, Any]) -> None:
    error = _shared().check(_raw(header))
    assert error is not None and error.status == 401


@functools.cache
def _shared() -> Setup:
    """One setup for the hypothesis tests (function-scoped fixtures do not mix with @given; keys are slow)."""
    return Setup(Path(tempfile.mkdtemp(prefix="jwks-")))
