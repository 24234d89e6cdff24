"""Idempotency keys against hostile callers, through `meshbatch run`: a key is its caller's own.

Two callers that differ by mTLS identity, by JWT, or (without either) by client address send the same
`idempotency-key`, with the same tenant header: on batch routes (json-array and envelope, with a replay window)
neither gets the other's answer, shares the other's item, or learns from a 400 that the key is in use; on
ingest routes (SQLite and PostgreSQL sinks) each one's event is stored. A producer that sends the ids it
predicts for other producers' events as its own keys makes none of their acknowledged events vanish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from testbed.batch_upstream import BatchUpstream, batch_route, serving, wait_until
from testbed.config import cluster, config, listener
from testbed.pki import Pki, client_context
from testbed.proxy import MeshbatchProcess

PG_URL = os.environ.get("MESHBATCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ISSUER = "https://issuer.example"
TD = "example.org"
KINDS = ("address", "mtls", "jwt")
REPLAY = {"dedup_window_ms": 60_000, "key": ["header:x-tenant"]}


def _pg_up() -> bool:
    parts = urlsplit(PG_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


async def _sql(statement: str) -> list[Any]:
    conn = await asyncpg.connect(PG_URL)
    try:
        return list(await conn.fetch(statement))
    finally:
        await conn.close()


class Caller:
    """One caller: an HTTP client with its own credentials (client address, client certificate, or token)."""

    def __init__(self, base_url: str, *, local: str = "127.0.0.1", verify: Any = True,
                 token: str | None = None) -> None:
        transport = httpx.HTTPTransport(local_address=local, verify=verify)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=base_url, transport=transport, headers=headers, timeout=10)

    def post(self, path: str, body: Any, key: str | None = None, **headers: str) -> httpx.Response:
        extra = {name.replace("_", "-"): value for name, value in headers.items()}
        if key is not None:
            extra["idempotency-key"] = key
        return self.client.post(path, content=json.dumps(body), headers={"content-type": "application/json", **extra})

    def close(self) -> None:
        self.client.close()


upstream = pytest.fixture(scope="module", name="upstream")(serving)


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pki")
    pki = Pki(root, TD)
    pki.issue("server", "/ns/shop/sa/orders")
    pki.issue("alice", "/ns/shop/sa/alice")
    pki.issue("mallory", "/ns/shop/sa/mallory")
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", alg="ES256", use="sig")
    (root / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    return {"pki": pki, "root": root, "jwt_key": key}


def _token(key: Any, subject: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "sub": subject, "iat": now, "exp": now + 600}, key, algorithm="ES256",
                      headers={"kid": "k1"})


def _ingest(name: str, prefix: str, folder: Path, sink: dict[str, Any], **ingest: Any) -> dict[str, Any]:
    return {"name": name, "match": {"path_prefix": prefix}, "timeout_ms": 5000,
            "ingest": {"log": {"path": str(folder / f"log-{name}.db")}, "sink": sink,
                       "delivery": {"max_items": 64, "backoff_initial_ms": 50, "backoff_max_ms": 200}, **ingest}}


def _routes(kind: str, folder: Path, table: str) -> list[dict[str, Any]]:
    routes = [
        batch_route(f"ja-{kind}", "/ja", "/json-array/ok", **REPLAY),
        batch_route(f"env-{kind}", "/env", "/envelope/ok", **REPLAY),
        batch_route(f"fly-{kind}", "/fly", "/json-array/ok", key=["header:x-tenant"]),
        _ingest(f"sqlite-{kind}", "/sqlite", folder, {"type": "sqlite", "path": str(folder / f"sink-{kind}.db")}),
        _ingest(f"pg-{kind}", "/pg", folder, {"type": "postgres", "url": PG_URL, "table": f"{table}_{kind}",
                                              "pool_size": 1}),
    ]
    if kind == "address":
        routes.append(batch_route("ja-header", "/by-user", "/json-array/ok", idempotency_scope="header:x-user-id",
                                  **REPLAY))
    return routes


@pytest.fixture(scope="module")
def mesh_env(module_mesh: Any, upstream: BatchUpstream, credentials: dict[str, Any],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("idempotency")
    table = f"mb_sec_idem_{secrets.token_hex(4)}"
    pki: Pki = credentials["pki"]
    root: Path = credentials["root"]
    jwt_spec = {"issuer": ISSUER, "jwks": str(root / "jwks.json"), "required": False, "forward": False}
    proxy: MeshbatchProcess = module_mesh.start(config(
        [listener("address", _routes("address", folder, table)),
         listener("mtls", _routes("mtls", folder, table), tls={"mode": "strict"}),
         listener("jwt", _routes("jwt", folder, table), jwt=jwt_spec)],
        [cluster("batch", upstream.address)], identity=pki.identity("server"), drain_timeout_ms=3000))
    yield {"proxy": proxy, "folder": folder, "table": table, "credentials": credentials}
    if _pg_up():
        for kind in KINDS:
            asyncio.run(_sql(f"DROP TABLE IF EXISTS {table}_{kind}"))


def _pair(env: dict[str, Any], kind: str) -> tuple[Caller, Caller]:
    """The owner of a key and a second caller of another scope, on the listener of `kind`."""
    proxy: MeshbatchProcess = env["proxy"]
    host, port = proxy.address(kind)
    if kind == "mtls":
        root: Path = env["credentials"]["root"]
        ca = env["credentials"]["pki"].ca

        def mtls(name: str) -> Caller:
            return Caller(f"https://{host}:{port}", verify=client_context(ca, root / f"{name}.crt",
                                                                         root / f"{name}.key"))

        return mtls("alice"), mtls("mallory")
    if kind == "jwt":
        key = env["credentials"]["jwt_key"]
        base = f"http://{host}:{port}"
        return Caller(base, token=_token(key, "alice")), Caller(base, token=_token(key, "mallory"))
    base = f"http://{host}:{port}"
    return Caller(base, local="127.0.0.1"), Caller(base, local="127.0.0.2")


class Pair:
    """A key's owner and a second caller of another scope (`kind`: how they differ), on the listener of `kind`."""

    def __init__(self, kind: str, env: dict[str, Any]) -> None:
        self.kind = kind
        self.env = env
        self.owner, self.other = _pair(env, kind)

    def batcher(self, route: str) -> dict[str, Any]:
        proxy: MeshbatchProcess = self.env["proxy"]
        summary: dict[str, Any] = httpx.get(proxy.url("admin", "/batchers"), timeout=5).json()["batchers"][route]
        return summary

    def close(self) -> None:
        self.owner.close()
        self.other.close()


