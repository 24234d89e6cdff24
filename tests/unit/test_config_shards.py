"""Sharded sink config: bare strings or named shards, every mistake with its path, shard URLs redacted."""

from __future__ import annotations

from textwrap import dedent

import pytest

from meshbatch.config import ConfigError, parse
from meshbatch.config.model import IngestRoute, Shard
from meshbatch.config.redact import REDACTED, redact_config

HEAD = """
listeners:
  - name: main
    listen: 127.0.0.1:0
    routes:
      - name: events
        match: {path_prefix: /events}
        ingest:
          log: {path: /tmp/log.db}
          sink: %s
"""
WHERE = "listeners[0].routes[0].ingest.sink"


def problems(sink: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(dedent(HEAD % sink))
    return [str(p) for p in info.value.problems]


def sink_of(sink: str) -> object:
    route = parse(dedent(HEAD % sink)).listeners[0].routes[0]
    assert isinstance(route, IngestRoute)
    return route.ingest.sink


def test_bare_strings_are_urls_for_postgres_and_paths_for_sqlite() -> None:
    pg = sink_of("{type: postgres, shards: ['postgresql://a/x', 'postgresql://b/x'], shard_by: device.id}")
    assert pg.shards == [Shard(url="postgresql://a/x"), Shard(url="postgresql://b/x")]  # type: ignore[attr-defined]
    assert pg.shard_names() == ["0", "1"]  # type: ignore[attr-defined]
    lite = sink_of("{type: sqlite, shards: [/tmp/a.db, {name: b, path: /tmp/b.db}], shard_by: d, default_shard: b}")
    assert lite.shards == [Shard(path="/tmp/a.db"), Shard(name="b", path="/tmp/b.db")]  # type: ignore[attr-defined]
    assert lite.shard_names() == ["0", "b"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("sink", "expected"), [
    ("{type: postgres, url: 'postgresql://a/x', shards: ['postgresql://b/x', 'postgresql://c/x'], shard_by: d}",
     f"{WHERE}.url: url and shards are mutually exclusive"),
    ("{type: sqlite, path: /tmp/s.db, shards: [/tmp/a.db, /tmp/b.db], shard_by: d}",
     f"{WHERE}.path: path and shards are mutually exclusive"),
    ("{type: postgres, shards: ['postgresql://a/x'], shard_by: d}", f"{WHERE}.shards: needs at least 2 shards"),
    ("{type: postgres, shards: ['postgresql://a/x', 'postgresql://a/x'], shard_by: d}",
     f"{WHERE}.shards[1].url: is the same database as shards[0]"),
    ("{type: sqlite, shards: [/tmp/a.db, /tmp/../tmp/a.db], shard_by: d}",
     f"{WHERE}.shards[1].path: is the same database as shards[0]"),
    ("{type: sqlite, shards: [{name: a, path: /tmp/a.db}, {name: a, path: /tmp/b.db}], shard_by: d}",
     f"{WHERE}.shards[1].name: shard name 'a' is used twice"),
    ("{type: postgres, shards: ['postgresql://a/x', 'postgresql://b/x']}", f"{WHERE}.shard_by: is required"),
    ("{type: postgres, shards: ['postgresql://a/x', 'postgresql://b/x'], shard_by: 'a..b'}",
     f"{WHERE}.shard_by: 'a..b' is not a field path"),
    ("{type: postgres, shards: ['postgresql://a/x', 'postgresql://b/x'], shard_by: d, default_shard: '7'}",
     f"{WHERE}.default_shard: '7' is not a shard; shards: 0, 1"),
    ("{type: postgres, shards: [{path: /tmp/a.db}, 'postgresql://b/x'], shard_by: d}",
     f"{WHERE}.shards[0].path: a postgres shard has a url, not a path"),
    ("{type: sqlite, shards: [/tmp/a.db, {url: 'postgresql://b/x'}], shard_by: d}",
     f"{WHERE}.shards[1].path: is required for a sqlite shard"),
    ("{type: cluster, shards: [a, b], shard_by: d}", f"{WHERE}.shards: shards apply to the database sinks"),
    ("{type: sqlite, path: /tmp/s.db, shard_by: d}", f"{WHERE}.shard_by: applies only to a sharded sink"),
    ("{type: sqlite, shards: [/tmp/log.db, /tmp/b.db], shard_by: d}",
     f"{WHERE}.shards[0].path: the sink and the log must be different files"),
    ("{type: sqlite, shards: [/tmp/a.db, {path: /tmp/b.db, name: ''}], shard_by: d}",
     f"{WHERE}.shards[1].name: must not be empty"),
    ("{type: sqlite, shards: /tmp/a.db, shard_by: d}", f"{WHERE}.shards"),
    ("{type: sqlite, shards: [" + ", ".join(f"/tmp/{i}.db" for i in range(257)) + "], shard_by: d}",
     f"{WHERE}.shards: "),
    ("{type: sqlite, shards: [/tmp/a.db, {path: /tmp/b.db, weight: 2}], shard_by: d}", f"{WHERE}.shards[1].weight"),
])
def test_mistakes_have_paths(sink: str, expected: str) -> None:
    found = problems(sink)
    assert any(p.startswith(expected) or expected in p for p in found), found


def test_shard_passwords_are_redacted() -> None:
    text = HEAD % ("{type: postgres, shards: ['postgresql://app:pw1@a/x', {name: b, url: 'postgresql://app:pw2@b/x'}], "
                   "shard_by: d}")
    dumped = redact_config(parse(dedent(text)))
    sink = dumped["listeners"][0]["routes"][0]["ingest"]["sink"]
    assert [s["url"] for s in sink["shards"]] == [f"postgresql://app:{REDACTED}@a/x", f"postgresql://app:{REDACTED}@b/x"]
    assert "pw1" not in str(dumped) and "pw2" not in str(dumped)
    with pytest.raises(ConfigError) as info:
        parse(dedent(HEAD % "{type: postgres, shards: ['postgresql://app:pw3@a/x', 'postgresql://app:pw3@a/x'], "
                     "shard_by: d}"))
    assert "pw3" not in str(info.value)
