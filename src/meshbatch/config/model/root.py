"""The whole file: `Config`, and the admin listener."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from meshbatch.config.model.base import Millis, Model, _check_listen, secret
from meshbatch.config.model.clusters import Cluster
from meshbatch.config.model.listeners import Listener
from meshbatch.config.model.security import Identity
from meshbatch.config.model.telemetry import AccessLog, Recorder, Tracing


class Admin(Model):
    listen: str = "127.0.0.1:9901"
    # bearer token for mutating and payload endpoints; none: refused. `${NAME}`: from the environment (checked then)
    token: Annotated[str | None, secret()] = None
    # Host names the admin API answers besides loopback names and addresses and its own listen address (DNS
    # rebinding): exact names or `*.suffix`; `*` turns the check off
    allowed_hosts: list[str] = []

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and "${" not in value and (len(value) < 16 or not value.isprintable() or " " in value):
            raise ValueError("must be at least 16 printable characters without spaces")
        return value

    _listen = field_validator("listen")(classmethod(lambda cls, v: _check_listen(v)))

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = []
        for host in value:
            name = host.strip().lower()
            bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
            try:
                out.append(str(ipaddress.ip_address(bare)))  # addresses kept bare and in canonical form
                continue
            except ValueError:
                pass
            if name != "*" and not _HOST_NAME.fullmatch(name):
                raise ValueError(f"{host!r}: a host is a name or an address without a port, '*.suffix', or '*'")
            out.append(name.rstrip("."))
        return out


_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?\.?")


class Config(Model):
    admin: Admin | None = Admin()
    listeners: list[Listener] = Field(min_length=1)
    clusters: list[Cluster] = []
    drain_timeout_ms: Millis = 15_000
    access_log: AccessLog | None = None
    tracing: Tracing | None = None
    recorder: Recorder = Recorder()
    identity: Identity | None = None  # the workload certificate used by `tls` blocks that name none
    # worker processes sharing the listeners' ports (SO_REUSEPORT): a number, or "auto" (one per core); read at
    # start (`meshbatch run --workers` overrides it), see docs/operations.md
    workers: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = 1

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 12:
            value = int(value)  # as the other numbers of the file (`${WORKERS}` from the environment is a string)
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1024):
            return value
        raise ValueError(f"{repr(value)[:40]}: a number of worker processes, 1 to 1024, or 'auto' (one per core)")