@pytest.fixture(params=KINDS)
def pair(request: pytest.FixtureRequest, mesh_env: dict[str, Any]) -> Iterator[Pair]:
    both = Pair(request.param, mesh_env)
    yield both
    both.close()


def _batches(upstream: BatchUpstream, route_path: str) -> int:
    return len([b for b in upstream.snapshot() if b.path == route_path])


# -- batch routes ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("prefix", "upstream_path", "status"), [("/ja", "/json-array/ok", 200),
                                                                ("/env", "/envelope/ok", 201)])
def test_a_kept_answer_is_replayed_only_to_its_own_caller(pair: Pair, upstream: BatchUpstream, prefix: str,
                                                          upstream_path: str, status: int) -> None:
    owner, other = pair.owner, pair.other
    key, tenant = f"pay-{secrets.token_hex(4)}", {"x_tenant": "acme"}
    secret = {"card": "4242", "owner": "alice"}
    upstream.reset()
    first = owner.post(f"{prefix}/x", secret, key, **tenant)
    assert first.status_code == status and first.json()["echo"] == secret
    assert owner.post(f"{prefix}/x", {"second": True}, f"{key}-2", **tenant).status_code == status
    # the same key, the same body, the same tenant header, from another scope: sent as its own item
    copy = other.post(f"{prefix}/x", secret, key, **tenant)
    assert copy.status_code == status and "idempotent-replayed" not in copy.headers
    assert copy.headers["x-meshbatch-batch-id"] != first.headers["x-meshbatch-batch-id"]
    # another body under the owner's other key: neither refused (that would say the key exists) nor replayed
    probe = other.post(f"{prefix}/x", {"probe": True}, f"{key}-2", **tenant)
    assert probe.status_code == status and probe.json()["echo"] == {"probe": True}
    assert "idempotent-replayed" not in probe.headers
    assert _batches(upstream, upstream_path) == 4
    # within the owner's scope, the window works as before
    again = owner.post(f"{prefix}/x", secret, key, **tenant)
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    reused = owner.post(f"{prefix}/x", {"card": "0000"}, key, **tenant)
    assert reused.status_code == 400 and reused.json()["reason"] == "idempotency_key_reused"
    assert _batches(upstream, upstream_path) == 4, f"{pair.kind}: the owner's repeat and reuse never went upstream"


