"""Redaction of secrets: URLs, free text, the config dump, log lines; and the walk of the config model that
fails on a field whose name looks secret but that nobody marked (or declared not secret)."""

from __future__ import annotations

import io
import logging
from typing import Annotated

import pytest
from pydantic import BaseModel

from meshbatch.config import parse
from meshbatch.config.model import Config
from meshbatch.config.model.base import Model, secret
from meshbatch.config.redact import (
    REDACTED,
    RedactingFormatter,
    redact_config,
    redact_text,
    scrub,
    unmarked_secret_fields,
)


@pytest.mark.parametrize(("text", "shown"), [
    ("postgresql://app:pw@db:5432/x", f"postgresql://app:{REDACTED}@db:5432/x"),
    ("postgresql://app:p@ss:w@rd@db/x", f"postgresql://app:{REDACTED}@db/x"),  # "@" and ":" in the password
    ("postgresql://app@db/x", "postgresql://app@db/x"),  # a user name alone is no secret
    ("nats://s3cr3t-token@nats:4222", f"nats://{REDACTED}@nats:4222"),  # NATS: a lone user-info is a token
    ("nats://user:pw@nats:4222", f"nats://user:{REDACTED}@nats:4222"),
    ("redis://:pw@cache:6379/0", f"redis://:{REDACTED}@cache:6379/0"),
    ("https://ghp_abcdef@github.com/x", f"https://{REDACTED}@github.com/x"),
    ("postgresql://db/x?user=app&password=pw&sslmode=require",
     f"postgresql://db/x?user=app&password={REDACTED}&sslmode=require"),
    ("http://otel:4318/v1/traces?token=abc", f"http://otel:4318/v1/traces?token={REDACTED}"),
    ("cannot open stream S at nats://u:pw@h:4222: refused", f"cannot open stream S at nats://u:{REDACTED}@h:4222: "
                                                           "refused"),
    ("['http://a:b@h1:2379', 'http://c:d@h2:2379']", f"['http://a:{REDACTED}@h1:2379', 'http://c:{REDACTED}@h2:2379']"),
    ("etcd root:pw@127.0.0.1:2379: refused", f"etcd root:{REDACTED}@127.0.0.1:2379: refused"),  # no scheme
    ("at 10:15:56 user@example.com", "at 10:15:56 user@example.com"),
    ("authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.c2ln", f"authorization: Bearer {REDACTED}"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", f"Authorization: Basic {REDACTED}"),
    ("a bearer token is required", "a bearer token is required"),
    ("http://127.0.0.1:9901/config_dump", "http://127.0.0.1:9901/config_dump"),
    ("user@example.com wrote", "user@example.com wrote"),
])
def test_redact_text(text: str, shown: str) -> None:
    assert redact_text(text) == shown
    assert redact_text(shown) == shown  # redacting twice changes nothing


def test_scrub_walks_json_documents() -> None:
    doc = {"a": ["x", {"url": "nats://tok@h"}], "n": 1, "nats://k@h": None, "ok": True}
    assert scrub(doc) == {"a": ["x", {"url": f"nats://{REDACTED}@h"}], "n": 1, f"nats://{REDACTED}@h": None,
                          "ok": True}


SECRETS = ["admin-token-SECRET-0123", "pgPW-SECRET", "natsTOKEN-SECRET", "otlp-SECRET-value", "etcdPW-SECRET",
           "otlpPW-SECRET"]
CONFIG = """
admin: {listen: 127.0.0.1:0, token: admin-token-SECRET-0123}
listeners:
  - name: main
    listen: 127.0.0.1:0
    routes:
      - name: events
        ingest:
          log: {backend: jetstream, url: "nats://natsTOKEN-SECRET@127.0.0.1:4222"}
          sink: {type: postgres, url: "postgresql://app:pgPW-SECRET@127.0.0.1:5432/test"}
clusters:
  - name: c
    discovery: {type: etcd, urls: ["http://root:etcdPW-SECRET@127.0.0.1:2379"], prefix: /svc/}
tracing:
  endpoint: http://u:otlpPW-SECRET@127.0.0.1:4318/v1/traces
  headers: {authorization: "Bearer otlp-SECRET-value", x-tenant: otlp-SECRET-value}
"""


def test_the_config_dump_has_no_secret_and_keeps_the_rest() -> None:
    config = parse(CONFIG)
    dumped = redact_config(config)
    text = repr(dumped)
    for value in SECRETS:
        assert value not in text, value
    assert dumped["admin"]["token"] == REDACTED
    assert dumped["tracing"]["headers"] == {"authorization": REDACTED, "x-tenant": REDACTED}  # names kept
    assert dumped["listeners"][0]["routes"][0]["ingest"]["sink"]["url"] == \
        f"postgresql://app:{REDACTED}@127.0.0.1:5432/test"
    assert dumped["clusters"][0]["discovery"]["urls"] == [f"http://root:{REDACTED}@127.0.0.1:2379"]
    assert dumped["listeners"][0]["routes"][0]["name"] == "events"
    assert config.admin is not None and config.admin.token == "admin-token-SECRET-0123"  # the config is untouched


def test_no_admin_token_stays_visible_as_unset() -> None:
    assert redact_config(parse("listeners: [{name: a, listen: '127.0.0.1:0'}]"))["admin"]["token"] is None


def test_every_field_that_looks_secret_is_marked_or_declared_not_secret() -> None:
    assert unmarked_secret_fields(Config) == [], (
        "mark it `Annotated[TYPE, secret(KIND)]` (meshbatch.config.model.base.secret), or add it to "
        "meshbatch.config.redact.NOT_SECRET with the reason")


def test_the_walk_finds_a_new_unmarked_secret() -> None:
    class Vault(Model):
        password: str = ""
        api_key: str | None = None
        ok_token: Annotated[str, secret()] = ""

    class Root(Model):
        vaults: list[Vault] = []
        nested: dict[str, Vault] = {}

    assert unmarked_secret_fields(Root) == ["Vault.api_key", "Vault.password"]


def test_an_unknown_secret_kind_is_an_error() -> None:
    class Bad(BaseModel):
        token: Annotated[str, secret("everything")] = ""

    with pytest.raises(ValueError, match="secret kind"):
        unmarked_secret_fields(Bad)


def test_log_lines_and_tracebacks_are_redacted() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter("%(message)s"))
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("cannot connect to %s", "postgresql://app:pgPW-SECRET@db/x")
        try:
            raise OSError("at nats://natsTOKEN-SECRET@h:4222")
        except OSError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "pgPW-SECRET" not in text and "natsTOKEN-SECRET" not in text
    assert f"postgresql://app:{REDACTED}@db/x" in text and "Traceback" in text


def test_problems_never_quote_credentials() -> None:
    from meshbatch.config import ConfigError

    bad = CONFIG.replace("http://root:etcdPW-SECRET@127.0.0.1:2379", "https://root:etcdPW-SECRET@127.0.0.1:2379")
    with pytest.raises(ConfigError) as caught:
        parse(bad)
    text = "\n".join(str(p) for p in caught.value.problems) + str(caught.value)
    assert "etcd URL" in text and "etcdPW-SECRET" not in text


