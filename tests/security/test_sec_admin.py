"""The admin listener of a running proxy as an attacker sees it: secrets of the config (database password, NATS
token, OTLP auth headers, etcd credentials, the admin token) must not come out of any endpoint, log line or
command output; dead letters (callers' payloads) need the admin token; a request whose Host is not the admin
listener's own (a DNS-rebinding page) is refused; an admin listener exposed without a token is warned about."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.proxy import MeshbatchProcess, metric_value, write_config
from testbed.raw import RawClient
from testbed.upstream import UpstreamServer

ADMIN_TOKEN = "admin-token-SECRET-0123"
SECRETS = [ADMIN_TOKEN, "pgPW-SECRET", "natsTOKEN-SECRET", "otlp-SECRET-value-123", "etcdPW-SECRET", "otlpPW-SECRET"]


def secret_config(tmp_path: Path, upstream: str, token: str | None = ADMIN_TOKEN) -> dict[str, Any]:
    table = f"mb_redact_{secrets.token_hex(4)}"
    return {
        "admin": {"listen": "127.0.0.1:0", **({"token": token} if token else {})},
        "listeners": [{"name": "main", "listen": "127.0.0.1:0", "routes": [
            {"name": "events", "match": {"path_prefix": "/events"}, "ingest": {
                "log": {"path": str(tmp_path / "log.db"), "url": "nats://natsTOKEN-SECRET@127.0.0.1:4222"},
                "sink": {"type": "postgres", "url": "postgresql://postgres:pgPW-SECRET@127.0.0.1:5432/test",
                         "table": table}}},
            {"name": "echo", "cluster": "echo"},
        ]}],
        "clusters": [
            {"name": "echo", "endpoints": [upstream]},
            {"name": "registry", "discovery": {"type": "etcd", "urls": ["http://root:etcdPW-SECRET@127.0.0.1:1"],
                                               "prefix": "/svc/", "initial_fetch_timeout_ms": 0}},
        ],
        "tracing": {"endpoint": "http://collector:otlpPW-SECRET@127.0.0.1:1/v1/traces",
                    "headers": {"authorization": "Bearer otlp-SECRET-value-123"}, "export_interval_ms": 100,
                    "timeout_ms": 200},
    }


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer],
          tmp_path_factory: pytest.TempPathFactory) -> MeshbatchProcess:
    folder = tmp_path_factory.mktemp("admin")
    return module_mesh.start(secret_config(folder, upstreams["a"].address), "secrets.yaml")


def _no_secret(text: str, where: str) -> None:
    for value in SECRETS:
        assert value not in text, f"{value} shown by {where}"


ENDPOINTS = ["/config_dump", "/clusters", "/ingest", "/dashboard/feed", "/listeners", "/batchers", "/", "/recorder",
             "/metrics", "/ready"]


def test_no_endpoint_and_no_log_line_shows_a_secret(proxy: MeshbatchProcess) -> None:
    assert httpx.post(proxy.url("main", "/events"), json={"n": 1}, timeout=5).status_code == 202
    assert httpx.get(proxy.url("main", "/x"), timeout=5).status_code == 200  # a span to export (and fail)
    deadline = time.monotonic() + 10  # the event reaches the database through the password-bearing URL
    while httpx.get(proxy.url("admin", "/ingest"), timeout=5).json()["ingest"]["events"]["delivery"][
            "delivered"] < 1:
        assert time.monotonic() < deadline, "the event was not delivered"
        time.sleep(0.1)
    time.sleep(0.5)  # a few failed exports and discovery attempts have been logged
    for path in ENDPOINTS:
        answer = httpx.get(proxy.url("admin", path), timeout=5)
        assert answer.status_code == 200, path
        _no_secret(answer.text, path)
    _no_secret(proxy.stderr, "the log")
    assert "root:<redacted>@127.0.0.1:1" in proxy.stderr  # the discovery error was logged, without its password


def test_the_dump_says_what_was_redacted(proxy: MeshbatchProcess) -> None:
    config = httpx.get(proxy.url("admin", "/config_dump"), timeout=5).json()["config"]
    assert config["admin"]["token"] == "<redacted>"
    ingest = config["listeners"][0]["routes"][0]["ingest"]
    assert ingest["sink"]["url"] == "postgresql://postgres:<redacted>@127.0.0.1:5432/test"
    assert ingest["log"]["url"] == "nats://<redacted>@127.0.0.1:4222"
    assert config["tracing"]["headers"] == {"authorization": "<redacted>"}


def test_check_does_not_print_secrets(upstreams: dict[str, UpstreamServer], tmp_path: Path) -> None:
    spec = secret_config(tmp_path, upstreams["a"].address)
    spec["clusters"][1]["discovery"]["urls"] = ["https://root:etcdPW-SECRET@127.0.0.1:1"]  # an error that quotes it
    bad = write_config(tmp_path / "bad.yaml", spec)
    checked = subprocess.run([sys.executable, "-m", "meshbatch", "check", str(bad)], capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 1 and "etcd URL" in checked.stderr
    _no_secret(checked.stdout + checked.stderr, "meshbatch check")


# -- payloads need the token ----------------------------------------------------------------------------------


def test_dead_letters_need_the_token(proxy: MeshbatchProcess) -> None:
    url = proxy.url("admin", "/ingest/dead_letters?route=events")
    missing = httpx.get(url, timeout=5)
    assert missing.status_code == 401 and missing.json()["reason"] == "bad_admin_token"
    wrong = httpx.get(url, headers={"authorization": "Bearer not-the-token-at-all"}, timeout=5)
    assert wrong.status_code == 401
    right = httpx.get(url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
    assert right.status_code == 200 and right.json()["dead_letters"] == []


def test_dead_letters_are_refused_without_a_configured_token(mesh: Any, upstreams: dict[str, UpstreamServer],
                                                             tmp_path: Path) -> None:
    open_admin = mesh.start(secret_config(tmp_path, upstreams["a"].address, token=None), "no-token.yaml")
    refused = httpx.get(open_admin.url("admin", "/ingest/dead_letters?route=events"), timeout=5)
    assert refused.status_code == 403 and refused.json()["reason"] == "admin_token_not_configured"


# -- Host (DNS rebinding) -------------------------------------------------------------------------------------


def _status(proxy: MeshbatchProcess, path: str, host: str | None, extra: str = "",
            target: str | None = None) -> tuple[int, str]:
    head = f"GET {target or path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "") + extra + "\r\n"
    with RawClient(proxy.address("admin")) as client:
        client.send(head.encode())
        answer = client.read_response()
    reason = answer.json().get("reason", "") if answer.header("content-type") == "application/json" \
        and answer.status >= 400 else ""
    return answer.status, reason


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "localhost.evil.example", "10.9.8.7"])
@pytest.mark.parametrize("path", ["/config_dump", "/metrics", "/ingest/dead_letters?route=events", "/"])
def test_a_foreign_host_is_refused(proxy: MeshbatchProcess, host: str, path: str) -> None:
    port = proxy.address("admin")[1]
    auth = f"authorization: Bearer {ADMIN_TOKEN}\r\n"  # even with the token: the page is not ours
    assert _status(proxy, path, host.format(port=port), auth) == (403, "admin_host_not_allowed")


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "localhost", "[::1]:{port}",
                                  "admin.localhost"])
def test_loopback_hosts_are_served(proxy: MeshbatchProcess, host: str) -> None:
    assert _status(proxy, "/ready", host.format(port=proxy.address("admin")[1]))[0] == 200


def test_an_absolute_form_target_names_the_host_too(proxy: MeshbatchProcess) -> None:
    """The URL's authority is the host the admin API judges: a foreign one is refused, and one that disagrees
    with the Host header is refused before that (the request is ambiguous)."""
    assert _status(proxy, "/config_dump", "evil.example", target="http://evil.example/config_dump") == \
        (403, "admin_host_not_allowed")
    assert _status(proxy, "/config_dump", "127.0.0.1", target="http://evil.example/config_dump") == \
        (400, "host_mismatch")


def test_refusals_are_counted(proxy: MeshbatchProcess) -> None:
    def count() -> float:
        text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
        return metric_value(text, "meshbatch_admin_refusals_total", reason="admin_host_not_allowed")

    before = count()
    _status(proxy, "/config_dump", "evil.example")
    assert count() == before + 1


def test_allowed_hosts_and_a_wildcard_listener(mesh: Any, upstreams: dict[str, UpstreamServer],
                                               tmp_path: Path) -> None:
    spec = secret_config(tmp_path, upstreams["a"].address)
    spec["admin"] = {"listen": "0.0.0.0:0", "token": ADMIN_TOKEN, "allowed_hosts": ["admin.mesh.example"]}
    exposed = mesh.start(spec, "wildcard.yaml")
    port = exposed.address("admin")[1]
    exposed.addresses["admin"] = f"127.0.0.1:{port}"
    assert _status(exposed, "/ready", "admin.mesh.example")[0] == 200
    assert _status(exposed, "/ready", f"10.1.2.3:{port}")[0] == 200  # an address: probes use the pod IP
    assert _status(exposed, "/ready", "evil.example")[0] == 403
    assert "WARNING" not in exposed.stderr  # it has a token


# -- the warning ----------------------------------------------------------------------------------------------


def test_an_exposed_admin_without_a_token_is_warned_about(mesh: Any, upstreams: dict[str, UpstreamServer],
                                                          tmp_path: Path) -> None:
    spec = secret_config(tmp_path, upstreams["a"].address, token=None)
    spec["admin"]["listen"] = "0.0.0.0:0"
    path = write_config(tmp_path / "exposed.yaml", spec)
    checked = subprocess.run([sys.executable, "-m", "meshbatch", "check", str(path)], capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0 and "warning: admin.listen 0.0.0.0:0" in checked.stderr
    exposed = mesh.start(spec, "exposed-run.yaml")
    exposed.wait_for_line("WARNING meshbatch: admin.listen 0.0.0.0:0 is not a loopback address", 5)
    spec["admin"]["listen"] = "127.0.0.1:0"
    quiet = subprocess.run([sys.executable, "-m", "meshbatch", "check", str(write_config(tmp_path / "q.yaml", spec))],
                           capture_output=True, text=True, timeout=30)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