def test_callers_of_two_scopes_never_share_an_item_in_flight(pair: Pair, upstream: BatchUpstream) -> None:
    key, route = f"fly-{secrets.token_hex(4)}", f"fly-{pair.kind}"
    shared = pair.batcher(route)["dedup_shared"]
    upstream.reset()
    upstream.hold()
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(pair.owner.post, "/fly/x", {"n": 1}, key, x_tenant="acme")
            upstream.wait_batches(1)  # in flight, held at the upstream
            second = pool.submit(pair.other.post, "/fly/x", {"n": 1}, key, x_tenant="acme")
            wait_until(lambda: pair.batcher(route)["queued"] == 1, 5, "the other caller's own item, queued")
            upstream.release()
            a, b = first.result(10), second.result(10)
    finally:
        upstream.release()
    assert a.status_code == b.status_code == 200
    assert a.headers["x-meshbatch-batch-id"] != b.headers["x-meshbatch-batch-id"]
    assert [batch.size for batch in upstream.snapshot()] == [1, 1]
    assert pair.batcher(route)["dedup_shared"] == shared


def test_a_scope_header_set_by_an_authenticating_hop(mesh_env: dict[str, Any], upstream: BatchUpstream) -> None:
    proxy: MeshbatchProcess = mesh_env["proxy"]
    host, port = proxy.address("address")
    base = f"http://{host}:{port}"
    one, two = Caller(base, local="127.0.0.1"), Caller(base, local="127.0.0.2")
    upstream.reset()
    try:
        key = f"u-{secrets.token_hex(4)}"
        first = one.post("/by-user/x", {"n": 1}, key, x_user_id="alice", x_tenant="t")
        assert first.status_code == 200 and "idempotent-replayed" not in first.headers
        other_user = one.post("/by-user/x", {"n": 1}, key, x_user_id="bob", x_tenant="t")
        assert "idempotent-replayed" not in other_user.headers
        same_user = two.post("/by-user/x", {"n": 1}, key, x_user_id="alice", x_tenant="t")  # another address
        assert same_user.headers.get("idempotent-replayed") == "true"
        assert len(upstream.snapshot()) == 2
        summary = httpx.get(proxy.url("admin", "/batchers"), timeout=5).json()["batchers"]["ja-header"]
        assert summary["policy"]["idempotency_scope"] == "header:x-user-id"
    finally:
        one.close()
        two.close()


# -- ingest routes ----------------------------------------------------------------------------------------------

