"""The path normaliser (http/paths.py): RFC 3986 6.2.2 normal form, the refusals, each option; properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.errors import BadRequest
from meshbatch.http.paths import PathRules, normalize_path


@pytest.mark.parametrize(("raw", "normal"), [
    (b"/", b"/"),
    (b"/orders/7", b"/orders/7"),
    (b"/a/b/", b"/a/b/"),
    # dot segments, never above the root; a removed last segment leaves its slash
    (b"/a/./b", b"/a/b"), (b"/a/../b", b"/b"), (b"/../../etc", b"/etc"), (b"/a/b/..", b"/a/"),
    (b"/a/b/.", b"/a/b/"), (b"/..", b"/"), (b"/.", b"/"), (b"/a/..", b"/"),
    # escaped dots are dots (decoded first, then resolved)
    (b"/x/%2e%2e/admin", b"/admin"), (b"/x/.%2E/admin", b"/admin"), (b"/%2E", b"/"),
    # repeated slashes
    (b"//admin", b"/admin"), (b"/a//b///c", b"/a/b/c"), (b"/a//", b"/a/"), (b"//", b"/"),
    (b"/a//../b", b"/b"),  # merged first: as a file system reads it
    # unreserved escapes decoded, others upper-cased and kept
    (b"/%61dmin", b"/admin"), (b"/%7Euser", b"/~user"), (b"/a%2db%5f", b"/a-b_"),
    (b"/a%20b", b"/a%20b"), (b"/caf%c3%a9", b"/caf%C3%A9"), (b"/q%3fx", b"/q%3Fx"), (b"/a%25b", b"/a%25b"),
    # characters a path may not hold raw are escaped
    (b'/a"b<c>', b"/a%22b%3Cc%3E"), (b"/{x}|^`[]", b"/%7Bx%7D%7C%5E%60%5B%5D"),
    # what stays as it is
    (b"/Admin", b"/Admin"), (b"/v1.", b"/v1."), (b"/wiki/Washington,_D.C.", b"/wiki/Washington,_D.C."),
    (b"/.well-known/x", b"/.well-known/x"), (b"/a..b/...", b"/a..b/..."), (b"/a:b@c!$&'()*+,=", b"/a:b@c!$&'()*+,="),
])
def test_normal_form(raw: bytes, normal: bytes) -> None:
    assert normalize_path(raw) == normal


def test_a_path_needing_nothing_is_returned_as_is() -> None:
    path = b"/orders/7/items"
    assert normalize_path(path) is path


@pytest.mark.parametrize(("raw", "reason"), [
    (b"/a%2Fb", "escaped_slash_in_path"), (b"/a%2fb", "escaped_slash_in_path"), (b"/a%5cb", "escaped_slash_in_path"),
    (b"/admin;x", "path_parameters"), (b"/a;jsessionid=1/b", "path_parameters"),
    (b"/a\\b", "invalid_path"), (b"/a%00b", "invalid_path"), (b"/a%0d%0ab", "invalid_path"),
    (b"/a%7Fb", "invalid_path"), (b"/a\x00b", "invalid_path"), (b"/a b", "invalid_path"),
    (b"/bad%zz", "invalid_path"), (b"/bad%2", "invalid_path"), (b"/bad%", "invalid_path"),
    (b"/%ff", "invalid_path"), (b"/%c0%ae%c0%ae/x", "invalid_path"),  # not UTF-8 (an overlong '.', too)
    (b"/a#b", "fragment_in_target"), (b"relative/../x", "invalid_path"),
])
def test_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(BadRequest) as caught:
        normalize_path(raw)
    assert (caught.value.status, caught.value.reason) == (400, reason)


def test_escaped_slashes_kept() -> None:
    rules = PathRules(escaped_slashes="keep")
    assert normalize_path(b"/a%2fb/../c%5c", rules) == b"/c%5C"  # one segment `a%2Fb`, which `..` removes


def test_escaped_slashes_unescaped() -> None:
    rules = PathRules(escaped_slashes="unescape")
    assert normalize_path(b"/public%2F..%2Fadmin", rules) == b"/admin"  # unescaped, then resolved
    with pytest.raises(BadRequest):  # a backslash has no portable meaning: never turned into a slash
        normalize_path(b"/a%5Cb", rules)


def test_path_parameters_kept() -> None:
    assert normalize_path(b"/admin;x/./y", PathRules(path_parameters="keep")) == b"/admin;x/y"


def test_no_normalisation_still_validates() -> None:
    rules = PathRules(normalize=False, merge_slashes=False)
    assert normalize_path(b"/a/../%61//b", rules) == b"/a/../%61//b"
    for bad in (b"/a%2Fb", b"/a\\b", b"/a%00", b"/%ff", b"/a;b"):
        with pytest.raises(BadRequest):
            normalize_path(bad, rules)


def test_merge_only() -> None:
    assert normalize_path(b"//a/./b", PathRules(normalize=False)) == b"/a/./b"
    assert normalize_path(b"//a/./b", PathRules(merge_slashes=False)) == b"//a/b"


# properties -------------------------------------------------------------------------------------
SEGMENT = st.one_of(
    st.sampled_from([b"", b".", b"..", b"%2e", b"%2E%2e", b"a", b"%61", b"%20", b"%c3%a9", b"x.y", b"~", b"%7e",
                     b".hidden", b"a.", b"%41%42", b'"', b"{}"]),
    st.text(alphabet="abcXYZ019-._~!$&'()*+,=:@", max_size=6).map(str.encode),
)
PATHS = st.lists(SEGMENT, max_size=8).map(lambda parts: b"/" + b"/".join(parts))
PROPERTY = settings(max_examples=400, deadline=None, derandomize=True)


@PROPERTY
@given(PATHS)
def test_normalising_is_idempotent(raw: bytes) -> None:
    once = normalize_path(raw)
    assert normalize_path(once) == once


@PROPERTY
@given(PATHS)
def test_a_normal_path_has_no_empty_or_dot_segments(raw: bytes) -> None:
    normal = normalize_path(raw)
    assert normal.startswith(b"/")
    assert b"//" not in normal
    assert b"/./" not in normal and b"/../" not in normal
    assert not normal.endswith((b"/.", b"/.."))
    lowered = normal.lower()
    assert b"%2e" not in lowered and b"%7e" not in lowered and b"%61" not in lowered  # unreserved decoded


@PROPERTY
@given(st.binary(max_size=40))
def test_any_bytes_give_a_normal_path_or_a_400(raw: bytes) -> None:
    try:
        normal = normalize_path(b"/" + raw)
    except BadRequest as error:
        assert error.status == 400
        return
    assert normalize_path(normal) == normal
    assert all(0x21 <= c <= 0x7E for c in normal)  # printable ASCII only
