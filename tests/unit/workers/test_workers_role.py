"""What a worker changes in the config it loads: shared ports, a private admin listener, its own ingest log."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbatch.config import load
from meshbatch.config.plain import IngestRoute, of
from meshbatch.runtime.workers.role import PRIVATE_ADMIN, WorkerRole, adapt, log_path, stranded_logs

CONFIG = """
admin: {listen: "0.0.0.0:9901", token: "0123456789abcdef-token"}
listeners:
  - name: main
    listen: "127.0.0.1:0"
    routes:
      - {name: events, ingest: {log: {path: "%s/log.db"}, sink: {type: sqlite, path: "%s/sink.db"}}}
      - {name: plain, cluster: up}
clusters: [{name: up, endpoints: ["127.0.0.1:9"]}]
"""


@pytest.mark.parametrize(("path", "index", "expected"), [
    ("data/log.db", 0, "data/log.db"), ("data/log.db", 3, "data/log.w3.db"), ("log", 1, "log.w1"),
    ("/a.b/log", 2, "/a.b/log.w2"), (".hidden", 1, ".hidden.w1"), ("x.tar.db", 1, "x.tar.w1.db"),
])
def test_log_paths(path: str, index: int, expected: str) -> None:
    assert log_path(path, index) == expected


def test_a_worker_shares_the_ports_keeps_the_token_and_writes_its_own_log(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(CONFIG % (tmp_path, tmp_path), encoding="utf-8")
    config = of(load(file, log_notes=False))
    role = WorkerRole(1, 2, listen={"main 127.0.0.1:0": "127.0.0.1:41000"})
    assert WorkerRole.decode(role.encode()) == role
    mine = adapt(config, role)
    listener = mine.listeners[0]
    assert listener.reuse_port and listener.listen == "127.0.0.1:41000"
    assert mine.admin is not None and mine.admin.listen == PRIVATE_ADMIN
    assert config.admin is not None and mine.admin.token == config.admin.token
    events = listener.routes[0]
    assert isinstance(events, IngestRoute)
    assert events.ingest.log.path == f"{tmp_path}/log.w1.db"
    assert events.ingest.sink.path == f"{tmp_path}/sink.db"  # the sink is shared: it takes each event id once
    assert listener.routes[1] == config.listeners[0].routes[1]
    first = adapt(config, WorkerRole(0, 2)).listeners[0].routes[0]
    assert isinstance(first, IngestRoute) and first.ingest.log.path == f"{tmp_path}/log.db"
    assert config.listeners[0].listen == "127.0.0.1:0" and not config.listeners[0].reuse_port  # a copy

    for name in ("log.w1.db", "log.w2.db", "log.w10.db", "log.wx.db", "log.w-1.db"):
        (tmp_path / name).write_bytes(b"")
    assert stranded_logs(config, 2) == [f"{tmp_path}/log.w10.db", f"{tmp_path}/log.w2.db"]
    assert stranded_logs(config, 11) == []


def test_a_worker_without_a_configured_admin_still_has_its_private_one(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("admin: null\nlisteners: [{name: main, listen: '127.0.0.1:8080'}]\n", encoding="utf-8")
    mine = adapt(of(load(file, log_notes=False)), WorkerRole(0, 2))
    assert mine.admin is not None and mine.admin.listen == PRIVATE_ADMIN
    assert mine.listeners[0].listen == "127.0.0.1:8080" and mine.listeners[0].reuse_port
