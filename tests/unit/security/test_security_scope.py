"""The caller's principal and the idempotency scope built on it: who counts as the same caller, and that no
header value or token subject can spell out another caller's scope."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from meshbatch.config.model import Batch, Ingest
from meshbatch.http.message import Request
from meshbatch.security import identity
from meshbatch.security.scope import GLOBAL, IdempotencyScope
from meshbatch.service import Call

SPIFFE_A = "spiffe://example.org/ns/shop/sa/a"
SPIFFE_B = "spiffe://example.org/ns/shop/sa/b"


def req(client: str = "10.0.0.1", peer: str | None = None, jwt: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None) -> Call:
    """A caller's request as the stack holds it: its peer identity (mTLS) and its validated token's principal."""
    call = Call(Request(b"POST", b"/orders", list(headers or []), b"{}", client=client))
    call.request.identity = peer
    call.principal = jwt
    return call


def caller_principal(call: Call, header: bytes | None = None) -> str:
    return identity.caller_principal(call.request, call.principal, header)


def _of(scope: IdempotencyScope, call: Call) -> bytes:
    return scope.of(call.request, call.principal)


def test_the_strongest_credentials_name_the_caller_and_the_address_only_without_them():
    assert caller_principal(req(peer=SPIFFE_A)) == caller_principal(req(client="10.9.9.9", peer=SPIFFE_A))
    assert caller_principal(req(peer=SPIFFE_A)) != caller_principal(req(peer=SPIFFE_B))
    assert caller_principal(req(jwt="iss/alice")) == caller_principal(req(client="10.9.9.9", jwt="iss/alice"))
    assert caller_principal(req(jwt="iss/alice")) != caller_principal(req(jwt="iss/bob"))
    assert caller_principal(req()) != caller_principal(req(client="10.0.0.2"))
    assert caller_principal(req()) == caller_principal(req())


def test_behind_one_mtls_peer_each_jwt_user_is_its_own_caller():
    front = caller_principal(req(peer=SPIFFE_A))
    alice = caller_principal(req(peer=SPIFFE_A, jwt="iss/alice"))
    bob = caller_principal(req(peer=SPIFFE_A, jwt="iss/bob"))
    assert len({front, alice, bob}) == 3


def test_a_scope_header_counts_only_when_configured_and_every_copy_counts():
    tenant = [(b"x-user", b"alice")]
    assert caller_principal(req(headers=tenant)) == caller_principal(req())  # not configured: ignored
    assert caller_principal(req(headers=tenant), b"x-user") != caller_principal(req(), b"x-user")
    assert caller_principal(req(client="1.1.1.1", headers=tenant), b"x-user") == \
        caller_principal(req(client="2.2.2.2", headers=tenant), b"x-user")
    forged_first = [(b"x-user", b"alice"), (b"x-user", b"mallory")]
    assert caller_principal(req(headers=forged_first), b"x-user") != caller_principal(req(headers=tenant), b"x-user")


def test_a_header_cannot_pose_as_an_identity_or_an_address():
    spoof = caller_principal(req(headers=[(b"x-user", SPIFFE_A.encode())]), b"x-user")
    assert spoof != caller_principal(req(peer=SPIFFE_A))
    address = caller_principal(req(client="10.0.0.1"))
    assert caller_principal(req(client="", headers=[(b"x-user", b"10.0.0.1")]), b"x-user") != address


_text = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(a=st.tuples(st.none() | _text, st.none() | _text, st.lists(_text, max_size=2), _text),
       b=st.tuples(st.none() | _text, st.none() | _text, st.lists(_text, max_size=2), _text))
@example(a=("x;jwt:y", None, [], ""), b=("x", "y", [], ""))  # one part that spells two
@example(a=(None, "iss/a;header:b", [], ""), b=(None, "iss/a", ["b"], ""))
@example(a=(None, None, ["a;header:b"], ""), b=(None, None, ["a", "b"], ""))
def test_different_credentials_never_make_the_same_principal(a, b):
    def principal(parts):
        peer, jwt, values, client = parts
        headers = [(b"x-user", v.encode("latin-1", "replace")) for v in values]
        return caller_principal(req(client, peer, jwt, headers), b"x-user")

    def normalised(parts):  # what the caller is made of: the address only counts without credentials
        peer, jwt, values, client = parts
        values = [v.encode("latin-1", "replace") for v in values]
        return (peer, jwt, values, None) if peer is not None or jwt is not None or values else (None, None, [], client)

    assert (principal(a) == principal(b)) == (normalised(a) == normalised(b))


def test_the_scope_modes():
    assert _of(IdempotencyScope("global"), req(peer=SPIFFE_A)) == GLOBAL == _of(IdempotencyScope("global"), req())
    principal = IdempotencyScope()
    assert _of(principal, req(peer=SPIFFE_A)) != _of(principal, req(peer=SPIFFE_B))
    assert _of(principal, req(jwt="iss/\ud800")) == _of(principal, req(jwt="iss/\ud800"))  # lone surrogates encode
    header = IdempotencyScope("header:X-User")
    assert header.header == b"x-user"
    assert _of(header, req(headers=[(b"x-user", b"a")])) != _of(header, req(headers=[(b"x-user", b"b")]))
    with pytest.raises(ValueError, match="idempotency_scope"):
        IdempotencyScope("tenant")


@pytest.mark.parametrize("bad", ["", "header:", "header:x user", "tenant", "client", "header:x\r\ny"])
def test_config_refuses_unknown_scopes(bad):
    with pytest.raises(ValidationError, match="principal"):
        Batch(idempotency_scope=bad)
    with pytest.raises(ValidationError, match="principal"):
        Ingest(idempotency_scope=bad)


def test_config_default_is_principal():
    assert Batch().idempotency_scope == Ingest().idempotency_scope == "principal"
    assert Batch(idempotency_scope="header:x-user-id").idempotency_scope == "header:x-user-id"
    assert Ingest(idempotency_scope="global").idempotency_scope == "global"
