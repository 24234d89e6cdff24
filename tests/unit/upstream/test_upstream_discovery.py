"""Discovery cores without a network: endpoint entries, the file source's polling, etcd keys and events."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshbatch.config.model import Discovery, EndpointSpec
from meshbatch.discovery.entries import EntryError, parse_entries
from meshbatch.discovery.etcd import EtcdSource, parse_kv
from meshbatch.discovery.etcd_gateway import b64, prefix_end
from meshbatch.discovery.file import FileSource


def test_entries_in_both_shapes_deduplicated() -> None:
    specs = parse_entries({"endpoints": ["10.0.0.1:80", {"address": "10.0.0.2:80", "weight": 2,
                                                          "metadata": {"zone": "a"}}, "10.0.0.1:80"]})
    assert [(s.address, s.weight, s.metadata) for s in specs] == [
        ("10.0.0.1:80", 1, {}), ("10.0.0.2:80", 2, {"zone": "a"})]
    assert parse_entries(None) == []


@pytest.mark.parametrize(("data", "message"), [
    (["nowhere"], "endpoints[0].address"),
    ([{"address": "10.0.0.1:80", "weight": 0}], "endpoints[0].weight"),
    ([7], "endpoints[0]: an endpoint is"),
    ("10.0.0.1:80", "expected a list"),
])
def test_bad_entries_say_where(data: object, message: str) -> None:
    with pytest.raises(EntryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_entries(data)


def test_the_file_source_applies_changes_and_keeps_the_last_good_set(tmp_path: Path) -> None:
    path = tmp_path / "eps.json"
    path.write_text('["10.0.0.1:80"]')
    source = FileSource(Discovery(type="file", path=str(path)), "svc")
    applied: list[list[str]] = []

    def apply(specs: list[EndpointSpec]) -> None:
        applied.append([s.address for s in specs])

    source.poll(apply)
    source.poll(apply)  # unchanged: nothing applied again
    assert applied == [["10.0.0.1:80"]]
    path.write_text("[oops")
    os.utime(path, ns=(1, 1))
    source.poll(apply)
    assert applied == [["10.0.0.1:80"]] and "not YAML" in source.status.last_error
    path.write_text("endpoints: [10.0.0.2:80, 10.0.0.3:80]")
    source.poll(apply)
    assert applied[-1] == ["10.0.0.2:80", "10.0.0.3:80"] and source.status.last_error == ""
    path.unlink()
    source.poll(apply)
    assert len(applied) == 2 and "cannot stat" in source.status.last_error  # the last set stays


def test_etcd_values_and_prefix_ranges() -> None:
    prefix = b"/svc/"
    assert parse_kv(prefix, b"/svc/a", b"10.0.0.1:80").address == "10.0.0.1:80"
    assert parse_kv(prefix, b"/svc/10.0.0.2:80", b"").address == "10.0.0.2:80"
    spec = parse_kv(prefix, b"/svc/x", b'{"address": "10.0.0.3:80", "weight": 5}')
    assert (spec.address, spec.weight) == ("10.0.0.3:80", 5)
    with pytest.raises(EntryError):
        parse_kv(prefix, b"/svc/x", b"{broken")
    assert prefix_end(b"/svc/") == b"/svc0"
    assert prefix_end(b"a\xff") == b"b"


def test_etcd_events_update_the_set() -> None:
    source = EtcdSource(Discovery(type="etcd", urls=["http://127.0.0.1:2379"], prefix="/svc/"), "svc")
    applied: list[list[str]] = []

    def apply(specs: list[EndpointSpec]) -> None:
        applied.append([s.address for s in specs])

    source.load({b"/svc/a": b"10.0.0.1:80", b"/svc/bad": b"nope"}, apply)
    assert applied == [["10.0.0.1:80"]] and b"/svc/bad" in source.invalid
    source.events([{"kv": {"key": b64(b"/svc/b"), "value": b64(b"10.0.0.2:80"), "mod_revision": "7"}},
                   {"type": "DELETE", "kv": {"key": b64(b"/svc/a"), "mod_revision": "8"}}], apply)
    assert applied[-1] == ["10.0.0.2:80"] and source.revision == 8