def _rows(env: dict[str, Any], sink: str, kind: str) -> list[tuple[str, Any]]:
    """(event id, payload) of every event in the sink of route `sink`-`kind`."""
    if sink == "sqlite":
        path = env["folder"] / f"sink-{kind}.db"
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        except sqlite3.OperationalError:
            return []
        try:
            return [(i, json.loads(p)) for i, p in db.execute("SELECT event_id, payload FROM events")]
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()
    try:
        rows = asyncio.run(_sql(f"SELECT event_id, payload FROM {env['table']}_{kind}"))
    except asyncpg.exceptions.UndefinedTableError:
        return []
    return [(r["event_id"], json.loads(r["payload"])) for r in rows]


def _delivered(env: dict[str, Any], sink: str, kind: str) -> Callable[[], bool]:
    proxy: MeshbatchProcess = env["proxy"]

    def empty() -> bool:
        state = httpx.get(proxy.url("admin", "/ingest"), timeout=5).json()["ingest"][f"{sink}-{kind}"]
        return bool(state["log"]["backlog"] == 0 and not state["delivery"].get("in_flight"))

    return empty


def _sinks() -> list[Any]:
    return ["sqlite", pytest.param("pg", marks=pytest.mark.skipif(not _pg_up(), reason="PostgreSQL not reachable"))]


@pytest.mark.parametrize("sink", _sinks())
def test_one_key_from_two_callers_stores_both_events(pair: Pair, sink: str) -> None:
    kind, owner, other, mesh_env = pair.kind, pair.owner, pair.other, pair.env
    key = f"order-{secrets.token_hex(4)}"
    mine = owner.post(f"/{sink}/e", {"from": "owner", "key": key}, key, x_tenant="acme")
    theirs = other.post(f"/{sink}/e", {"from": "other", "key": key}, key, x_tenant="acme")
    retry = owner.post(f"/{sink}/e", {"from": "owner", "key": key}, key, x_tenant="acme")
    assert mine.status_code == theirs.status_code == retry.status_code == 202
    assert mine.json()["id"] == retry.json()["id"] != theirs.json()["id"]
    wait_until(_delivered(mesh_env, sink, kind), 15, "the events to be delivered")
    stored = [(i, p["from"]) for i, p in _rows(mesh_env, sink, kind) if p.get("key") == key]
    assert sorted(stored) == sorted([(mine.json()["id"], "owner"), (theirs.json()["id"], "other")])


@pytest.mark.parametrize("sink", _sinks())
def test_predicted_ids_sent_as_keys_claim_no_other_callers_event(pair: Pair, sink: str) -> None:
    kind, victim, attacker, mesh_env = pair.kind, pair.owner, pair.other, pair.env
    seen = attacker.post(f"/{sink}/e", {"from": "attacker", "seed": True}).json()["id"]
    head, _, tail = seen.rpartition("-")
    try:  # the next ids, if ids counted: every later event of the route would land on one of them
        predicted = [f"{head}-{int(tail, 16) + step:x}" for step in range(1, 40)]
    except ValueError:
        predicted = []
    predicted += [seen, f"{seen}:0"]
    for guess in predicted:
        assert attacker.post(f"/{sink}/e", {"from": "attacker"}, guess).status_code == 202
    victim_key = f"v-{secrets.token_hex(4)}"
    for n in range(1, 20, 2):  # and the keys the victim will use
        assert attacker.post(f"/{sink}/e", {"from": "attacker"}, f"{victim_key}-{n}").status_code == 202
    tag = secrets.token_hex(4)
    acked = []
    for n in range(20):
        key = f"{victim_key}-{n}" if n % 2 else None
        answer = victim.post(f"/{sink}/e", {"from": "victim", "tag": tag, "n": n}, key)
        assert answer.status_code == 202
        acked.append((answer.json()["id"], n))
    wait_until(_delivered(mesh_env, sink, kind), 15, "the events to be delivered")
    stored = sorted((i, p["n"]) for i, p in _rows(mesh_env, sink, kind) if p.get("tag") == tag)
    assert stored == sorted(acked), f"{kind}/{sink}: every event the victim got a 202 for is stored, as its own"
    assert all(event_id.startswith("e." if n % 2 == 0 else "k.") for event_id, n in acked)
