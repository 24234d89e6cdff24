"""Authorities and absolute-form targets (http/target.py): what a Host or a URL may name."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.errors import BadRequest
from meshbatch.http.target import parse_authority, split_absolute


@pytest.mark.parametrize(("raw", "name", "value"), [
    (b"service", b"service", b"service"),
    (b"Service.Example:8080", b"service.example", b"Service.Example:8080"),
    (b"service.", b"service", b"service"),  # the fully qualified spelling routes like the short one
    (b"service.:80", b"service", b"service:80"),
    (b"10.0.0.1:9000", b"10.0.0.1", b"10.0.0.1:9000"),
    (b"[::1]", b"[::1]", b"[::1]"),
    (b"[2001:db8::1]:443", b"[2001:db8::1]", b"[2001:db8::1]:443"),
    (b"my_svc-1.ns.svc.cluster.local", b"my_svc-1.ns.svc.cluster.local", b"my_svc-1.ns.svc.cluster.local"),
    (b"", b"", b""),  # RFC 9112 3.2: an empty Host for a target without authority
    (b"svc:", b"svc", b"svc:"),  # port = *DIGIT
])
def test_valid(raw: bytes, name: bytes, value: bytes) -> None:
    authority = parse_authority(raw)
    assert (authority.name, authority.value) == (name, value)


@pytest.mark.parametrize("raw", [
    b"a@b", b"user:pw@svc", b"svc/../admin", b"svc/x", b"svc?x", b"svc#x", b"svc\\x", b"svc%2Fx", b"svc%41",
    b"a b", b"svc:80:80", b"svc:http", b"svc:99999", b"svc:123456", b"[::1", b"::1", b"[zz::1]", b"[::1]x",
    b"[v1.x]", b"svc..", b".", b"svc\x00", b"svc\xc3\xa9",
])
def test_invalid(raw: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_authority(raw)
    assert (caught.value.status, caught.value.reason) == (400, "invalid_host")


@pytest.mark.parametrize(("a", "b", "scheme", "same"), [
    (b"svc", b"SVC", b"http", True), (b"svc", b"svc:80", b"http", True), (b"svc:443", b"svc", b"https", True),
    (b"svc", b"svc:443", b"http", False), (b"svc.", b"svc", b"http", True), (b"svc", b"other", b"http", False),
    (b"svc:8080", b"svc:8081", b"http", False),
])
def test_same_authority(a: bytes, b: bytes, scheme: bytes, same: bool) -> None:
    assert parse_authority(a).same_as(parse_authority(b), scheme) is same


@pytest.mark.parametrize(("url", "parts"), [
    (b"http://svc/a?b", (b"http", b"svc", b"/a?b")),
    (b"HTTPS://svc:8443", (b"https", b"svc:8443", b"/")),
    (b"http://svc?x=1", (b"http", b"svc", b"/?x=1")),
])
def test_split_absolute(url: bytes, parts: tuple[bytes, bytes, bytes]) -> None:
    assert split_absolute(url) == parts


@pytest.mark.parametrize(("url", "reason"), [
    (b"ftp://svc/x", "unsupported_scheme"), (b"gopher://svc/", "unsupported_scheme"),
    (b"http:///x", "invalid_host"), (b"svc/x", "invalid_target"),
])
def test_split_absolute_refused(url: bytes, reason: str) -> None:
    with pytest.raises(BadRequest) as caught:
        split_absolute(url)
    assert caught.value.reason == reason


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=30))
def test_an_accepted_authority_has_no_path_or_userinfo(raw: bytes) -> None:
    try:
        authority = parse_authority(raw)
    except BadRequest:
        return
    for forbidden in (b"@", b"/", b"\\", b"?", b"#", b"%", b" "):
        assert forbidden not in authority.value
    assert parse_authority(authority.value).value == authority.value  # stable
