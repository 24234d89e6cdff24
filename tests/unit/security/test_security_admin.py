"""The admin API's guards without a server: the Host check against DNS rebinding, the token for payloads and
mutations, and the warning for an admin listener exposed without a token."""

from __future__ import annotations

import pytest

from meshbatch.admin.hosts import AdminHosts
from meshbatch.errors import ProxyError
from meshbatch.http.message import Request
from meshbatch.security.admin import check_admin_token, exposure_warnings, is_loopback, require_admin_token

TOKEN = "admin-token-0123456789"


@pytest.mark.parametrize(("listen", "allowed", "host", "ok"), [
    ("127.0.0.1:9901", [], b"127.0.0.1", True),
    ("127.0.0.1:9901", [], b"127.9.9.9", True),
    ("127.0.0.1:9901", [], b"localhost", True),
    ("127.0.0.1:9901", [], b"localhost.", True),
    ("127.0.0.1:9901", [], b"api.localhost", True),
    ("127.0.0.1:9901", [], b"[::1]", True),
    ("127.0.0.1:9901", [], b"[::ffff:127.0.0.1]", True),
    ("127.0.0.1:9901", [], b"", True),  # HTTP/1.0 without Host: not a browser
    ("127.0.0.1:9901", [], b"evil.example", False),  # the rebinding page's own name
    ("127.0.0.1:9901", [], b"localhost.evil.example", False),
    ("127.0.0.1:9901", [], b"10.0.0.5", False),
    ("127.0.0.1:9901", [], b"\xff", False),
    ("10.0.0.5:9901", [], b"10.0.0.5", True),  # its own address
    ("10.0.0.5:9901", [], b"10.0.0.6", False),
    ("[fd00::5]:9901", [], b"[fd00:0::5]", True),
    ("admin.internal:9901", [], b"admin.internal", True),
    ("0.0.0.0:9901", [], b"10.1.2.3", True),  # any address literal on a wildcard listener (pod IP probes)
    ("0.0.0.0:9901", [], b"[fd00::1]", True),
    ("0.0.0.0:9901", [], b"evil.example", False),
    ("0.0.0.0:9901", ["admin.mesh.local"], b"admin.mesh.local", True),
    ("0.0.0.0:9901", ["*.svc.cluster.local"], b"proxy.ns.svc.cluster.local", True),
    ("0.0.0.0:9901", ["*.svc.cluster.local"], b"svc.cluster.local.evil", False),
    ("127.0.0.1:9901", ["*"], b"evil.example", True),
])
def test_admin_hosts(listen: str, allowed: list[str], host: bytes, ok: bool) -> None:
    assert AdminHosts(listen, allowed).allows(host) is ok


def _request(method: bytes = b"GET", authorization: bytes | None = None) -> Request:
    headers = [(b"authorization", authorization)] if authorization is not None else []
    return Request(method, b"/ingest/dead_letters", headers)


def _reason(call: object) -> str:
    assert callable(call)
    with pytest.raises(ProxyError) as caught:
        call()
    return f"{caught.value.status} {caught.value.reason}"


def test_payloads_need_the_token_even_for_get() -> None:
    assert _reason(lambda: check_admin_token(None, _request())) == "403 admin_token_not_configured"
    assert _reason(lambda: check_admin_token(TOKEN, _request())) == "401 bad_admin_token"
    assert _reason(lambda: check_admin_token(TOKEN, _request(authorization=b"Bearer nope"))) == "401 bad_admin_token"
    assert _reason(lambda: check_admin_token(TOKEN, _request(authorization=TOKEN.encode()))) == "401 bad_admin_token"
    check_admin_token(TOKEN, _request(authorization=b"Bearer " + TOKEN.encode()))


def test_reads_need_no_token_and_mutations_do() -> None:
    require_admin_token(None, _request())
    assert _reason(lambda: require_admin_token(None, _request(b"POST"))) == "403 admin_token_not_configured"


@pytest.mark.parametrize(("listen", "token", "warned"), [
    ("127.0.0.1:9901", None, False), ("[::1]:9901", None, False), ("localhost:9901", None, False),
    ("0.0.0.0:9901", None, True), ("[::]:9901", None, True), ("10.0.0.5:9901", None, True),
    ("admin.internal:9901", None, True), ("0.0.0.0:9901", TOKEN, False), (None, None, False),
])
def test_an_exposed_admin_without_a_token_is_warned_about(listen: str | None, token: str | None,
                                                         warned: bool) -> None:
    warnings = exposure_warnings(listen, token)
    assert bool(warnings) is warned
    if warned:
        assert "admin.token" in warnings[0] and str(listen) in warnings[0]


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1:0") and is_loopback("[::1]:1") and not is_loopback(":9901")
