"""The whole file: `Config`, and the admin listener."""

from __future__ import annotations

from pydantic import Field, field_validator

from meshbatch.config.model.base import Millis, Model, _check_listen
from meshbatch.config.model.clusters import Cluster
from meshbatch.config.model.listeners import Listener
from meshbatch.config.model.telemetry import AccessLog, Recorder, Tracing
from meshbatch.security.model import Identity


class Admin(Model):
    listen: str = "127.0.0.1:9901"
    token: str | None = None  # bearer token for mutating endpoints (POST /ingest/replay); none: they are refused

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and (len(value) < 16 or not value.isprintable() or " " in value):
            raise ValueError("must be at least 16 printable characters without spaces")
        return value

    _listen = field_validator("listen")(classmethod(lambda cls, v: _check_listen(v)))


class Config(Model):
    admin: Admin | None = Admin()
    listeners: list[Listener] = Field(min_length=1)
    clusters: list[Cluster] = []
    drain_timeout_ms: Millis = 15_000
    access_log: AccessLog | None = None
    tracing: Tracing | None = None
    recorder: Recorder = Recorder()
    identity: Identity | None = None  # the workload certificate used by `tls` blocks that name none
