"""The whole file in its run-time form: `Config`, and the admin listener (meshbatch.config.model.root)."""

from __future__ import annotations

from typing import ClassVar, Literal

from meshbatch.config.plain.base import Plain
from meshbatch.config.plain.clusters import Cluster
from meshbatch.config.plain.listeners import Listener
from meshbatch.config.plain.security import Identity
from meshbatch.config.plain.telemetry import AccessLog, Recorder, Tracing


class Admin(Plain, frozen=True, kw_only=True):
    SECRETS: ClassVar[dict[str, str]] = {"token": "value"}  # redacted in every display (config/redact.py)
    listen: str = "127.0.0.1:9901"
    token: str | None = None
    allowed_hosts: list[str] = []


class Config(Plain, frozen=True, kw_only=True):
    admin: Admin | None = Admin()
    listeners: list[Listener]
    clusters: list[Cluster] = []
    drain_timeout_ms: int = 15000
    access_log: AccessLog | None = None
    tracing: Tracing | None = None
    recorder: Recorder = Recorder()
    identity: Identity | None = None
    workers: int | Literal["auto"] = 1
