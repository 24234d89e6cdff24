"""JWT validation on an edge listener: keys from a JWKS file, issuer, audience, expiry; 401 for a missing or bad
token; the request principal and claims usable by policies."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from testbed.config import cluster, config, listener, route
from testbed.upstream import UpstreamServer

ISSUER = "https://issuer.example"
POLICIES = [{"name": "admins", "action": "ALLOW", "rules": [
    {"to": [{"operation": {"paths": ["/admin*"]}}],
     "when": [{"key": "request.auth.claims[groups]", "values": ["admin"]}]},
    {"from": [{"source": {"request_principals": [f"{ISSUER}/*"]}}], "to": [{"operation": {"not_paths": ["/admin*"]}}]},
]}]


@pytest.fixture(scope="module")
def edge(module_mesh: Any, upstreams: dict[str, UpstreamServer],
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", alg="ES256", use="sig")
    jwks = tmp_path_factory.mktemp("jwt") / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    spec = {"issuer": ISSUER, "audiences": ["orders"], "jwks": str(jwks), "forward": False}
    proxy = module_mesh.start(config([listener("edge", [route("all", "echo")], jwt=spec, policies=POLICIES)],
                                     [cluster("echo", upstreams["a"].address)]))
    return {"proxy": proxy, "key": key}


def token(key: Any, kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": "orders", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": kid})


def call(edge: dict[str, Any], path: str, bearer: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return httpx.get(edge["proxy"].url("edge", path), headers=headers, timeout=5)


def test_a_valid_token_passes_and_is_not_forwarded(edge: dict[str, Any], upstreams: dict[str, UpstreamServer]) -> None:
    upstreams["a"].reset()
    assert call(edge, "/orders", token(edge["key"])).status_code == 200
    assert upstreams["a"].last("/orders").header("authorization") is None


@pytest.mark.parametrize(("case", "reason"), [
    ("missing", "jwt_missing"), ("expired", "jwt_expired"), ("audience", "jwt_invalid"), ("issuer", "jwt_invalid"),
    ("other_key", "jwt_invalid"), ("alg_none", "jwt_invalid"), ("garbage", "jwt_invalid"),
])
def test_bad_tokens_are_401(edge: dict[str, Any], upstreams: dict[str, UpstreamServer], case: str,
                            reason: str) -> None:
    key = edge["key"]
    bearer: str | None = {
        "missing": None,
        "expired": token(key, exp=int(time.time()) - 600),
        "audience": token(key, aud="billing"),
        "issuer": token(key, iss="https://evil.example"),
        "other_key": token(ec.generate_private_key(ec.SECP256R1())),
        "alg_none": jwt.encode({"iss": ISSUER, "sub": "x", "aud": "orders", "exp": int(time.time()) + 60}, None,
                               algorithm="none"),
        "garbage": "not.a.token",
    }[case]
    upstreams["a"].reset()
    answer = call(edge, "/orders", bearer)
    assert answer.status_code == 401 and answer.json()["reason"] == reason
    assert not upstreams["a"].requests


def test_claims_drive_policies(edge: dict[str, Any]) -> None:
    assert call(edge, "/admin/x", token(edge["key"])).status_code == 403
    assert call(edge, "/admin/x", token(edge["key"], groups=["dev", "admin"])).status_code == 200
