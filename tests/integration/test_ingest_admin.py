"""`/ingest` on the admin API: backlog and dead letters; `POST /ingest/replay` guarded by `admin.token` (refused
when none is configured); a poison event parked, the config fixed by a reload, the dead letter replayed."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
from test_ingest_services import ingest_config, wait_until

from meshbatch.ingest.record import key_of
from testbed.proxy import write_config
from testbed.stores import sqlite_rows

TOKEN = "s3cret-token-for-tests"


def config(tmp_path: Path, column_type: str, token: str | None = TOKEN) -> dict[str, Any]:
    return ingest_config(
        admin={"token": token} if token else None,
        log={"path": str(tmp_path / "log.db")},
        sink={"type": "sqlite", "path": str(tmp_path / "sink.db"), "columns": {"n": {"field": "n",
                                                                                    "type": column_type}}},
        delivery={"max_attempts": 2, "backoff_initial_ms": 20, "backoff_max_ms": 50})


def ingest(proxy: Any) -> dict[str, Any]:
    summary: dict[str, Any] = httpx.get(proxy.url("admin", "/ingest"), timeout=5).json()["ingest"]["events"]
    return summary


def test_dead_letters_listed_and_replayed_after_a_fix(mesh: Any, tmp_path: Path) -> None:
    proxy = mesh.start(config(tmp_path, "bigint"), "admin.yaml")
    events = proxy.url("main", "/events")
    assert httpx.post(events, json={"n": 1}, headers={"idempotency-key": "good"}).status_code == 202
    assert httpx.post(events, json={"n": "many"}, headers={"idempotency-key": "poison"}).status_code == 202
    wait_until(lambda: ingest(proxy)["log"]["dead_letters"] == 1, 10, "the poison event to be parked")
    summary = ingest(proxy)
    assert summary["log"]["backlog"] == 0 and summary["delivery"]["dead_lettered"] == 1
    assert sqlite_rows(tmp_path / "sink.db") == ["good"]
    letters_url = proxy.url("admin", "/ingest/dead_letters?route=events")
    assert httpx.get(letters_url, timeout=5).status_code == 401  # payloads need the token, like replay
    letters = httpx.get(letters_url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=5).json()["dead_letters"]
    assert [(key_of(d["id"]), d["attempts"]) for d in letters] == [("poison", 2)]
    assert "column n" in letters[0]["reason"]

    replay = proxy.url("admin", "/ingest/replay")
    missing = httpx.post(replay, json={"route": "events"}, timeout=5)
    assert missing.status_code == 401 and missing.json()["reason"] == "bad_admin_token"
    wrong = httpx.post(replay, json={}, headers={"authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401 and wrong.json()["reason"] == "bad_admin_token"
    assert httpx.get(replay, timeout=5).status_code == 405

    mark = proxy.mark()  # the fix: the column takes text; a reload hands the log over to the new route
    write_config(proxy.config_path, config(tmp_path, "text"))
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_line("meshbatch: reloaded", start=mark)
    done = httpx.post(replay, json={"route": "events", "ids": [letters[0]["id"]]},
                      headers={"authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert done.status_code == 200 and done.json() == {"route": "events", "replayed": 1, "dropped": 0, "refused": 0,
                                                       "refusals": [], "raw": False}
    wait_until(lambda: sorted(sqlite_rows(tmp_path / "sink.db")) == ["good", "poison"], 10, "the replayed event")
    assert ingest(proxy)["log"]["dead_letters"] == 0
    dump = httpx.get(proxy.url("admin", "/config_dump"), timeout=5).json()
    assert dump["config"]["admin"]["token"] == "<redacted>"
    metrics = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    assert 'meshbatch_ingest_events_delivered_total{route="events"} 2.0' in metrics
    assert 'meshbatch_ingest_events_replayed_total{route="events"} 1.0' in metrics
    assert 'meshbatch_ingest_events_dead_lettered_total{route="events",stage="delivery"}' in metrics
    assert 'meshbatch_ingest_delivery_latency_seconds_count{route="events"} 2.0' in metrics
    assert "meshbatch_ingest_events_total" not in metrics
    assert 'meshbatch_ingest_backlog{route="events"} 0.0' in metrics


def test_replay_is_refused_without_a_configured_token(mesh: Any, tmp_path: Path) -> None:
    proxy = mesh.start(config(tmp_path, "bigint", token=None), "notoken.yaml")
    refused = httpx.post(proxy.url("admin", "/ingest/replay"), json={"route": "events"},
                         headers={"authorization": "Bearer anything-at-all-here"}, timeout=5)
    assert refused.status_code == 403
    assert refused.json()["reason"] == "admin_token_not_configured"
    assert ingest(proxy)["state"] == "serving"
