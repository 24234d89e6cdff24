"""Adding a shard as docs/ingestion.md says, through a real `meshbatch run`: SQLite shards, `meshbatch shards
plan --from-sinks --list` names the keys that will move, the config gains a shard, SIGHUP; from then on exactly
those keys' events go to the new shard, the others stay where they were. An event without the key is parked
in dead letters at once."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from test_ingest_services import ingest_config, wait_until

from meshbatch.ingest.sinks.hashing import Rendezvous
from testbed.proxy import write_config

DEVICES = 40


def config(tmp_path: Path, shards: int) -> dict[str, Any]:
    return ingest_config(
        ack="fsync", log={"path": str(tmp_path / "log.db")},
        sink={"type": "sqlite", "shards": [str(tmp_path / f"s{i}.db") for i in range(shards)], "shard_by": "device",
              "columns": {"device": "device", "n": {"field": "n", "type": "bigint"}}},
        delivery={"max_items": 50, "max_attempts": 5})


def rows(path: Path) -> list[tuple[str, int]]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return []
    try:
        return [(d, n) for d, n in db.execute("SELECT device, n FROM events")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def send(url: str, numbers: range) -> None:
    with httpx.Client(timeout=10) as client:
        for n in numbers:
            response = client.post(url, json={"n": n, "device": f"d{n % DEVICES}"},
                                   headers={"idempotency-key": f"k-{n}"})
            assert response.status_code == 202, response.text


def test_adding_a_shard_moves_exactly_the_planned_keys(mesh: Any, tmp_path: Path) -> None:
    proxy = mesh.start(config(tmp_path, 2), "shards.yaml")
    url = proxy.url("main", "/events")
    send(url, range(120))
    paths = [tmp_path / f"s{i}.db" for i in range(3)]
    wait_until(lambda: sum(len(rows(p)) for p in paths[:2]) == 120, 20, "the first events stored")
    before = {d: i for i, p in enumerate(paths[:2]) for d, _ in rows(p)}
    assert len(before) == DEVICES

    plan = subprocess.run([sys.executable, "-m", "meshbatch", "shards", "plan", str(proxy.config_path), "--route",
                           "events", "--add", str(paths[2]), "--from-sinks", "--list"],
                          capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    moving = {line.split("\t")[0]: line.split("\t")[1:] for line in plan.stdout.splitlines()}
    assert moving and all(to == "2" for _, to in moving.values())
    assert all(before[d] == int(frm) for d, (frm, _) in moving.items())

    mark = proxy.mark()
    write_config(proxy.config_path, config(tmp_path, 3))
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_line("meshbatch: reloaded", start=mark)
    send(url, range(120, 240))
    wait_until(lambda: sum(len(rows(p)) for p in paths) == 240, 20, "the later events stored")
    ring = Rendezvous(["0", "1", "2"])
    for index, path in enumerate(paths):
        for device, n in rows(path):
            if n >= 120:
                assert ring.place(device.encode()) == index
                assert index == (2 if device in moving else before[device])
    assert {d for d, _ in rows(paths[2])} == set(moving)

    response = httpx.post(url, json={"n": -1}, headers={"idempotency-key": "no-device"}, timeout=5)
    assert response.status_code == 202
    state = wait_until(lambda: (s := httpx.get(proxy.url("admin", "/ingest"), timeout=5).json()["ingest"]["events"])
                       and s["log"]["dead_letters"] == 1 and s, 10, "the keyless event in dead letters")
    assert state["delivery"]["dead_lettered"] == 1 and state["sink"]["no_key"] == 1
    assert "no shard key" in state["delivery"]["last_error"]
